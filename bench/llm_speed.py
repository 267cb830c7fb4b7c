"""Wall time of rooflens.llm() on big decoders built on the meta device (issue 12's performance target:
the 70B prefill at 4096 tokens and a decode step analysed in under 5 s together on this 2-core machine).

Per case, in this process: building the model on meta (transformers imported beforehand), then the first
``llm(..., gen=1)`` (one prefill and one decode step, plus the cache objects for the memory figures) and a
second one (warm caches). Prints a fixed-width table, then one JSON line.

    python bench/llm_speed.py [--cases llama-2-70b,llama-3.1-70b] [--prompt 4096]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="llama-2-70b,llama-3.1-70b,mixtral-8x7b")
    parser.add_argument("--prompt", type=int, default=4096)
    parser.add_argument("--hw", default="h100-sxm")
    args = parser.parse_args()
    import transformers  # noqa: F401 - imported before the clock starts (about 2.5 s here)

    from rooflens.llm import build_model, llm

    rows = []
    for case in args.cases.split(","):
        t0 = time.perf_counter()
        model = build_model(case)
        t1 = time.perf_counter()
        run = llm(model, hardware=args.hw, prompt=args.prompt, gen=1, name=case)
        t2 = time.perf_counter()
        llm(model, hardware=args.hw, prompt=args.prompt, gen=1, name=case)
        t3 = time.perf_counter()
        rows.append({"case": case, "prompt": args.prompt, "build_s": round(t1 - t0, 3),
                     "first_s": round(t2 - t1, 3), "second_s": round(t3 - t2, 3),
                     "prefill_ops": len(run.prefill.records), "decode_ops": len(run.decode_first.records),
                     "target_s": 5.0, "pass": t2 - t1 < 5.0})
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"torch {torch.__version__}")
    print(f"{'case':16s} {'prompt':>6s} {'build s':>8s} {'first s':>8s} {'second s':>9s} {'ops':>11s}  target")
    for r in rows:
        ops = f"{r['prefill_ops']}+{r['decode_ops']}"
        verdict = "ok" if r["pass"] else "FAIL"
        print(f"{r['case']:16s} {r['prompt']:6d} {r['build_s']:8.2f} {r['first_s']:8.2f} {r['second_s']:9.2f} "
              f"{ops:>11s}  {verdict} <= 5 s")
    print(json.dumps({"bench": "llm_speed", "hw": args.hw, "rows": rows}))


if __name__ == "__main__":
    main()
