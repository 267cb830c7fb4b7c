"""`rooflens llm`: the command over rooflens.llm (whose numbers tests/test_llm_run.py derives by hand)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch

from rooflens.cli import main
from rooflens.llm.run import llm
from rooflens.report.document import RENDERERS
from rooflens.report.llm_render import llm_document

transformers = pytest.importorskip("transformers")


def test_cli_llm_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["llm", "llama-2-7b", "--hw", "a100-80gb", "--prompt", "2048", "--gen", "128", "--batch", "1,8", "-f", "json"]
    assert main(argv) == 0
    one, eight = json.loads(capsys.readouterr().out)["runs"]
    assert (one["batch"], eight["batch"]) == (1, 8)
    assert one["max_batch"] == 52  # worked out in tests/test_llm_run.py
    assert one["memory"]["kv_bytes"] * 8 == eight["memory"]["kv_bytes"]
    assert one["prefill"]["macs"] == 14_362_501_709_824  # as in tests/test_llm_run.py
    # a larger batch reads the weights once for more tokens: more tokens per second, a longer step
    assert eight["tokens_per_second"] > one["tokens_per_second"] and eight["tpot_seconds"] > one["tpot_seconds"]


def test_cli_llm_quantization_options(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["llm", "llama-2-7b", "--hw", "h100-sxm", "--prompt", "128", "--gen", "2", "-f", "json"]
    assert main([*base, "--weight-bits", "4", "--weight-group", "row"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert (run["weight_bits"], run["weight_group"]) == (4, -1)
    # 6,738,415,616 weights at half a byte, a 2-byte scale per row: rows 2 x 32,000 (embedding, LM head)
    # + 32 layers x (4 x 4096 + 2 x 11008 + 4096) = 1,423,872 rows -> 2,847,744 bytes
    assert run["memory"]["weight_bytes"] == 6_738_415_616 // 2 + 2_847_744
    assert main([*base, "--precision", "int8", "--weight-group", "none"]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["precision"] == "int8" and run["weight_bits"] == 8 and run["weight_group"] is None
    assert run["memory"]["weight_bytes"] == 6_738_415_616  # W8A8: a byte a weight
    assert main([*base, "--weight-group", "0"]) == 2
    assert "give a group size" in capsys.readouterr().err


def test_rooflens_llm_is_the_function() -> None:
    import rooflens
    import rooflens.llm.configs  # importing a submodule must not rebind the name

    assert rooflens.llm is llm


def test_cli_llm_list_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llm", "--list", "-f", "json"]) == 0
    ids = [c["id"] for c in json.loads(capsys.readouterr().out)["configs"]]
    assert "llama-2-7b" in ids and "mixtral-8x7b" in ids
    assert main(["llm", "llama-2-7b"]) == 2
    assert "--hw a100-80gb" in capsys.readouterr().err
    assert main(["llm", "--hw", "a100-80gb"]) == 2
    assert "say which model" in capsys.readouterr().err


def test_llm_table_golden(golden: Callable[[str, str], None]) -> None:
    config = transformers.LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, vocab_size=1000)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float16)
    runs = [llm(model.eval(), hardware="a100-80gb", prompt=64, gen=8, batch=b, name="tiny-llama") for b in (1, 4)]
    golden("llm_tiny.txt", RENDERERS["table"](llm_document(runs), 140))


def test_cli_llm_plots(capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    target = tmp_path / "llm.png"
    assert main(["llm", "gpt2", "--hw", "a100-80gb", "--prompt", "64", "--gen", "4", "--batch", "1,8",
                 "--plot", str(target)]) == 0
    for path in (target, tmp_path / "llm-prefill.png", tmp_path / "llm-decode.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert f"wrote {target}" in capsys.readouterr().err


def test_cli_llm_module_tables_of_both_phases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llm", "gpt2", "--hw", "a100-80gb", "--prompt", "32", "--gen", "2", "--depth", "1",
                 "-f", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "Prefill (batch 1)" in out and "Decode step at 32 (batch 1)" in out and "lm_head" in out
