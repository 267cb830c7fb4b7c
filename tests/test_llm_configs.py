"""The LLM model sources: the shipped config table, load_config and build_model (on meta, no downloads).

Parameter counts are derived by hand from each architecture (which projections, biases and norms it has)
and compared exactly with the model ``transformers`` builds from the table's config.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from rooflens.errors import InputError
from rooflens.llm import CONFIGS, attention_implementation, build_model, entry, load_config

transformers = pytest.importorskip("transformers")  # the rooflens[llm] extra (a dev dependency)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # meta tensors have numel; tied weights once


# ---- parameter counts, derived by hand ----------------------------------------------------------------


def test_llama_2_7b_parameters_exact() -> None:
    # embeddings          32000 x 4096                                  =   131,072,000
    # per layer: q,k,v,o  4 x 4096^2                                    =    67,108,864
    #            MLP      3 x 4096 x 11008 (gate, up, down)             =   135,266,304
    #            norms    2 x 4096 (RMSNorm weights, no bias)           =         8,192
    #            layer total                                            =   202,383,360
    # 32 layers                                                         = 6,476,267,520
    # final norm          4096                                          =         4,096
    # LM head             32000 x 4096 (not tied)                       =   131,072,000
    # total = 131,072,000 + 6,476,267,520 + 4,096 + 131,072,000         = 6,738,415,616
    per_layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    assert 32000 * 4096 + 32 * per_layer + 4096 + 32000 * 4096 == 6_738_415_616
    assert n_params(build_model("llama-2-7b")) == 6_738_415_616


def _llama_like(c: Mapping[str, Any], *, qkv_bias: bool = False) -> int:
    """Llama, Mistral, Qwen2: embeddings, per layer q/k/v/o + SwiGLU MLP + 2 RMSNorms, final norm, head."""
    d, f, L, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    h, kv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim", d // h)
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d  # GQA: k and v have kv x head_dim outputs
    if qkv_bias:
        attn += h * hd + 2 * kv * hd  # Qwen2: biases on q, k and v only
    layer = attn + 3 * d * f + 2 * d
    head = 0 if c["tie_word_embeddings"] else v * d
    return v * d + L * layer + d + head


def _mixtral(c: Mapping[str, Any]) -> int:
    d, f, L, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    h, kv, e = c["num_attention_heads"], c["num_key_value_heads"], c["num_local_experts"]
    hd = d // h
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    moe = e * 3 * d * f + d * e  # E SwiGLU experts + the router (d -> E, no bias)
    return v * d + L * (attn + moe + 2 * d) + d + v * d


def _gemma2(c: Mapping[str, Any]) -> int:
    d, f, L, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    h, kv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]  # 16 x 256 = 4096 != 3584
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    layer = attn + 3 * d * f + 4 * d  # four RMSNorms: input, post-attention, pre- and post-feedforward
    return v * d + L * layer + d  # tied embeddings: the head is the embedding, counted once


def _phi3(c: Mapping[str, Any]) -> int:
    d, f, L, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    h, kv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = d // h
    layer = d * (h * hd + 2 * kv * hd) + d * d + d * 2 * f + f * d + 2 * d  # fused qkv_proj, gate_up_proj
    return v * d + L * layer + d + v * d


def _gpt2(c: Mapping[str, Any]) -> int:
    d, L, v, p = c["n_embd"], c["n_layer"], c["vocab_size"], c["n_positions"]
    layer = (
        2 * d  # ln_1 (weight + bias)
        + d * 3 * d + 3 * d  # c_attn: q, k, v in one Conv1D with bias
        + d * d + d  # attention c_proj
        + 2 * d  # ln_2
        + d * 4 * d + 4 * d  # mlp c_fc
        + 4 * d * d + d  # mlp c_proj
    )
    return v * d + p * d + L * layer + 2 * d  # wte + wpe + layers + ln_f; head tied to wte


def _opt(c: Mapping[str, Any]) -> int:
    d, f, L, v, p = (c["hidden_size"], c["ffn_dim"], c["num_hidden_layers"], c["vocab_size"],
                     c["max_position_embeddings"])
    layer = 4 * (d * d + d) + 2 * d + d * f + f + f * d + d + 2 * d  # q,k,v,out (+bias), LN, fc1, fc2, LN
    return v * d + (p + 2) * d + L * layer + 2 * d  # learned positions have an offset of 2; final LN; tied head


def _falcon(c: Mapping[str, Any]) -> int:
    d, L, v, h = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"], c["num_attention_heads"]
    hd = d // h  # 64
    layer = d * (d + 2 * hd) + d * d + d * 4 * d + 4 * d * d + 2 * d  # MQA: one k and one v head; no biases
    return v * d + L * layer + 2 * d  # one LayerNorm per layer (parallel attention + MLP), ln_f; tied head


FORMULAS: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "llama-2-7b": _llama_like,
    "llama-2-13b": _llama_like,
    "llama-2-70b": _llama_like,
    "llama-3.1-8b": _llama_like,
    "llama-3.1-70b": _llama_like,
    "mistral-7b": _llama_like,
    "mixtral-8x7b": _mixtral,
    "qwen2.5-7b": lambda c: _llama_like(c, qkv_bias=True),
    "gemma-2-9b": _gemma2,
    "phi-3-mini": _phi3,
    "gpt2": _gpt2,
    "opt-6.7b": _opt,
    "falcon-7b": _falcon,
}

# What the model cards and the Hub's safetensors metadata print, and one unit of the last digit printed
# (some round, some truncate: Qwen2.5-7B's card says 7.61B for 7.6156B): this checks the table's
# numbers against the published size; the formulas check the modelling code.
PUBLISHED = {
    "llama-2-7b": (6.74e9, 0.01e9),
    "llama-2-13b": (13.0e9, 0.1e9),
    "llama-2-70b": (69.0e9, 0.1e9),
    "llama-3.1-8b": (8.03e9, 0.01e9),
    "llama-3.1-70b": (70.6e9, 0.1e9),
    "mistral-7b": (7.24e9, 0.01e9),
    "mixtral-8x7b": (46.7e9, 0.1e9),
    "qwen2.5-7b": (7.61e9, 0.01e9),
    "gemma-2-9b": (9.24e9, 0.01e9),
    "phi-3-mini": (3.82e9, 0.01e9),
    "gpt2": (124e6, 1e6),
    "opt-6.7b": (6.7e9, 0.1e9),
    "falcon-7b": (6.92e9, 0.01e9),
}


def test_every_table_entry_has_a_formula() -> None:
    assert set(FORMULAS) == set(CONFIGS) == set(PUBLISHED)


@pytest.mark.parametrize("model_id", list(CONFIGS))
def test_full_size_parameters_match_the_hand_formula(model_id: str) -> None:
    start = time.perf_counter()
    model = build_model(model_id)  # full size on meta: no memory
    built = time.perf_counter() - start
    count = n_params(model)
    assert count == FORMULAS[model_id](CONFIGS[model_id].config)
    published, tolerance = PUBLISHED[model_id]
    assert abs(count - published) <= tolerance, f"{model_id}: {count:,} vs published {published:,.0f}"
    assert all(p.device.type == "meta" for p in model.parameters())
    assert all(b.device.type == "meta" for b in model.buffers())
    assert built < 10, f"building {model_id} on meta took {built:.1f} s"


def test_gqa_and_mqa_projection_shapes() -> None:
    llama3 = build_model("llama-3.1-8b", layers=1)
    attn = llama3.model.layers[0].self_attn
    assert tuple(attn.q_proj.weight.shape) == (4096, 4096)
    assert tuple(attn.k_proj.weight.shape) == (8 * 128, 4096)  # 8 KV heads of 32: a quarter of q
    assert tuple(attn.v_proj.weight.shape) == (8 * 128, 4096)
    falcon = build_model("falcon-7b", layers=1)
    assert tuple(falcon.transformer.h[0].self_attention.query_key_value.weight.shape) == (4544 + 2 * 64, 4544)


# ---- every entry builds, quickly, in the right state --------------------------------------------------


def test_every_config_builds_with_two_layers() -> None:
    start = time.perf_counter()
    for model_id in CONFIGS:
        model = build_model(model_id, layers=2)
        assert not model.training
        assert model.config.num_hidden_layers == 2
        kinds = [type(m).__name__ for m in model.modules()]
        assert sum(k.endswith("DecoderLayer") or k == "GPT2Block" for k in kinds) == 2, model_id
        assert all(p.device.type == "meta" for p in model.parameters())
    assert time.perf_counter() - start < 20


def test_table_is_consistent_with_installed_transformers() -> None:
    names = [name.lower() for e in CONFIGS.values() for name in (e.id, *e.aliases)]
    assert len(names) == len(set(names)), "an alias names two entries"
    for model_id, e in CONFIGS.items():
        assert e.id == model_id
        assert e.source.endswith(" config.json") and "/" in e.hf_id
        assert e.architecture in transformers.CONFIG_MAPPING, f"{model_id}: {e.architecture} unknown"
        assert e.config.get("torch_dtype", "float16") in ("float16", "bfloat16", "float32")
    with pytest.raises(TypeError):
        CONFIGS["gpt2"].config["n_layer"] = 1  # type: ignore[index]


def test_default_dtype_is_the_published_half_precision() -> None:
    assert next(build_model("llama-2-7b", layers=1).parameters()).dtype == torch.float16
    assert next(build_model("llama-3.1-8b", layers=1).parameters()).dtype == torch.bfloat16
    assert next(build_model("gpt2", layers=1).parameters()).dtype == torch.float16  # none published
    assert next(build_model("gemma-2-9b", layers=1).parameters()).dtype == torch.float16  # float32 published
    assert next(build_model("gpt2", layers=1, dtype="bf16").parameters()).dtype == torch.bfloat16
    assert next(build_model("gpt2", layers=1, dtype=torch.float32).parameters()).dtype == torch.float32


def test_attention_implementation() -> None:
    assert attention_implementation(build_model("mistral-7b", layers=1)) == "sdpa"
    assert attention_implementation(build_model("mistral-7b", layers=1, attn_implementation="eager")) == "eager"
    # Gemma-2 has no SDPA path (logit soft-capping): asked for sdpa, it is built with eager
    assert attention_implementation(build_model("gemma-2-9b", layers=1)) == "eager"
    assert attention_implementation(torch.nn.Linear(2, 2)) is None


def test_layers_override_keeps_the_per_layer_pattern() -> None:
    model = build_model("gemma-2-9b", layers=3)
    assert model.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    assert len(build_model("gemma-2-9b", layers=45).config.layer_types) == 45
    gpt2 = build_model("gpt2", layers=3)
    assert gpt2.config.n_layer == 3 and len(gpt2.transformer.h) == 3


def test_module_is_returned_as_is() -> None:
    model = torch.nn.Linear(3, 3)
    assert build_model(model) is model


# ---- load_config: every kind of source ----------------------------------------------------------------


def test_ids_and_aliases_resolve_case_insensitively() -> None:
    a = load_config("llama-2-7b")
    b = load_config("META-LLAMA/Llama-2-7b-hf")
    assert a is not b
    assert a.to_dict() == b.to_dict()
    assert a.name_or_path == "meta-llama/Llama-2-7b-hf"
    assert entry("Mixtral-8x7B").id == "mixtral-8x7b"
    assert load_config(" gpt-2 ").n_layer == 12


def test_unknown_id_lists_close_matches() -> None:
    with pytest.raises(InputError, match=r"unknown model 'llama-2-8b'.*llama-2-7b"):
        load_config("llama-2-8b")
    with pytest.raises(InputError, match="did you mean.*mixtral-8x7b"):
        entry("mixtral-8x7")
    with pytest.raises(InputError, match="known: llama-2-7b"):
        load_config("zzzzzz")


def test_config_json_file_and_folder(tmp_path: Path) -> None:
    data = {"architectures": ["MistralForCausalLM"], **CONFIGS["mistral-7b"].config, "num_hidden_layers": 2}
    folder = tmp_path / "my-mistral"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(data), encoding="utf-8")
    for source in (folder / "config.json", str(folder / "config.json"), folder, str(folder)):
        config = load_config(source)
        assert type(config).__name__ == "MistralConfig"
        assert (config.num_key_value_heads, config.sliding_window, config.num_hidden_layers) == (8, 4096, 2)
        assert config.name_or_path == str(folder)
    model = build_model(folder)
    assert n_params(model) == _llama_like(data)
    assert next(model.parameters()).dtype == torch.bfloat16  # the file's torch_dtype


def test_bad_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json is not valid JSON"):
        load_config(bad)
    untyped = tmp_path / "untyped.json"
    untyped.write_text(json.dumps({"hidden_size": 64}), encoding="utf-8")
    with pytest.raises(InputError, match=r"untyped\.json has no model_type"):
        load_config(untyped)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InputError, match=r"list\.json holds a JSON list"):
        load_config(listed)
    alien = tmp_path / "alien.json"
    alien.write_text(json.dumps({"model_type": "llamma"}), encoding="utf-8")
    with pytest.raises(InputError, match=rf"alien\.json: model_type 'llamma' is unknown to the installed "
                                         rf"transformers {transformers.__version__} \(close: llama"):
        load_config(alien)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="folder without a config.json"):
        load_config(empty)
    with pytest.raises(InputError, match="no file or folder"):
        load_config(str(tmp_path / "missing" / "config.json"))


def test_transformers_config_is_copied_and_left_untouched() -> None:
    user = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                    num_attention_heads=4, vocab_size=100)
    before = user.to_dict()
    copied = load_config(user)
    assert copied is not user and copied.to_dict() == before
    model = build_model(user, layers=1, attn_implementation="eager", dtype="bf16")
    assert model.config is not user and model.config.num_hidden_layers == 1
    assert user.to_dict() == before  # not the layers, the dtype or the attention implementation
    assert load_config(model).to_dict() == model.config.to_dict()  # a transformers model gives its config
    with pytest.raises(InputError, match="has no transformers config"):
        load_config(torch.nn.Linear(2, 2))


def test_hf_source_reads_the_local_cache_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_from_pretrained(name: str, **kwargs: Any) -> Any:
        calls.append((name, kwargs))
        return transformers.GPT2Config(n_layer=2)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake_from_pretrained)
    config = load_config("hf:openai-community/gpt2")
    assert config.n_layer == 2
    assert calls == [("openai-community/gpt2", {"local_files_only": True})]


def test_hf_source_not_in_cache_says_so() -> None:
    with pytest.raises(InputError, match=r"hf:rooflens-tests/not-a-model: its config.json is not in the "
                                         r"local Hugging Face cache"):
        load_config("hf:rooflens-tests/not-a-model")
    with pytest.raises(InputError, match="hf:org/name"):
        load_config("hf:")


def test_build_failure_names_model_and_transformers_version(tmp_path: Path) -> None:
    vit = tmp_path / "vit"
    vit.mkdir()
    (vit / "config.json").write_text(json.dumps({"model_type": "vit"}), encoding="utf-8")  # no causal LM
    with pytest.raises(InputError, match=rf"transformers {transformers.__version__} could not build '.*vit'"):
        build_model(vit)


def test_bad_options() -> None:
    with pytest.raises(InputError, match="layers must be a positive whole number"):
        build_model("gpt2", layers=0)
    with pytest.raises(InputError, match="layers must be a positive whole number"):
        build_model("gpt2", layers=True)
    with pytest.raises(InputError, match="unknown dtype 'fp12'"):
        build_model("gpt2", dtype="fp12")
    with pytest.raises(InputError, match="floating-point"):
        build_model("gpt2", dtype=torch.int8)
    with pytest.raises(InputError, match="not int"):
        load_config(7)
    with pytest.raises(InputError, match="empty model source"):
        load_config("  ")


def test_missing_transformers_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    with pytest.raises(InputError, match=r"pip install 'rooflens\[llm\]'"):
        load_config("llama-2-7b")
    with pytest.raises(InputError, match=r"pip install 'rooflens\[llm\]'"):
        build_model("gpt2")
