"""The memory footprint in words: the peak and where it happens, weights, activations, the training step,
and torchsummary's figures beside them."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from rooflens.report.document import Document, Gap, Labels, MemoryTimeline, Note, Pre
from rooflens.report.units import ByteUnit, count, nbytes, si

if TYPE_CHECKING:
    from rooflens.analysis.memory import MemoryReport, MemorySummary

MEMORY_NOTE = (
    "Peak: live inputs, activations and outputs at the worst moment of the timeline (views and in-place "
    "results add nothing; a tensor is freed when its last reference goes), weights not included; allocator "
    "rounding and kernels' internal workspace are not modelled. torchsummary's figures assume 4 bytes a "
    "number and a copy of every module output for its gradient."
)
SUMMARY_TITLE = "Memory (torchsummary's figures, 4 bytes a number; the timeline's peak at the analysed widths):"


def memory_lines(mem: MemoryReport, byte_unit: ByteUnit = ByteUnit.SI) -> list[tuple[str, str]]:
    """``(label, text)`` pairs of a MemoryReport: the peak and where, the parts, the training step."""

    def b(n: int) -> str:
        return nbytes(n, byte_unit)

    held = "weights, gradients and optimizer state" if mem.train else "weights and buffers"
    lines = [
        ("Model", mem.model),
        ("Peak", (f"{b(mem.peak_bytes)} of live tensors at {mem.peak_at or '<root>'} ({mem.peak_op}); "
                  f"{b(mem.total_peak_bytes)} with {held}")),
        ("Weights", f"{b(mem.weights_bytes)} · buffers {b(mem.buffers_bytes)}"),
        ("Activations", (f"{b(mem.activations_bytes)} allocated in all · {count(mem.activation_elements)} elements "
                         f"(#activations) · inputs {b(mem.inputs_bytes)} · outputs {b(mem.outputs_bytes)}")),
    ]
    if mem.train:
        mixed = " (mixed precision, fp32 master weights)" if mem.mixed_precision else ""
        lines.append((
            "Training step",
            (f"optimizer {mem.optimizer}{mixed}: saved activations {b(mem.saved_activation_bytes or 0)} · "
             f"gradients {b(mem.gradient_bytes or 0)} · optimizer state {b(mem.optimizer_state_bytes or 0)} · "
             f"master weights {b(mem.master_weights_bytes or 0)}"),
        ))
        if mem.checkpointed:
            recompute = si(mem.recompute_flops or 0)
            lines.append(("Checkpointed", f"{', '.join(mem.checkpointed)}: recompute {recompute} FLOPs"))
    if mem.diagnostics:
        lines.append(("Diagnostics", "; ".join(mem.diagnostics)))
    return lines


def memory_document(mem: MemoryReport, byte_unit: ByteUnit | None = None) -> Document:
    """`rooflens memory`: the peak and its parts, torchsummary's figures, what is not modelled; JSON in bytes."""
    return Document(
        title=f"rooflens memory: {mem.model}",
        blocks=(Labels(memory_lines(mem, byte_unit or ByteUnit.SI)), MemoryTimeline(mem, byte_unit or ByteUnit.SI),
                Gap(), Pre(mem.summary().lines()), Gap(), Note(MEMORY_NOTE)),
        data=mem.as_dict,
    )


def with_summary(doc: Document, summary: MemorySummary) -> Document:
    """``doc`` followed by torchsummary's figures (JSON: under ``"memory_summary"``); no CSV form."""
    data = doc.data
    return replace(
        doc,
        blocks=(*doc.blocks, Gap(), Note(SUMMARY_TITLE), Pre(summary.lines())),
        data=lambda: {**data(), "memory_summary": summary.as_dict()},
        csv=None,
    )
