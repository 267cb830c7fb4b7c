"""LLM inference from the real model code: prefill and decode phases, TTFT / TPOT / tokens per second,
KV cache and weight memory, the largest batch that fits.

The model is a ``transformers`` causal LM on the meta device (:mod:`rooflens.llm.configs`), counted by the
same engine as every other model:

- **Prefill**: ``B`` sequences of ``P`` tokens into an empty ``DynamicCache`` (the keys and values the
  projections produce are the cache), logits of the last token only (``logits_to_keep=1``, as generation
  does; ``all_logits=True`` for every token).
- **Decode step at context L**: one new token per sequence against a ``StaticCache`` that holds ``L``
  tokens (meta tensors, allocated before the step, as a serving engine's cache is): attention reads the
  ``L + 1`` keys and values, the step writes one token's. Generating ``G`` tokens takes the prefill (its
  last logits give the first token) and ``G - 1`` steps, ``L = P .. P+G-2``. A step's cost is affine in
  ``L``: the steps are counted from two analysed ones (the first and the last), checked against a third
  (the middle one) operator by operator, and each step's roofline time is summed exactly from the
  per-operator affine costs.
- **Times**: the roofline on the device (a lower bound: every operator at the roof of its intensity); the
  TTFT is the prefill, the TPOT the mean decode step, the end-to-end time the prefill plus the steps.
- **Memory**: weights at their width, the KV cache from the cache object itself (sliding-window layers
  cap at their window) after the prefill and at the end (``P + G - 1`` tokens), the prefill's live
  activations beyond its cache (its memory timeline), the peak and whether it fits the device.
- **Options**: weight-only quantization and KV-cache bits, tensor parallelism with its all-reduces, MFU
  and MBU of each phase.

- **Mixture of experts**: tokens spread evenly, each to its top-k experts; a pass reads the weights of the
  experts its tokens are expected to reach (:func:`rooflens.formulas.matmul.expert_routing`).

- **Estimate** beside the roofline: calibrated on a measured device (``rooflens hw bench``), else eager
  PyTorch at the catalogue's published efficiency of the device (matrix products, bandwidth, a cost per
  launched operator); none otherwise. Neither models a fused serving engine (vLLM, TensorRT-LLM), which
  moves fewer bytes in element-wise operators and launches far fewer kernels: see docs/llm_accuracy.md.
- **Quantization**: weight-only (``weight_bits``) with a 16-bit scale per ``weight_group`` weights, W8A8
  (``precision="int8"``), KV-cache bits.

Not modelled: pipeline parallelism (one device's share of the layers and the bubbles between stages),
speculative decoding, prefix caching, continuous batching (a run's sequences start and end together).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rooflens.analysis.calibrated import can_calibrate
from rooflens.analysis.memory import memory as memory_timeline
from rooflens.api import analyze
from rooflens.capture.harness import analysis_device
from rooflens.errors import InputError, ModelError
from rooflens.formulas.matmul import expert_routing
from rooflens.hardware.catalogue import get as get_hardware
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.llm.configs import build_model, load_config
from rooflens.report.report import Report
from rooflens.report.summary import group_text
from rooflens.types import OpRecord, TensorKind

# the dtype the model is built in for each compute precision; int8 is W8A8: int8 matrix products, the activations
# between them and the KV cache kept in fp16
_DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16,
           Precision.INT8: torch.float16}
DEFAULT_WEIGHT_GROUP = 128  # GPTQ's and AWQ's usual group size


@dataclass(frozen=True)
class LLMMemory:
    """Bytes per device: weights, the KV cache (per token of one sequence, after the prefill, and for the
    whole batch at the end of generation), the prefill's transient activations, the peak, the device's
    memory and whether the peak fits."""

    weight_bytes: int
    kv_bytes_per_token: int  # one sequence, all layers, below any sliding window
    kv_bytes: int  # batch x (prompt + gen - 1) tokens: the cache after the last decode step
    device_bytes: int | None
    kv_bytes_prompt: int = 0  # batch x prompt tokens: what the prefill leaves in the cache
    kv_bytes_per_sequence: int = 0  # one sequence at the end of generation
    activation_bytes: int = 0  # the prefill's live tensors at its peak beyond the cache (rooflens.memory)

    @property
    def total_bytes(self) -> int:
        """The peak: weights and the larger of the prefill's live memory (its cache and activations) and the
        cache at the end (a decode step's own activations are small)."""
        return self.weight_bytes + max(self.kv_bytes_prompt + self.activation_bytes, self.kv_bytes)

    @property
    def fits(self) -> bool | None:
        return None if self.device_bytes is None else self.total_bytes <= self.device_bytes

    def as_dict(self) -> dict[str, Any]:
        return {"weight_bytes": self.weight_bytes, "kv_bytes_per_token": self.kv_bytes_per_token,
                "kv_bytes_prompt": self.kv_bytes_prompt, "kv_bytes": self.kv_bytes,
                "activation_bytes": self.activation_bytes, "total_bytes": self.total_bytes,
                "device_bytes": self.device_bytes, "fits": self.fits}


@dataclass(frozen=True)
class _Estimate:
    """Times as the device reaches them: calibrated on a measured device (``rooflens hw bench``), else eager
    PyTorch at the catalogue's ``efficiency``."""

    kind: str
    prefill_seconds: float
    step_seconds: tuple[float, ...]  # contexts prompt .. prompt + gen - 2
    next_step_seconds: float  # the step at context prompt (TPOT when gen = 1)

    @property
    def tpot_seconds(self) -> float:
        return math.fsum(self.step_seconds) / len(self.step_seconds) if self.step_seconds else self.next_step_seconds

    def as_dict(self, run: LLMRun) -> dict[str, Any]:
        decode = math.fsum(self.step_seconds) + len(self.step_seconds) * run.allreduce_step_seconds
        ttft = self.prefill_seconds + run.allreduce_prefill_seconds
        tpot = self.tpot_seconds + run.allreduce_step_seconds
        return {"kind": self.kind, "ttft_seconds": ttft, "tpot_seconds": tpot, "e2e_seconds": ttft + decode,
                "tokens_per_second": run.batch / tpot}


@dataclass(frozen=True)
class LLMRun:
    """One generation: ``batch`` sequences, ``prompt`` tokens in, ``gen`` tokens out, on ``hardware``."""

    setup: _Setup = field(repr=False)
    batch: int
    prompt: int
    gen: int
    prefill: Report
    decode_first: Report  # the step at context = prompt
    decode_last: Report  # the step at context = prompt + gen - 2 (the first one when gen <= 2)
    step_seconds: tuple[float, ...]  # roofline time of each decode step, contexts prompt .. prompt+gen-2
    memory: LLMMemory
    all_logits: bool = False
    notes: tuple[str, ...] = ()
    tp: int = 1  # tensor-parallel devices; the reports and the memory are one device's
    allreduce_prefill_seconds: float = 0.0  # the prefill's all-reduces between the tp devices
    allreduce_step_seconds: float = 0.0  # one decode step's
    estimate: _Estimate | None = None  # calibrated (measured device) or eager PyTorch (catalogue efficiency)

    @property
    def ttft_seconds(self) -> float:
        """Time to the first token: the prefill (its last token's logits give the first new token), with its
        all-reduces under tensor parallelism (not overlapped with compute)."""
        return self.prefill.roofline.total.seconds + self.allreduce_prefill_seconds

    @property
    def decode_seconds(self) -> float:
        """The ``gen - 1`` decode steps after the prefill (with their all-reduces)."""
        return math.fsum(self.step_seconds) + len(self.step_seconds) * self.allreduce_step_seconds

    @property
    def tpot_seconds(self) -> float:
        """Time per output token of one sequence: the mean decode step (with ``gen = 1``, the step a further
        token would take)."""
        if not self.step_seconds:
            return self.decode_first.roofline.total.seconds + self.allreduce_step_seconds
        return self.decode_seconds / len(self.step_seconds)

    @property
    def e2e_seconds(self) -> float:
        """All ``gen`` tokens: the prefill and the decode steps."""
        return self.ttft_seconds + self.decode_seconds

    @property
    def tokens_per_second(self) -> float:
        """Decoding throughput: tokens of the whole batch per second of decode steps."""
        return self.batch / self.tpot_seconds

    @property
    def max_batch(self) -> int | None:
        """The largest batch whose peak fits the device: weights, and per sequence the larger of its KV cache
        at the end and its share of the prefill's live memory (cache and activations; taken as growing in
        proportion to the batch); None when the device's memory is not known."""
        if self.hardware.memory_bytes is None:
            return None
        mem = self.memory
        per_sequence = max(mem.kv_bytes_per_sequence, -(-(mem.kv_bytes_prompt + mem.activation_bytes) // self.batch))
        return max(0, (self.hardware.memory_bytes - mem.weight_bytes) // per_sequence)

    @property
    def name(self) -> str:
        return self.setup.name

    @property
    def hardware(self) -> HardwareSpec:
        return self.setup.spec

    @property
    def precision(self) -> Precision:
        return self.setup.precision

    def decode(self, context: int) -> Report:
        """A Report of one decode step against a cache of ``context`` tokens (analysed now)."""
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise InputError(f"context={context!r} must be a whole number of cached tokens >= 0")
        return _decode(self.setup, self.batch, context)

    def sweep(self, batch: Sequence[int]) -> list[LLMRun]:
        """The same generation at each batch size (latency against throughput)."""
        s = self.setup
        return [llm(s.model, hardware=s.spec, prompt=self.prompt, gen=self.gen, batch=b, precision=s.precision,
                    weight_bits=s.weight_bits, kv_bits=s.kv_bits, weight_group=s.weight_group,
                    all_logits=self.all_logits, name=s.name, tp=self.tp, sharded=True) for b in batch]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.name, "hardware": self.hardware.id, "precision": self.precision.value,
            "weight_bits": self.setup.weight_bits, "weight_group": self.setup.weight_group,
            "kv_bits": self.setup.kv_bits, "tp": self.tp,
            "allreduce_prefill_seconds": self.allreduce_prefill_seconds,
            "allreduce_step_seconds": self.allreduce_step_seconds,
            "batch": self.batch, "prompt": self.prompt, "gen": self.gen,
            "ttft_seconds": self.ttft_seconds, "tpot_seconds": self.tpot_seconds, "e2e_seconds": self.e2e_seconds,
            "tokens_per_second": self.tokens_per_second, "max_batch": self.max_batch,
            "memory": self.memory.as_dict(),
            "estimate": self.estimate.as_dict(self) if self.estimate is not None else None,
            "prefill": _phase(self.prefill, self.memory.kv_bytes_prompt), "decode_first": _phase(self.decode_first),
            "decode_last": _phase(self.decode_last), "notes": list(self.notes),
            "time": "roofline (a lower bound on this device)",
        }


def _phase(report: Report, cache_kept_bytes: int = 0) -> dict[str, Any]:
    """A phase's work, bytes by kind, roofline time, and its MFU / MBU at that time (achieved FLOP/s over the
    peak, achieved bytes/s over the bandwidth: how far the phase is from each roof)."""
    total = report.total()
    roof = report.roofline
    timing = roof.total
    seconds = timing.seconds or math.inf
    return {"macs": total.macs, "flops": total.flops, "bytes_read": total.bytes_read,
            "bytes_written": total.bytes_written, **phase_bytes(report, cache_kept_bytes=cache_kept_bytes),
            "roofline_seconds": timing.seconds, "bound": timing.bound.value,
            "memory_bound_share": timing.memory_bound_share, "intensity": total.intensity,
            "mfu": total.flops / seconds / roof.peak_flops_per_s,
            "mbu": total.bytes / seconds / roof.bandwidth_bytes_per_s}


def phase_bytes(report: Report, *, cache_kept_bytes: int = 0) -> dict[str, int]:
    """The phase's bytes by what they are: weights (and buffers) read, KV cache read, KV cache written, and
    activations (everything else, read and written). Per operator: its read bytes go to the weights up to the
    size of its weight operands, then to the cache up to the size of its cache operands (an operator that
    writes the cache, ``index_copy_``, reads only what it copies in); its written bytes are KV cache writes
    when its output is the cache. ``cache_kept_bytes``: keys and values the phase's projections wrote that
    the cache keeps as they are (the prefill's, in a ``DynamicCache``): moved from activations to KV written."""
    weights = kv_read = kv_written = activations = 0
    for r in report.records:
        read = r.cost.bytes_read
        w = r.weight_bytes_read
        writes_cache = any(t.kind is TensorKind.CACHE for t in r.outputs)
        c = 0 if writes_cache else min(read - w, sum(t.nbytes for t in r.inputs if t.kind is TensorKind.CACHE))
        weights += w
        kv_read += c
        activations += read - w - c
        if writes_cache:
            kv_written += r.cost.bytes_written
        else:
            activations += r.cost.bytes_written
    kept = min(cache_kept_bytes, activations) if kv_written == 0 else 0
    return {"weight_bytes_read": weights, "kv_bytes_read": kv_read, "kv_bytes_written": kv_written + kept,
            "activation_bytes": activations - kept}


@dataclass(frozen=True)
class _Setup:
    """What every phase of one run is analysed with."""

    model: torch.nn.Module
    name: str
    spec: HardwareSpec
    precision: Precision
    weight_bits: int | None
    kv_bits: int | None
    weight_group: int | None = None

    @property
    def act_bits(self) -> int | None:
        """W8A8 keeps the activations between the int8 matrix products at 16 bits."""
        return 16 if self.precision is Precision.INT8 else None

    def analyze(self, inputs: dict[str, Any], phase: str) -> Report:
        top_k = _top_k(self.model)
        with expert_routing(top_k=top_k) if top_k else contextlib.nullcontext():
            return analyze(self.model, inputs, hardware=self.spec, precision=self.precision,
                           weight_bits=self.weight_bits, act_bits=self.act_bits, kv_bits=self.kv_bits,
                           weight_group=self.weight_group, name=f"{self.name} {phase}")


def _top_k(model: torch.nn.Module) -> int | None:
    """Experts each token is routed to, for a mixture-of-experts config (Mixtral: ``num_experts_per_tok``)."""
    text = _text(getattr(model, "config", None))
    value = getattr(text, "num_experts_per_tok", None)
    return int(value) if value else None


def llm(
    source: Any,
    *,
    hardware: HardwareSpec | str,
    prompt: int,
    gen: int,
    batch: int = 1,
    precision: Precision | str = Precision.FP16,
    weight_bits: int | None = None,
    kv_bits: int | None = None,
    weight_group: int | None = DEFAULT_WEIGHT_GROUP,
    all_logits: bool = False,
    name: str | None = None,
    tp: int = 1,
    sharded: bool = False,
) -> LLMRun:
    """Prefill ``batch`` x ``prompt`` tokens and generate ``gen`` tokens with ``source`` on ``hardware``.

    ``source``: a config id of :data:`rooflens.llm.configs.CONFIGS`, a ``config.json`` path, a ``transformers``
    config, ``hf:org/name`` (local cache), or a causal-LM ``nn.Module`` (on meta). ``precision``: the dtype of
    weights, activations and cache (fp32, fp16, bf16) and the device's peak; ``int8`` is W8A8 (SmoothQuant-style):
    matrix products at the device's int8 peak with 8-bit weights, the activations between them and the KV cache in
    fp16 (per-token quantization fused into the products). ``weight_bits``: weights in memory at this many bits
    (weight-only quantization: W8A16 is 8, W4A16 4; compute stays at ``precision``). ``weight_group``: quantized
    weights carry one 16-bit scale per this many weights along each row (default 128, as GPTQ and AWQ; -1: one per
    row; None: scales not counted), counted in the weight bytes. ``kv_bits``: the KV cache at this many bits.
    ``all_logits``: the LM head on every prompt token in the prefill (default: the last, as generation does).
    ``tp``: tensor parallelism over this many devices, split as Megatron-LM splits a decoder (attention heads, MLP
    columns and rows, the vocabulary of the embedding and LM head; norms replicated): the reports, weights and KV
    cache are one device's, and each layer's two all-reduces (plus the embedding's) cost ``2 (tp - 1) / tp x bytes /
    interconnect`` (a ring, not overlapped with compute). ``sharded``: ``source`` is already one device's shard.
    """
    for value, what in ((prompt, "prompt"), (gen, "gen"), (batch, "batch"), (tp, "tp")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{what}={value!r} must be a whole number >= 1")
    spec = get_hardware(hardware)
    prec = Precision.parse(precision)
    if prec not in _DTYPES:
        raise InputError(f"precision {prec.value!r}: LLM runs compute in fp32, fp16, bf16 or int8 (W8A8); "
                         "weight-only quantization: weight_bits=8 or 4")
    if prec is Precision.INT8 and weight_bits is None:
        weight_bits = 8
    if tp > 1 and spec.interconnect_bytes_per_s is None:
        raise InputError(f"tp={tp} needs the device-to-device bandwidth of {spec.id}: the catalogue has none for it "
                         "(give a hardware file with interconnect = \"300 GB/s\")")
    model = build_model(source if tp == 1 or sharded else _shard(load_config(source), tp), dtype=_DTYPES[prec])
    if getattr(model, "config", None) is None:
        raise InputError(f"{type(model).__name__} is not a transformers causal LM (it has no .config): rooflens.llm "
                         "runs decoders built by transformers; analyse other models with rooflens.analyze")
    setup = _Setup(model, name or _model_name(source, model), spec, prec, weight_bits, kv_bits,
                   weight_group if weight_bits is not None and weight_bits <= 8 else None)
    prefill = _prefill(setup, batch, prompt, all_logits)
    first = _decode(setup, batch, prompt)
    last_context = prompt + max(gen - 2, 0)  # the steps after the prefill: contexts prompt .. prompt + gen - 2
    last = first if last_context == prompt else _decode(setup, batch, last_context)
    notes: list[str] = []
    if last_context - prompt >= 2:
        middle = prompt + (last_context - prompt) // 2
        _check_affine(first, last, _decode(setup, batch, middle), prompt, last_context, middle)
    steps = _step_seconds(first, last, prompt, last_context, _Clock.of(first, eager=False)) if gen > 1 else ()
    estimate = _estimate(prefill, first, last, prompt, last_context, gen)
    memory = _memory(model, first, spec, batch, prompt, prompt + gen - 1, kv_bits, weight_bits,
                     _prefill_inputs(model, batch, prompt, all_logits))
    if any(r.op == "aten._grouped_mm" for r in first.records):
        k = _top_k(model)
        notes.append(f"mixture of experts: routing depends on values, so tokens are taken to spread evenly, each "
                     f"to its top {k} distinct experts: a pass over T tokens reads the weights of E x (1 - (1 - k/E)^T) "
                     f"experts ({k} at one token, all at many), MACs as routed"
                     if k else "mixture of experts without a known top-k: every expert's weights are read")
    notes.append("times are roofline times of the operators the eager transformers code runs, each at the roof "
                 "of its intensity: a lower bound for eager PyTorch on the device (a fused serving engine moves "
                 "fewer bytes in the element-wise operators); KV cache as a serving engine keeps it (allocated "
                 "once, one token written per step)")
    prefill_comm, step_comm = (_allreduce_seconds(model, spec, tp, batch * tokens) for tokens in (prompt, 1))
    if tp > 1:
        notes.append(f"tensor parallel over {tp} devices: one device's share of the work and memory; "
                     f"{_allreduces(model)} all-reduces a pass at {(spec.interconnect_bytes_per_s or 0) / 1e9:g} GB/s per "
                     "direction (ring), not overlapped with compute")
    if estimate is not None and estimate.kind == _CALIBRATED:
        notes.append(f"estimate ({_CALIBRATED}, {spec.id}): each operator's time from the device's micro-benchmarks "
                     "(rooflens hw bench) as rooflens.analyze's calibrated prediction gives it, eager PyTorch; decode "
                     "steps between the first and the last analysed one interpolated linearly")
    elif estimate is not None:
        eff = spec.efficiency
        notes.append(f"estimate (eager PyTorch on {spec.id}): every operator as eager kernels reach the device - matrix "
                     f"products at {eff.get('matmul', 1.0):.0%} of the peak, memory at {eff.get('memory', 1.0):.0%} of "
                     f"the bandwidth, {eff.get('operator_seconds', 0.0) * 1e6:g} us launched - from the catalogue's "
                     "published figures (its notes); not a fused serving engine")
    if prec is Precision.INT8:
        notes.append("int8 (W8A8): every matrix product, attention's included (as SmoothQuant's W8A8 kernels run "
                     "them), timed at the device's int8 peak, and so every other operator (memory-bound at these "
                     "widths); weights 8-bit, activations and KV cache 16-bit in memory")
    if setup.weight_group is not None:
        notes.append(f"quantized weights carry a 16-bit scale per {group_text(setup.weight_group)} (counted in the "
                     "weight bytes; zero points, where a scheme has them, are not)")
    return LLMRun(setup, batch, prompt, gen, prefill, first, last, steps, memory, all_logits, tuple(notes), tp,
                  prefill_comm, step_comm, estimate)


_CALIBRATED = "calibrated on the measured device"


def _estimate(prefill: Report, first: Report, last: Report, lo: int, hi: int, gen: int) -> _Estimate | None:
    """The run's times as the device reaches them: calibrated on a measured device, else eager PyTorch at the
    catalogue's efficiency; None when the device has neither."""
    spec = prefill.roofline.hardware
    if can_calibrate(spec):
        a, b, pre = (_calibrated_seconds(r) for r in (first, last, prefill))
        steps = tuple(a + (b - a) * (c - lo) / (hi - lo) if hi > lo else a for c in range(lo, hi + 1))
        return _Estimate(_CALIBRATED, pre, steps if gen > 1 else (), a)
    if not spec.efficiency:
        return None
    eager = _Clock.of(first, eager=True)
    return _Estimate("eager PyTorch at the device's published efficiency", eager.total(prefill),
                     _step_seconds(first, last, lo, hi, eager) if gen > 1 else (), eager.total(first))


def _calibrated_seconds(report: Report) -> float:
    prediction = report.calibrated
    if prediction is None:
        raise ModelError(f"{report.model}: the measured device gave no calibrated prediction")
    return prediction.total_seconds


def _shard(config: Any, tp: int) -> Any:
    """One device's config under Megatron-style tensor parallelism: heads, KV heads, the MLP's hidden size
    and the vocabulary divided by ``tp``, the head size kept."""
    text = _text(config)
    heads, kv_heads = text.num_attention_heads, _kv_heads(text)
    ffn = getattr(text, "intermediate_size", None)
    if getattr(text, "model_type", "") not in _SHARDABLE or ffn is None:
        raise InputError(f"tp > 1 is not supported for {getattr(text, 'model_type', '?')!r} models yet "
                         f"(supported: {', '.join(sorted(_SHARDABLE))})")
    for value, what in ((heads, "attention heads"), (kv_heads, "key/value heads"), (ffn, "MLP width")):
        if value % tp:
            raise InputError(f"tp={tp} does not divide the model's {value} {what}")
    shard = copy.deepcopy(config)
    part = _text(shard)
    part.head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    part.num_attention_heads = heads // tp
    part.num_key_value_heads = kv_heads // tp
    part.intermediate_size = ffn // tp
    part.vocab_size = -(-text.vocab_size // tp)
    part.pad_token_id = None  # the padding row may fall in another device's share of the vocabulary
    return shard


_SHARDABLE = frozenset({"llama", "mistral", "mixtral", "qwen2", "gemma2", "phi3"})


def _allreduces(model: torch.nn.Module) -> int:
    """All-reduces a forward pass takes under Megatron-style tensor parallelism: after the attention's output
    projection and after the MLP of every layer, and after the vocabulary-parallel embedding."""
    return 2 * int(_text(model.config).num_hidden_layers) + 1


def _allreduce_seconds(model: torch.nn.Module, spec: HardwareSpec, tp: int, tokens: int) -> float:
    """The pass's all-reduces of ``tokens`` hidden vectors at the activations' width, as a ring:
    ``2 (tp - 1) / tp x bytes / interconnect`` each."""
    if tp == 1:
        return 0.0
    text = _text(model.config)
    nbytes = tokens * int(text.hidden_size) * next(model.parameters()).element_size()
    assert spec.interconnect_bytes_per_s is not None
    return _allreduces(model) * 2 * (tp - 1) / tp * nbytes / spec.interconnect_bytes_per_s


def _model_name(source: Any, model: torch.nn.Module) -> str:
    if isinstance(source, str):
        return source.removeprefix("hf:")
    config = getattr(model, "config", None)
    return str(getattr(config, "name_or_path", "") or type(model).__name__)


def _prefill(setup: _Setup, batch: int, prompt: int, all_logits: bool) -> Report:
    return setup.analyze(_prefill_inputs(setup.model, batch, prompt, all_logits), "prefill")


def _prefill_inputs(model: torch.nn.Module, batch: int, prompt: int, all_logits: bool) -> dict[str, Any]:
    """``batch`` x ``prompt`` token ids (meta), their positions, an empty DynamicCache, the last logits only."""
    from transformers import DynamicCache

    config: Any = model.config
    inputs: dict[str, Any] = {
        "input_ids": torch.zeros(batch, prompt, dtype=torch.long, device="meta"),
        "position_ids": torch.arange(prompt, device="meta").expand(batch, prompt),
        "past_key_values": DynamicCache(config=config),
        "use_cache": True,
    }
    if not all_logits:
        inputs["logits_to_keep"] = 1
    return inputs


def _static_cache(model: torch.nn.Module, batch: int, tokens: int, device: torch.device) -> Any:
    """A StaticCache of ``tokens`` positions on the meta device, allocated now (not during the step): its
    layers report ``device`` (the device the analysis presents its fake tensors on)."""
    from transformers import StaticCache

    config: Any = model.config
    text = _text(config)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    dtype = next(model.parameters()).dtype
    cache: Any = StaticCache(config=config, max_cache_len=tokens)
    cache.early_initialization(batch, _kv_heads(text), head_dim, dtype, torch.device("meta"))
    for layer in cache.layers:
        layer.device = device
    return cache


def _text(config: Any) -> Any:
    """The text decoder's config (a multimodal config holds it inside)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _kv_heads(text: Any) -> int:
    """Key/value heads per layer: GQA's ``num_key_value_heads``; Falcon's ``num_kv_heads`` (its new decoder
    architecture) or one head (``multi_query``); else one per attention head."""
    heads: int = text.num_attention_heads
    if getattr(text, "num_key_value_heads", None):
        return int(text.num_key_value_heads)
    if getattr(text, "model_type", "") == "falcon" and not getattr(text, "new_decoder_architecture", False):
        return 1 if getattr(text, "multi_query", False) else heads
    return int(getattr(text, "num_kv_heads", None) or heads)


def _decode(setup: _Setup, batch: int, context: int) -> Report:
    ids = torch.zeros(batch, 1, dtype=torch.long, device="meta")
    device = analysis_device(setup.model, [ids])
    position = torch.arange(context, context + 1, device="meta")
    inputs = {
        "input_ids": ids,
        "position_ids": position.expand(batch, 1),  # given: models that derive them read the cache's length
        "past_key_values": _static_cache(setup.model, batch, context + 1, device),
        "cache_position": position,
        "use_cache": True,
    }
    try:
        return setup.analyze(inputs, f"decode@{context}")
    except ModelError as e:
        if "depends on tensor values" not in str(e):
            raise
    # A model that sizes its masks from the cache's length (a tensor in a StaticCache: OPT) takes it from an
    # all-ones attention mask instead
    inputs["attention_mask"] = torch.ones(batch, context + 1, dtype=torch.long, device="meta")
    inputs["past_key_values"] = _static_cache(setup.model, batch, context + 1, device)
    return setup.analyze(inputs, f"decode@{context}")


def _signature(r: OpRecord) -> tuple[str, str]:
    return r.op, r.module


def _check_affine(first: Report, last: Report, middle: Report, lo: int, hi: int, mid: int) -> None:
    """Every operator's FLOPs and bytes at ``mid`` lie on the line through ``lo`` and ``hi``."""
    if not (len(first.records) == len(last.records) == len(middle.records)) or any(
        _signature(a) != _signature(b) or _signature(a) != _signature(c)
        for a, b, c in zip(first.records, last.records, middle.records, strict=True)
    ):
        raise InputError("the decode steps at different contexts run different operators; the per-step cost "
                         "cannot be interpolated (a model whose code branches on the cache length)")
    for a, b, c in zip(first.records, last.records, middle.records, strict=True):
        for at_lo, at_hi, at_mid in zip(_work(a), _work(b), _work(c), strict=True):
            expected = at_lo + (at_hi - at_lo) * (mid - lo) / (hi - lo)
            if not math.isclose(at_mid, expected, rel_tol=1e-9, abs_tol=1.0):
                raise InputError(f"the decode cost of {c.op} in {c.module!r} is not affine in the context length "
                                 f"({at_mid} at {mid}, expected {expected:.0f})")


def _work(r: OpRecord) -> tuple[int, int, int]:
    return r.cost.flops, r.cost.bytes_read, r.cost.bytes_written


_PRODUCTS = frozenset({"matmul", "attention", "conv"})  # families that run as matrix-product kernels


@dataclass(frozen=True)
class _Clock:
    """Time of one operator on a device: at the roof (``efficiency`` None), or as eager kernels reach it (the
    fractions of the peak and bandwidth the device's ``efficiency`` gives, plus its cost per operator)."""

    peak: float
    bandwidth: float
    matmul: float = 1.0
    memory: float = 1.0
    per_operator: float = 0.0

    @classmethod
    def of(cls, report: Report, *, eager: bool) -> _Clock:
        roof = report.roofline
        eff = roof.hardware.efficiency if eager else {}
        return cls(roof.peak_flops_per_s, roof.bandwidth_bytes_per_s, eff.get("matmul", 1.0), eff.get("memory", 1.0),
                   eff.get("operator_seconds", 0.0))

    def seconds(self, flops: float, nbytes: float, family: str) -> float:
        peak = self.peak * (self.matmul if family in _PRODUCTS else 1.0)
        return max(flops / peak, nbytes / (self.bandwidth * self.memory)) + self.per_operator

    def total(self, report: Report) -> float:
        return math.fsum(self.seconds(r.cost.flops, r.cost.bytes, r.family) for r in report.records)


def _step_seconds(first: Report, last: Report, lo: int, hi: int, clock: _Clock) -> tuple[float, ...]:
    """The time of every decode step from context ``lo`` to ``hi`` on ``clock``: each operator's FLOPs and
    bytes interpolated between the two analysed steps, timed, summed."""
    if hi == lo:
        return (clock.total(first),)
    pairs = [(a.cost.flops, b.cost.flops, a.cost.bytes, b.cost.bytes, a.family)
             for a, b in zip(first.records, last.records, strict=True)]
    steps = []
    for context in range(lo, hi + 1):
        t = (context - lo) / (hi - lo)
        steps.append(math.fsum(clock.seconds(f0 + (f1 - f0) * t, b0 + (b1 - b0) * t, family)
                               for f0, f1, b0, b1, family in pairs))
    return tuple(steps)


def _memory(model: torch.nn.Module, decode: Report, spec: HardwareSpec, batch: int, prompt: int, tokens: int,
            kv_bits: int | None, weight_bits: int | None, prefill_inputs: dict[str, Any]) -> LLMMemory:
    """Weights at their width; the KV cache measured on cache objects (1 token of one sequence, the prompt
    and the whole generation of the batch: sliding-window layers stop growing at their window), at
    ``kv_bits`` per element when given; the prefill's live activations beyond its cache from the memory
    timeline of the prefill (:func:`rooflens.memory`; the cache it builds there is at the model's width)."""

    def kv(batch_size: int, positions: int) -> int:
        return _cache_bytes(model, batch_size, positions, kv_bits)

    prompt_kv = kv(batch, prompt)
    live = memory_timeline(model, prefill_inputs, name="prefill", weight_bits=weight_bits).peak_bytes
    return LLMMemory(decode.weight_bytes, kv(1, 1), kv(batch, tokens), spec.memory_bytes, prompt_kv, kv(1, tokens),
                     max(0, live - _cache_bytes(model, batch, prompt, None)))


def _cache_bytes(model: torch.nn.Module, batch: int, tokens: int, bits: int | None) -> int:
    cache = _static_cache(model, batch, tokens, torch.device("meta"))
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values) if t is not None]
    if bits is None:
        return sum(t.nbytes for t in tensors)
    return sum((t.numel() * bits + 7) // 8 for t in tensors)
