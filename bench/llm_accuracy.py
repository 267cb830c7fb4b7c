"""rooflens.llm() against published, measured LLM serving numbers (issue 12, "Time estimates": validation).

Each row of :data:`ROWS` is one number a vendor, an engine's documentation or a benchmark post published,
with its setup (model, device, precision, weight-only quantization, tensor parallelism, batch, input and
output lengths), the metric, the engine and the source it was read from. The script runs ``rooflens.llm``
with the same setup, computes the same metric from our estimate and prints a fixed-width table (published,
ours, ours / published, and ``roof/meas``: our time over the measured time, i.e. the share of the device's
roofline the engine reached), a summary per metric and one JSON line. Rows rooflens cannot reproduce (fp8
compute, missing setup details) are listed in :data:`SKIPPED` with the reason.

Our times are roofline times (a lower bound): time metrics should come out below 1 (ours / published),
rate metrics (tokens per second) above 1; ``roof/meas`` is below 1 for both.

    python bench/llm_accuracy.py [--only KEY,KEY] [--json-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# Sources (each row names one of these and the table or figure the number was read from).
TRTLLM_061 = ("NVIDIA/TensorRT-LLM docs/source/performance.md (v0.6.1 data; commit 138f96d4), "
              "https://github.com/NVIDIA/TensorRT-LLM/blob/138f96d45f90b9667426f7c47297d8c06bafac73/docs/source/performance.md")
LMDEPLOY = ("InternLM/lmdeploy docs/en/benchmark/a100_fp16.md 'Benchmark on A100 (FP16)', lmdeploy v0.1.0a1 "
            "(TurboMind), static inference tables (commit 3e391df4)")
GPTFAST = ("pytorch-labs/gpt-fast README.md 'Benchmarks' (8xA100-80GB power limited to 330 W, batch 1, prompt 5 "
           "tokens; generate.py: bf16, max_new_tokens 200, tok/s = new tokens / wall time incl. prefill)")
PT_BLOG = ("PyTorch blog 'Accelerating Generative AI with PyTorch II: GPT, Fast', https://pytorch.org/blog/"
           "accelerating-generative-ai-2/ , 'Starting Point (25.5 tok/s)' (A100-80GB at 330 W, batch 1)")
VLLM_A100 = ("vLLM nightly performance benchmark, https://buildkite.com/vllm/performance-benchmark/builds/9523 , "
             "'Latency tests' (input 32, output 128, batch 8, mean end-to-end latency)")
VLLM_H200 = ("vLLM nightly performance benchmark, https://buildkite.com/vllm/performance-benchmark/builds/9515 , "
             "'Latency tests' (input 32, output 128, batch 8, mean end-to-end latency)")
LLAMACPP_4766 = ("ggml-org/llama.cpp PR #4766 'llama : ggml-backend integration', ggerganov comment 2024-01-10, "
                 "llama-bench on RTX 4090, codellama-7b gguf")
LLAMACPP_4766_JG = ("ggml-org/llama.cpp PR #4766, JohannesGaessler table (turn 56), column 't/s master', RTX 3090")
MUSGRAVE = ("https://johnmusgrave.com/p/vllm-throughput-latency-sweep-on 'vLLM throughput-latency sweep on "
            "NVIDIA A100' (vLLM 0.23.0, fixed 1024 in / 128 out, --ignore-eos): 'decode at one request ... about "
            "75 tokens/sec'")
RKOOO = ("rkooo567/llm_benchmark README 'llm_benchmark on llama2-70B, Run on A100(40GiB)x8, with tensor para = 8' "
         "(batch_size 32, input_len 1, output_len 2048)")


@dataclass(frozen=True)
class Row:
    """One published measurement and the setup it was measured with."""

    key: str
    model: str  # rooflens config id
    published_model: str
    hw: str  # rooflens catalogue id
    precision: str
    weight_bits: int | None
    tp: int
    batch: int
    prompt: int
    gen: int
    metric: str  # a key of METRICS
    published: float
    engine: str
    source: str
    note: str = ""
    weight_group: int | None = None  # quantized rows: weights per 16-bit scale (-1: one per row)


@dataclass(frozen=True)
class Skipped:
    what: str
    source: str
    reason: str


def _tok_s_user(run: Any, row: Row) -> float:
    """Batch-1 generation rate over the whole generate call: new tokens / (prefill + steps)."""
    return row.gen / run.e2e_seconds


def _out_tok_s(run: Any, row: Row) -> float:
    """Static-batch output throughput: batch x new tokens / (prefill + steps)."""
    return row.batch * row.gen / run.e2e_seconds


METRICS: dict[str, tuple[str, str, Callable[[Any, Row], float]]] = {
    # name: (unit, "time" or "rate", our value)
    "ttft": ("ms", "time", lambda run, row: run.ttft_seconds * 1e3),
    "e2e": ("ms", "time", lambda run, row: run.e2e_seconds * 1e3),
    "decode tok/s": ("tok/s", "rate", lambda run, row: 1.0 / run.tpot_seconds),
    "tok/s (b1, e2e)": ("tok/s", "rate", _tok_s_user),
    "out tok/s": ("tok/s", "rate", _out_tok_s),
    "prefill tok/s": ("tok/s", "rate", lambda run, row: row.prompt * row.batch / run.ttft_seconds),
}


def _r(key: str, model: str, pub_model: str, hw: str, prec: str, wbits: int | None, tp: int, batch: int,
       prompt: int, gen: int, metric: str, published: float, engine: str, source: str, note: str = "",
       group: int | None = None) -> Row:
    return Row(key, model, pub_model, hw, prec, wbits, tp, batch, prompt, gen, metric, published, engine, source, note,
               group)


ROWS: list[Row] = [
    # --- gpt-fast: torch.compile + CUDA graphs, batch 1, decode-dominated (5-token prompt, 200 new tokens)
    _r("gptfast-7b", "llama-2-7b", "Llama-2-7B", "a100-80gb", "bf16", None, 1, 1, 5, 200, "tok/s (b1, e2e)",
       104.9, "gpt-fast", GPTFAST + ", row Llama-2-7B Base", "GPU power-limited to 330 W"),
    _r("gptfast-7b-int8", "llama-2-7b", "Llama-2-7B", "a100-80gb", "bf16", 8, 1, 1, 5, 200, "tok/s (b1, e2e)",
       155.58, "gpt-fast", GPTFAST + ", row 8-bit (int8 weight-only)", "330 W; a scale per output channel", -1),
    _r("gptfast-7b-int4", "llama-2-7b", "Llama-2-7B", "a100-80gb", "bf16", 4, 1, 1, 5, 200, "tok/s (b1, e2e)",
       196.80, "gpt-fast", GPTFAST + ", row 4-bit (G=32)", "330 W; group-32 scales counted, its zero points not", 32),
    _r("gptfast-70b-int8", "llama-2-70b", "Llama-2-70B", "a100-80gb", "bf16", 8, 1, 1, 5, 200, "tok/s (b1, e2e)",
       19.13, "gpt-fast", GPTFAST + ", row Llama-2-70B 8-bit", "330 W; a scale per output channel", -1),
    _r("gptfast-7b-tp8", "llama-2-7b", "Llama-2-7B", "a100-80gb", "bf16", None, 8, 1, 5, 200, "tok/s (b1, e2e)",
       328.43, "gpt-fast", GPTFAST + ", 'Tensor Parallelism' table, Llama-2-7B 8 GPUs", "330 W"),
    _r("gptfast-70b-tp8", "llama-2-70b", "Llama-2-70B", "a100-80gb", "bf16", None, 8, 1, 5, 200, "tok/s (b1, e2e)",
       62.50, "gpt-fast", GPTFAST + ", 'Tensor Parallelism' table, Llama-2-70B 8 GPUs", "330 W"),
    _r("pytorch-eager-7b", "llama-2-7b", "Llama-2-7B", "a100-80gb", "bf16", None, 1, 1, 5, 200, "tok/s (b1, e2e)",
       25.5, "plain eager PyTorch", PT_BLOG, "CPU-overhead bound per the blog; same setup as gpt-fast assumed"),
    # --- LMDeploy v0.1.0a1 (TurboMind), A100-80G, FP16, static batches
    _r("lmdeploy-7b-b1", "llama-2-7b", "llama2-7b", "a100-80gb", "fp16", None, 1, 1, 128, 128, "tok/s (b1, e2e)",
       102.21, "LMDeploy", LMDEPLOY + ", llama2-7b, batch 1 tp 1 128/128, throughput(out tok/s)"),
    _r("lmdeploy-7b-ftl2048", "llama-2-7b", "llama2-7b", "a100-80gb", "fp16", None, 1, 1, 2048, 128, "ttft",
       139.0, "LMDeploy", LMDEPLOY + ", llama2-7b, batch 1 tp 1 2048/128, FTL(ave) 0.139 s"),
    _r("lmdeploy-13b-b1", "llama-2-13b", "llama2-13b", "a100-80gb", "fp16", None, 1, 1, 128, 128,
       "tok/s (b1, e2e)", 56.58, "LMDeploy", LMDEPLOY + ", llama2-13b, batch 1 tp 1 128/128, throughput(out tok/s)"),
    _r("lmdeploy-70b-b1", "llama-2-70b", "llama2-70b", "a100-80gb", "fp16", None, 4, 1, 128, 128,
       "tok/s (b1, e2e)", 33.63, "LMDeploy", LMDEPLOY + ", llama2-70b, batch 1 tp 4 128/128, throughput(out tok/s)"),
    _r("lmdeploy-70b-ftl2048", "llama-2-70b", "llama2-70b", "a100-80gb", "fp16", None, 4, 1, 2048, 128, "ttft",
       402.0, "LMDeploy", LMDEPLOY + ", llama2-70b, batch 1 tp 4 2048/128, FTL(ave) 0.402 s"),
    _r("lmdeploy-7b-b64", "llama-2-7b", "llama2-7b", "a100-80gb", "fp16", None, 1, 64, 128, 128, "out tok/s",
       3024.07, "LMDeploy", LMDEPLOY + ", llama2-7b, batch 64 tp 1 128/128, throughput(out tok/s)"),
    # --- TensorRT-LLM (A100 FP16 tables; first-token latency from v0.5, throughput v0.6.1)
    _r("trtllm-7b-ttft128", "llama-2-7b", "LLaMA 7B", "a100-80gb", "fp16", None, 1, 1, 128, 1, "ttft", 16.0,
       "TensorRT-LLM", TRTLLM_061 + ", 'Low Latency' A100 GPUs (FP16), LLaMA 7B input 128", "A100 memory size not stated"),
    _r("trtllm-7b-ttft2048", "llama-2-7b", "LLaMA 7B", "a100-80gb", "fp16", None, 1, 1, 2048, 1, "ttft", 133.0,
       "TensorRT-LLM", TRTLLM_061 + ", 'Low Latency' A100 GPUs (FP16), LLaMA 7B input 2048"),
    _r("trtllm-70b-ttft2048", "llama-2-70b", "LLaMA 70B", "a100-80gb", "fp16", None, 4, 1, 2048, 1, "ttft", 377.0,
       "TensorRT-LLM", TRTLLM_061 + ", 'Low Latency' A100 GPUs (FP16), LLaMA 70B TP 4 input 2048"),
    _r("trtllm-7b-b384", "llama-2-7b", "LLaMA 7B", "a100-80gb", "fp16", None, 1, 384, 128, 128, "out tok/s",
       5586.0, "TensorRT-LLM", TRTLLM_061 + ", 'Peak Throughput' A100 GPUs (FP16), LLaMA 7B batch 384 128/128"),
    _r("trtllm-7b-b52", "llama-2-7b", "LLaMA 7B", "a100-80gb", "fp16", None, 1, 52, 2048, 128, "out tok/s",
       591.0, "TensorRT-LLM", TRTLLM_061 + ", 'Peak Throughput' A100 GPUs (FP16), LLaMA 7B batch 52 2048/128"),
    # --- vLLM nightly latency tests: batch 8, 32 in, 128 out, end-to-end
    _r("vllm-a100-8b", "llama-3.1-8b", "llama-3.1 8B", "a100-80gb", "bf16", None, 1, 8, 32, 128, "e2e", 1579.27,
       "vLLM", VLLM_A100 + ", latency_llama8B_tp1 A100-SXM4-80GB", "dtype not stated (model default bf16)"),
    _r("vllm-a100-70b", "llama-3.1-70b", "llama-3 70B", "a100-80gb", "bf16", None, 4, 8, 32, 128, "e2e", 3990.59,
       "vLLM", VLLM_A100 + ", latency_llama70B_tp4 A100-SXM4-80GB", "Llama-3-70B has the Llama-3.1-70B shapes"),
    _r("vllm-h200-8b", "llama-3.1-8b", "llama-3.1 8B", "h200", "bf16", None, 1, 8, 32, 128, "e2e", 833.421,
       "vLLM", VLLM_H200 + ", latency_llama8B_tp1 H200"),
    _r("vllm-h200-mixtral", "mixtral-8x7b", "mixtral 8x7B", "h200", "bf16", None, 2, 8, 32, 128, "e2e", 1917.44,
       "vLLM", VLLM_H200 + ", latency_mixtral8x7B_tp2 H200", "H200 NVLink taken as the H100 SXM figure"),
    # --- llama.cpp llama-bench (batch 1; tg128 = 128 tokens from an empty context, pp512 = one 512-token prompt)
    _r("llamacpp-4090-f16-tg", "llama-2-7b", "llama 7B F16 (codellama-7b)", "rtx-4090", "fp16", None, 1, 1, 1, 128,
       "tok/s (b1, e2e)", 61.03, "llama.cpp", LLAMACPP_4766 + ", row llama 7B F16 tg 128"),
    _r("llamacpp-4090-f16-pp", "llama-2-7b", "llama 7B F16 (codellama-7b)", "rtx-4090", "fp16", None, 1, 1, 512, 1,
       "prefill tok/s", 11048.22, "llama.cpp", LLAMACPP_4766 + ", row llama 7B F16 pp 512"),
    _r("llamacpp-4090-q8-tg", "llama-2-7b", "llama 7B Q8_0 (codellama-7b)", "rtx-4090", "fp16", 8, 1, 1, 1, 128,
       "tok/s (b1, e2e)", 98.13, "llama.cpp", LLAMACPP_4766 + ", row llama 7B Q8_0 tg 128",
       "Q8_0: blocks of 32 weights with a 16-bit scale, 8.5 bits a weight", 32),
    _r("llamacpp-3090-q4-tg", "llama-2-7b", "llama 7B Q4_0", "rtx-3090", "fp16", 4, 1, 1, 1, 128, "tok/s (b1, e2e)",
       121.82, "llama.cpp", LLAMACPP_4766_JG + ", row llama 7B Q4_0 tg128",
       "Q4_0: blocks of 32 weights with a 16-bit scale, 4.5 bits a weight", 32),
    # --- vLLM, one request at a time, on an A100 40GB
    _r("vllm-a100-40gb-c1", "llama-3.1-8b", "Llama-3.1-8B-Instruct", "a100-40gb", "bf16", None, 1, 1, 1024, 128,
       "decode tok/s", 75.0, "vLLM 0.23.0", MUSGRAVE, "'about' 75: rounded in the post"),
    # --- Llama-2-70B on 8x A100-40GB, TP 8: a fused engine against eager HuggingFace transformers
    _r("rkooo-70b-triton", "llama-2-70b", "llama2-70B", "a100-40gb", "fp16", None, 8, 32, 1, 2048, "e2e", 70.19e3,
       "Triton (FasterTransformer)", RKOOO + ", row Triton 70.19 s", "precision not stated (fp16 assumed)"),
    _r("rkooo-70b-hf", "llama-2-70b", "llama2-70B", "a100-40gb", "fp16", None, 8, 32, 1, 2048, "e2e", 948.26e3,
       "HuggingFace transformers", RKOOO + ", row Huggingface 948.26 s",
       "precision not stated (fp16 assumed); how HF split the model over 8 GPUs is not stated"),
]

SKIPPED: list[Skipped] = [
    Skipped("TensorRT-LLM H100 tables (throughput and first-token latency, v0.5/v0.6.1)", TRTLLM_061,
            "FP8 weights, activations and KV cache (--enable_fp8 --fp8_kv_cache): rooflens has no fp8 compute yet"),
    Skipped("TensorRT-LLM perf-overview (v0.10 onwards): Llama 3.x on H100/H200/B200",
            "NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md",
            "all rows FP8 or FP4 (ModelOpt checkpoints); B200/GB200 not in the catalogue"),
    Skipped("NVIDIA NIM benchmarking: Llama-3.3-70B, 2x H100, fp8 TP2 (e.g. 5000/500 at concurrency 1: TTFT "
            "406.77 ms, ITL 18.58 ms)", "https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance",
            "fp8 compute"),
    Skipped("NVIDIA NIM benchmarking: Llama-3.1-8B and Llama-3.1-70B tables (e.g. 8B v1.8.0 concurrency 1: TTFT "
            "10.26 ms, ITL 4.63 ms)", "https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance",
            "the GPU, precision and input/output lengths of these tables are not in the stored copy of the page"),
    Skipped("NeMo Framework Llama-2 inference (A100 80GB / H100 80GB, 128 in / 20 out, batch 1-8, TP 1-8)",
            "https://docs.nvidia.com/nemo-framework/user-guide/latest/performance/llama.html",
            "precision not stated; Llama-2-13B is reported faster than Llama-2-7B at the same settings (questioned "
            "in NVIDIA/NeMo discussion #8455), and 13B batch 1 TP 1 on H100 (86.4 ms) is below the fp16 roofline "
            "(rooflens: 155.7 ms), so those rows cannot be fp16"),
    Skipped("MLPerf Inference Llama-2-70B (offline/server)", "MLCommons results, via secondary pages only",
            "H100/H200 submissions run FP8; only secondary aggregator pages with rounded values are in the store"),
    Skipped("MLC-LLM llm-perf-bench, RTX 4090, Llama-2 7B/13B 4-bit: 191.0 / 108.8 tok/s",
            "mlc-ai/llm-perf-bench PR #1", "prompt and generation lengths not stated in the stored thread"),
    Skipped("Databricks/MosaicML 'LLM Inference Performance Engineering: Best Practices' latency tables",
            "https://www.databricks.com/blog/llm-inference-performance-engineering-best-practices",
            "only the opening of the page is in the store; its tables could not be read"),
    Skipped("Perplexity 'Turbocharging Llama 2 70B with NVIDIA H100'",
            "https://blog.perplexity.ai/blog/turbocharging-llama-2-70b-with-nvidia-h100",
            "results are in figures; no numbers in the stored text (and the H100 runs use fp8)"),
]


def _hardware(hw_id: str) -> Any:
    """The catalogue entry, with the H100 SXM's NVLink figure where the catalogue has none for an H200 (the
    same NVLink 4 generation) so that tensor-parallel rows can run."""
    from rooflens.hardware.catalogue import get

    spec = get(hw_id)
    if hw_id == "h200" and spec.interconnect_bytes_per_s is None:
        spec = dataclasses.replace(spec, interconnect_bytes_per_s=get("h100-sxm").interconnect_bytes_per_s)
    return spec


def _settings(row: Row) -> str:
    group = {None: "", -1: "r"}.get(row.weight_group, f"g{row.weight_group}")
    quant = f" w{row.weight_bits}{group}" if row.weight_bits else ""
    tp = f" tp{row.tp}" if row.tp > 1 else ""
    return f"{row.precision}{quant}{tp} b{row.batch} {row.prompt}/{row.gen}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated row keys")
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    import transformers  # noqa: F401 - imported before the clock starts

    from rooflens import llm
    from rooflens.errors import RooflensError

    wanted = {k for k in args.only.split(",") if k}
    rows = [r for r in ROWS if not wanted or r.key in wanted]
    runs: dict[tuple[Any, ...], Any] = {}
    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for row in rows:
        setup = (row.model, row.hw, row.precision, row.weight_bits, row.weight_group, row.tp, row.batch, row.prompt,
                 row.gen)
        unit, kind, ours_of = METRICS[row.metric]
        entry: dict[str, Any] = {**dataclasses.asdict(row), "unit": unit, "kind": kind}
        try:
            if setup not in runs:
                t0 = time.perf_counter()
                runs[setup] = llm(row.model, hardware=_hardware(row.hw), prompt=row.prompt, gen=row.gen,
                                  batch=row.batch, precision=row.precision, weight_bits=row.weight_bits,
                                  weight_group=row.weight_group, tp=row.tp)
                entry["analysis_s"] = round(time.perf_counter() - t0, 2)
            run = runs[setup]
            ours = ours_of(run, row)
            ratio = ours / row.published
            entry.update(ours=ours, ratio=ratio, roof_over_measured=ratio if kind == "time" else 1.0 / ratio,
                         tpot_ms=run.tpot_seconds * 1e3, ttft_ms=run.ttft_seconds * 1e3,
                         fits=run.memory.fits)
        except RooflensError as exc:  # a row rooflens cannot analyse is reported, the others still run
            entry.update(error=f"{type(exc).__name__}: {exc}")
        results.append(entry)
    wall = time.perf_counter() - t_start

    summary: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        got = [e for e in results if e["metric"] == metric and "ratio" in e]
        if got:
            ratios = [e["ratio"] for e in got]
            summary[metric] = {"n": len(got), "median": _median(ratios), "min": min(ratios), "max": max(ratios)}
    eff = [e["roof_over_measured"] for e in results if "roof_over_measured" in e]
    fused = [e["roof_over_measured"] for e in results if "roof_over_measured" in e
             and e["engine"] not in ("plain eager PyTorch", "HuggingFace transformers")]
    summary["roof/meas (all)"] = {"n": len(eff), "median": _median(eff), "min": min(eff, default=None),
                                  "max": max(eff, default=None)}
    summary["roof/meas (serving engines)"] = {"n": len(fused), "median": _median(fused),
                                              "min": min(fused, default=None), "max": max(fused, default=None)}

    if not args.json_only:
        print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
              f"torch {torch.__version__}; {len(runs)} analyses in {wall:.1f} s")
        head = (f"{'key':22s} {'model':13s} {'hw':10s} {'settings':24s} {'engine':14s} {'metric':16s} "
                f"{'published':>10s} {'ours':>10s} {'ours/pub':>8s} {'roof/meas':>9s}")
        print(head)
        print("-" * len(head))
        for e in results:
            settings = _settings(Row(**{k: e[k] for k in Row.__dataclass_fields__}))
            engine = e["engine"][:14]
            if "error" in e:
                print(f"{e['key']:22s} {e['model']:13s} {e['hw']:10s} {settings:24s} {engine:14s} "
                      f"{e['metric']:16s} {e['published']:10.4g}  ERROR {e['error']}")
                continue
            print(f"{e['key']:22s} {e['model']:13s} {e['hw']:10s} {settings:24s} {engine:14s} {e['metric']:16s} "
                  f"{e['published']:10.4g} {e['ours']:10.4g} {e['ratio']:8.3f} {e['roof_over_measured']:9.3f}")
        print()
        print("summary: ours / published per metric (time metrics: < 1 expected; rates: > 1 expected); "
              "roof/meas = our time / measured time")
        for name, s in summary.items():
            if s["n"]:
                print(f"  {name:30s} n={s['n']:2d}  median {s['median']:.3f}  range {s['min']:.3f} .. {s['max']:.3f}")
        print()
        print(f"skipped ({len(SKIPPED)}):")
        for s in SKIPPED:
            print(f"  - {s.what}: {s.reason}")
        print()
        print("sources:")
        for e in results:
            print(f"  {e['key']}: {e['source']}" + (f" [{e['note']}]" if e["note"] else ""))
    print(json.dumps({"bench": "llm_accuracy", "wall_s": round(wall, 1), "analyses": len(runs),
                      "rows": [{k: e.get(k) for k in ("key", "model", "hw", "precision", "weight_bits", "weight_group",
                                                     "tp", "batch", "prompt", "gen", "metric", "unit", "published", "ours", "ratio",
                                                     "roof_over_measured", "engine", "error")} for e in results],
                      "summary": summary, "skipped": [dataclasses.asdict(s) for s in SKIPPED]}))


if __name__ == "__main__":
    main()
