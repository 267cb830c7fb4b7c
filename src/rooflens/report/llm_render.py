"""An LLM generation as a document (`rooflens llm MODEL --hw ID --prompt P --gen G --batch 1,8`): per batch
size the time to first token, time per output token, throughput and memory; per phase the work and bound."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rooflens.report.document import Document, Gap, Grid, Heading, Labels, Note, ReportView
from rooflens.report.markup import records_csv
from rooflens.report.plot import new_figure, plot_target, save
from rooflens.report.report import Report
from rooflens.report.summary import group_text
from rooflens.report.table import intensity_text
from rooflens.report.units import ByteUnit, bytes3, seconds_text, si3


class RunLike(Protocol):
    """What the document reads of a ``rooflens.llm.run.LLMRun`` (the llm layer sits above this one)."""

    @property
    def name(self) -> str: ...
    @property
    def batch(self) -> int: ...
    @property
    def prompt(self) -> int: ...
    @property
    def gen(self) -> int: ...
    @property
    def prefill(self) -> Report: ...
    @property
    def decode_first(self) -> Report: ...
    @property
    def decode_last(self) -> Report: ...
    @property
    def notes(self) -> tuple[str, ...]: ...
    @property
    def ttft_seconds(self) -> float: ...
    @property
    def tpot_seconds(self) -> float: ...
    @property
    def e2e_seconds(self) -> float: ...
    @property
    def tokens_per_second(self) -> float: ...
    @property
    def max_batch(self) -> int | None: ...
    @property
    def memory(self) -> Any: ...

    def as_dict(self) -> dict[str, Any]: ...


SUMMARY = ("Batch", "TTFT", "TPOT", "Tokens/s", "End to end", "Weights", "KV cache", "Activations", "Peak", "Fits")
PHASES = ("Phase", "Context", "MACs", "Weights", "KV read", "KV written", "Activations", "FLOP/B", "Roofline",
          "Memory-bound", "Bound")
NUMERIC = frozenset({"Batch", "TTFT", "TPOT", "Tokens/s", "End to end", "Weights", "KV cache", "Peak", "Context",
                     "MACs", "KV read", "KV written", "Activations", "FLOP/B", "Roofline", "Memory-bound"})


def _summary_row(run: RunLike, unit: ByteUnit) -> list[str]:
    mem = run.memory
    fits = {None: "?", True: "yes", False: "NO"}[mem.fits]
    return [str(run.batch), seconds_text(run.ttft_seconds), seconds_text(run.tpot_seconds),
            f"{run.tokens_per_second:,.0f}", seconds_text(run.e2e_seconds), bytes3(mem.weight_bytes, unit),
            bytes3(mem.kv_bytes, unit), bytes3(mem.activation_bytes, unit), bytes3(mem.total_bytes, unit), fits]


def _phase_row(phase: str, context: int, data: dict[str, Any], unit: ByteUnit) -> list[str]:
    """One phase from its JSON (``LLMRun.as_dict()``): the bytes by what they are, the roofline time."""
    return [phase, str(context), si3(data["macs"]), bytes3(data["weight_bytes_read"], unit),
            bytes3(data["kv_bytes_read"], unit), bytes3(data["kv_bytes_written"], unit),
            bytes3(data["activation_bytes"], unit), intensity_text(data["intensity"]),
            seconds_text(data["roofline_seconds"]), f"{100 * data['memory_bound_share']:.0f}%",
            data["bound"]]


def llm_document(runs: Sequence[RunLike], byte_unit: ByteUnit | None = None, *, depth: int | None = None) -> Document:
    """A summary row per batch size, the phases of each, the notes; JSON of every run, CSV of the summary.
    ``depth``: also the module tables of the first batch's prefill and first decode step, down to it."""
    unit = byte_unit or ByteUnit.SI
    first = runs[0]
    hw = first.prefill.hardware
    assert hw is not None
    datas = [run.as_dict() for run in runs]  # once per run: the phases' byte splits and the estimate
    bits = "".join(f", {what} {datas[0][key]}-bit" for what, key in (("weights", "weight_bits"),
                                                                      ("KV cache", "kv_bits")) if datas[0].get(key))
    if datas[0].get("weight_group") is not None:
        bits += f" (a scale per {group_text(datas[0]['weight_group'])})"
    bits += f", tensor parallel over {datas[0]['tp']} (per device)" if datas[0].get("tp", 1) > 1 else ""
    title = (f"{first.name} on {hw.id}: prompt {first.prompt}, {first.gen} generated tokens, "
             f"{first.prefill.precision.value} compute{bits} (roofline times)")
    phases = []
    for run, data in zip(runs, datas, strict=True):
        phases += [_phase_row(f"prefill (batch {run.batch})", run.prompt, data["prefill"], unit),
                   _phase_row(f"decode (batch {run.batch})", run.prompt, data["decode_first"], unit),
                   _phase_row(f"decode (batch {run.batch})", run.prompt + max(run.gen - 2, 0), data["decode_last"], unit)]
    largest = first.max_batch
    labels = [("Max batch", f"{largest} (weights, and per sequence its KV cache at {first.prompt + first.gen - 1} "
                            f"tokens or its share of the prefill's peak, in {bytes3(hw.memory_bytes or 0, unit)})"
               if largest is not None else "? (the device's memory is not known)")]
    for run, data in zip(runs, datas, strict=True):
        est = data["estimate"]
        if est is not None:
            labels.append((f"Estimate, batch {run.batch}",
                           (f"TTFT {seconds_text(est['ttft_seconds'])}, TPOT {seconds_text(est['tpot_seconds'])}, "
                           f"{est['tokens_per_second']:,.0f} tokens/s ({est['kind']}; see the notes)")))
    blocks: list[Any] = [Heading(title), Labels(labels), Gap(), Grid(SUMMARY, [_summary_row(r, unit) for r in runs],
                                                                   NUMERIC),
                         Gap(), Grid(PHASES, phases, NUMERIC), Gap()]
    blocks += [Note(n) for n in dict.fromkeys(n for r in runs for n in r.notes)]
    if depth is not None:
        for heading, report in ((f"Prefill (batch {first.batch})", first.prefill),
                                (f"Decode step at {first.prompt} (batch {first.batch})", first.decode_first)):
            blocks += [Gap(), Heading(heading), ReportView(report, depth, unit)]
    rows = [{k: v for k, v in d.items() if not isinstance(v, (dict, list))} for d in datas]
    return Document(title=title, blocks=tuple(blocks), data=lambda: {"runs": datas}, csv=lambda: records_csv(rows))


def plot_sweep(runs: Sequence[RunLike], path: str | Path, *, dpi: float = 150) -> Path:
    """Latency against throughput, a point per batch size (the serving roofline): the time per output token
    against the batch's tokens per second, and the time to the first token against the batch."""
    target, fmt = plot_target(path)
    first = runs[0]
    hw = first.prefill.hardware
    assert hw is not None
    with new_figure(dpi, (10.0, 4.5)) as fig:
        tpot, ttft = fig.subplots(1, 2)
        xs = [r.tokens_per_second for r in runs]
        tpot.plot(xs, [1e3 * r.tpot_seconds for r in runs], marker="o", color="#0072B2")
        for r, x in zip(runs, xs, strict=True):
            tpot.annotate(f"batch {r.batch}", (x, 1e3 * r.tpot_seconds), textcoords="offset points", xytext=(4, 4),
                          fontsize=8)
        tpot.set(xlabel="decode throughput (tokens/s, whole batch)", ylabel="time per output token (ms)",
                 title="latency against throughput")
        batches = [r.batch for r in runs]
        ttft.plot(batches, [1e3 * r.ttft_seconds for r in runs], marker="o", color="#D55E00")
        ttft.set(xlabel="batch", ylabel="time to first token (ms)", title=f"prefill of {first.prompt} tokens")
        for ax in (tpot, ttft):
            ax.grid(True, alpha=0.3)
            if len(runs) > 1 and min(batches) > 0:
                ax.set_xscale("log")
        fig.suptitle(f"{first.name} on {hw.name}, {first.prefill.precision.value}: roofline times")
        fig.tight_layout()
        save(fig, target, fmt, dpi)
    return target
