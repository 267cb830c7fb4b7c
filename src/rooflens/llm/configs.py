"""Model sources for LLM inference: a table of popular decoder configs and the builder of meta models.

:data:`CONFIGS` holds the numbers of each model's published ``config.json`` on the Hugging Face Hub,
written out by hand with the file named as the source (docs/llm_models.md lists them). Only what
``transformers`` needs to build the same modules is kept: the architecture and its shape, the attention
layout (GQA/MQA, sliding window, soft-capping), RoPE and its scaling, tied embeddings and the published
dtype; token ids, dropout and initialisation ranges change no cost and are left out.

:func:`load_config` turns a source (a table id or alias, a ``config.json`` path or a folder holding one,
a ``transformers`` config, ``hf:org/name`` from the local Hugging Face cache) into a config;
:func:`build_model` builds the causal LM from it with ``transformers``' own modelling code on the meta
device. ``transformers`` is an optional dependency (``pip install 'rooflens[llm]'``), imported when used.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from rooflens.errors import InputError

INSTALL_HINT = "pip install 'rooflens[llm]'"
SOURCE_HELP = "give a table id (rooflens.llm.CONFIGS), a config.json path or a folder holding one, or hf:org/name"
HF_PREFIX = "hf:"
DEFAULT_DTYPE = torch.float16  # when the config publishes no 16-bit dtype (GPT-2: none; Gemma-2-9B: float32)


@dataclass(frozen=True)
class ModelEntry:
    """One model of the table: its ``config.json`` fields (``config``) and where they come from.

    ``source`` names the published file (``"org/name config.json"``); ``note`` says what could not be
    checked against a copy of that file, empty when every number was.
    """

    id: str
    name: str
    source: str
    config: Mapping[str, Any]
    aliases: tuple[str, ...] = ()
    note: str = ""
    hf_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hf_id", self.source.split()[0])
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))

    @property
    def architecture(self) -> str:
        """The ``transformers`` model type (``llama``, ``mixtral``, ...)."""
        return str(self.config["model_type"])


def _llama(hidden: int, ffn: int, layers: int, heads: int, kv_heads: int, vocab: int, **extra: Any) -> dict[str, Any]:
    """The shape fields every Llama-style config states (written out in full; the defaults may change)."""
    return {
        "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab, **extra,
    }


_LLAMA_31_ROPE = {  # Llama 3.1's long-context RoPE, as both 3.1 config.json files state it
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

# what the three Llama 2 configs share beyond their sizes
_LLAMA_2 = {"max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None,
            "tie_word_embeddings": False, "torch_dtype": "float16"}

_ENTRIES = (
    # Llama 2: MHA at 7B/13B, GQA (8 KV heads) at 70B; untied head; published in float16.
    ModelEntry(
        "llama-2-7b", "Llama-2-7B", "meta-llama/Llama-2-7b-hf config.json",
        {"model_type": "llama", **_llama(4096, 11008, 32, 32, 32, 32000), **_LLAMA_2},
        aliases=("meta-llama/Llama-2-7b-hf", "llama2-7b"),
    ),
    ModelEntry(
        "llama-2-13b", "Llama-2-13B", "meta-llama/Llama-2-13b-hf config.json",
        {"model_type": "llama", **_llama(5120, 13824, 40, 40, 40, 32000), **_LLAMA_2},
        aliases=("meta-llama/Llama-2-13b-hf", "llama2-13b"),
    ),
    ModelEntry(
        "llama-2-70b", "Llama-2-70B", "meta-llama/Llama-2-70b-hf config.json",
        {"model_type": "llama", **_llama(8192, 28672, 80, 64, 8, 32000), **_LLAMA_2},
        aliases=("meta-llama/Llama-2-70b-hf", "llama2-70b"),
    ),
    # Llama 3.1: GQA (8 KV heads), 128K vocabulary, llama3 RoPE scaling to 128K positions; bfloat16.
    ModelEntry(
        "llama-3.1-8b", "Llama-3.1-8B", "meta-llama/Llama-3.1-8B config.json",
        {"model_type": "llama", **_llama(4096, 14336, 32, 32, 8, 128256), "max_position_embeddings": 131072,
         "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": dict(_LLAMA_31_ROPE),
         "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
        aliases=("meta-llama/Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-8B", "llama3.1-8b"),
    ),
    ModelEntry(
        "llama-3.1-70b", "Llama-3.1-70B", "meta-llama/Llama-3.1-70B config.json",
        {"model_type": "llama", **_llama(8192, 28672, 80, 64, 8, 128256), "max_position_embeddings": 131072,
         "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": dict(_LLAMA_31_ROPE),
         "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
        aliases=("meta-llama/Llama-3.1-70B", "meta-llama/Meta-Llama-3.1-70B", "llama3.1-70b"),
        note="rms_norm_eps and torch_dtype: not seen in a copy of this file, taken as the 8B's (the shape, "
             "rope_theta and the RoPE scaling were checked against copies)",
    ),
    # Mistral 7B v0.1: Llama block with GQA and a 4096-token sliding window on every layer.
    ModelEntry(
        "mistral-7b", "Mistral-7B-v0.1", "mistralai/Mistral-7B-v0.1 config.json",
        {"model_type": "mistral", **_llama(4096, 14336, 32, 32, 8, 32000), "max_position_embeddings": 32768,
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
         "torch_dtype": "bfloat16"},
        aliases=("mistralai/Mistral-7B-v0.1", "mistral-7b-v0.1"),
    ),
    # Mixtral 8x7B: Mistral attention (no sliding window) with 8 experts, top-2 routing, in every layer.
    ModelEntry(
        "mixtral-8x7b", "Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-v0.1 config.json",
        {"model_type": "mixtral", **_llama(4096, 14336, 32, 32, 8, 32000), "max_position_embeddings": 32768,
         "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "sliding_window": None, "num_local_experts": 8,
         "num_experts_per_tok": 2, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
        aliases=("mistralai/Mixtral-8x7B-v0.1", "mixtral-8x7b-v0.1"),
    ),
    # Qwen2.5 7B: GQA (4 KV heads of 28) with q/k/v biases; sliding window configured but switched off.
    ModelEntry(
        "qwen2.5-7b", "Qwen2.5-7B", "Qwen/Qwen2.5-7B config.json",
        {"model_type": "qwen2", **_llama(3584, 18944, 28, 28, 4, 152064), "max_position_embeddings": 131072,
         "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": 131072,
         "max_window_layers": 28, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
        aliases=("Qwen/Qwen2.5-7B", "qwen2.5-7b-base"),
    ),
    # Gemma 2 9B: head_dim 256 (16 x 256 = 4096 != 3584), sliding window on every other layer,
    # logit soft-capping, four norms per layer, tied embeddings (the default; config.json does not say).
    ModelEntry(
        "gemma-2-9b", "Gemma-2-9B", "google/gemma-2-9b config.json",
        {"model_type": "gemma2", **_llama(3584, 14336, 42, 16, 8, 256000), "head_dim": 256,
         "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
         "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256, "sliding_window": 4096,
         "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "tie_word_embeddings": True,
         "torch_dtype": "float32"},
        aliases=("google/gemma-2-9b", "gemma2-9b"),
        note="torch_dtype float32: as recalled for the base model's file, not seen in a copy (the "
             "instruction-tuned google/gemma-2-9b-it publishes bfloat16); the other numbers were checked "
             "against copies of the -it file, which has the same architecture",
    ),
    # Phi-3-mini 4K: MHA with fused qkv_proj and gate_up_proj; sliding window 2047.
    ModelEntry(
        "phi-3-mini", "Phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-4k-instruct config.json",
        {"model_type": "phi3", **_llama(3072, 8192, 32, 32, 32, 32064), "max_position_embeddings": 4096,
         "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
         "rope_scaling": None, "sliding_window": 2047, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
        aliases=("microsoft/Phi-3-mini-4k-instruct", "phi-3-mini-4k", "phi-3-mini-4k-instruct"),
    ),
    # GPT-2 (124M): learned positions, LayerNorm and biases everywhere, tied head; no dtype published.
    ModelEntry(
        "gpt2", "GPT-2 (124M)", "openai-community/gpt2 config.json",
        {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024,
         "vocab_size": 50257, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
         "tie_word_embeddings": True},
        aliases=("openai-community/gpt2", "gpt-2", "gpt2-small"),
        note="activation_function and layer_norm_epsilon: not seen in a copy of this file (both are "
             "GPT2Config's defaults; the shape numbers were checked)",
    ),
    # OPT 6.7B: learned positions (offset 2), LayerNorm, biases, ReLU MLP, tied head.
    ModelEntry(
        "opt-6.7b", "OPT-6.7B", "facebook/opt-6.7b config.json",
        {"model_type": "opt", "hidden_size": 4096, "ffn_dim": 16384, "num_hidden_layers": 32,
         "num_attention_heads": 32, "vocab_size": 50272, "max_position_embeddings": 2048,
         "word_embed_proj_dim": 4096, "do_layer_norm_before": True, "activation_function": "relu",
         "enable_bias": True, "tie_word_embeddings": True, "torch_dtype": "float16"},
        aliases=("facebook/opt-6.7b", "opt-6b7"),
        note="torch_dtype float16 and activation relu: not seen in a copy of this file (the shape numbers were)",
    ),
    # Falcon 7B: multi-query attention (one KV head), parallel attention/MLP with one LayerNorm, no biases.
    ModelEntry(
        "falcon-7b", "Falcon-7B", "tiiuae/falcon-7b config.json",
        {"model_type": "falcon", "hidden_size": 4544, "num_hidden_layers": 32, "num_attention_heads": 71,
         "vocab_size": 65024, "multi_query": True, "parallel_attn": True, "new_decoder_architecture": False,
         "alibi": False, "bias": False, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
         "torch_dtype": "bfloat16"},
        aliases=("tiiuae/falcon-7b",),
        note="alibi false: not seen in a copy of this file (FalconConfig's default; rotary positions)",
    ),
)

CONFIGS: Mapping[str, ModelEntry] = MappingProxyType({entry.id: entry for entry in _ENTRIES})
"""The shipped table, by short id (``"llama-2-7b"``); :func:`entry` also resolves the aliases."""

_BY_NAME: Mapping[str, ModelEntry] = MappingProxyType({
    name.lower(): entry for entry in _ENTRIES for name in (entry.id, *entry.aliases)
})


def entry(name: str) -> ModelEntry:
    """The table entry of an id or alias (case-insensitive), or :class:`InputError` with close matches."""
    found = _BY_NAME.get(name.strip().lower())
    if found is None:
        raise InputError(f"unknown model {name!r}{_suggest(name)}; {SOURCE_HELP}")
    return found


def load_config(source: object) -> Any:
    """The ``transformers`` config (a ``PretrainedConfig``) a model source names.

    ``source``: a table id or alias (``"llama-2-7b"``, ``"meta-llama/Llama-2-7b-hf"``), a path to a
    ``config.json`` or to a folder holding one, a ``transformers`` config object, a ``transformers``
    model (its config), or ``"hf:org/name"`` (``AutoConfig`` from the local Hugging Face cache only:
    nothing is downloaded). The result is always a new object: changing it changes nothing given.
    Raises :class:`InputError` naming the model, file or cache entry when the source does not resolve.
    """
    if isinstance(source, torch.nn.Module):
        config = getattr(source, "config", None)
        if config is None or not _is_config(config):
            raise InputError(f"{type(source).__name__} has no transformers config (.config); {SOURCE_HELP}")
        return copy.deepcopy(config)
    if isinstance(source, os.PathLike):
        return _from_path(Path(source), str(source))
    if not isinstance(source, str):
        if _is_config(source):
            return copy.deepcopy(source)
        raise InputError(f"a model source is a string, a path or a transformers config, not "
                         f"{type(source).__name__}; {SOURCE_HELP}")
    text = source.strip()
    if not text:
        raise InputError(f"empty model source; {SOURCE_HELP}")
    if text.lower().startswith(HF_PREFIX):
        return _from_hub_cache(text[len(HF_PREFIX):].strip())
    known = _BY_NAME.get(text.lower())
    if known is not None:
        config = _from_dict(dict(known.config), f"{known.id} ({known.source})")
        config.name_or_path = known.hf_id
        return config
    path = Path(text).expanduser()
    if path.exists():
        return _from_path(path, text)
    if text.endswith(".json") or os.sep in text or text.startswith("."):
        raise InputError(f"no file or folder {text!r}; {SOURCE_HELP}")
    raise InputError(f"unknown model {text!r}{_suggest(text)}; {SOURCE_HELP}")


def build_model(
    config_or_source: object,
    *,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype | str | None = None,
    layers: int | None = None,
) -> torch.nn.Module:
    """The causal LM of a model source, built by ``transformers`` on the meta device, in eval mode.

    ``config_or_source``: anything :func:`load_config` takes; an ``nn.Module`` is returned as it is.
    ``attn_implementation``: ``"sdpa"`` (the default: fused attention, no score matrix in memory, as a
    serving engine runs it), ``"eager"`` (the score matrix materialised) or another ``transformers``
    implementation. An architecture without an SDPA path (Gemma-2: logit soft-capping) is built with
    ``"eager"`` when ``"sdpa"`` is asked for; :func:`attention_implementation` says which one was used.
    ``dtype``: the parameters' dtype (``torch.float16``, ``"bf16"``, ...); by default the config's published
    dtype when it is float16 or bfloat16, else float16. ``layers``: build this many decoder layers instead
    of the config's (for quick tests and sweeps; per-layer patterns such as Gemma-2's alternating sliding
    window are kept).
    """
    if isinstance(config_or_source, torch.nn.Module):
        return config_or_source
    transformers = _transformers()
    config = load_config(config_or_source)
    if layers is not None:
        _set_layers(config, layers)
    param_dtype = _resolve_dtype(dtype, config)
    if not isinstance(attn_implementation, str) or not attn_implementation:
        raise InputError(f"attn_implementation must be a name such as 'sdpa' or 'eager', not {attn_implementation!r}")
    attn = attn_implementation
    if attn == "sdpa" and not _supports_sdpa(transformers, config):
        attn = "eager"
    try:
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=param_dtype)
    except Exception as e:
        raise InputError(
            f"transformers {transformers.__version__} could not build {_label(config)} "
            f"(model_type {getattr(config, 'model_type', '?')!r}, attn_implementation {attn!r}): "
            f"{type(e).__name__}: {e}"
        ) from e
    model.eval()
    result: torch.nn.Module = model
    return result


def attention_implementation(model: torch.nn.Module) -> str | None:
    """The attention implementation a ``transformers`` model runs (``"sdpa"``, ``"eager"``, ...), else None."""
    config = getattr(model, "config", None)
    value = getattr(config, "_attn_implementation", None)
    return value if isinstance(value, str) else None


# ---- helpers ----------------------------------------------------------------------------------------


def _transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as e:
        raise InputError(f"LLM model sources need transformers, which is not installed ({e}); {INSTALL_HINT}") from None


def _is_config(obj: object) -> bool:
    """Whether ``obj`` is a ``transformers`` config (no config exists unless transformers was imported)."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(obj, transformers.PretrainedConfig)


def _from_dict(data: dict[str, Any], origin: str) -> Any:
    transformers = _transformers()
    model_type = data.pop("model_type", None)
    if not isinstance(model_type, str) or not model_type:
        raise InputError(f"{origin} has no model_type: it is not a transformers config.json")
    mapping = transformers.CONFIG_MAPPING
    if model_type not in mapping:
        close = difflib.get_close_matches(model_type, list(mapping.keys()), n=3, cutoff=0.6)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise InputError(f"{origin}: model_type {model_type!r} is unknown to the installed transformers "
                         f"{transformers.__version__}{hint}; a newer transformers may know it")
    try:
        return mapping[model_type].from_dict(data)
    except Exception as e:
        raise InputError(f"{origin}: transformers {transformers.__version__} rejects this {model_type} config: "
                         f"{type(e).__name__}: {e}") from e


def _from_path(path: Path, shown: str) -> Any:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{shown!r} is a folder without a config.json; {SOURCE_HELP}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {file}: {e}") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{file} holds a JSON {type(data).__name__}, not an object: it is not a config.json")
    config = _from_dict(data, str(file))
    if not getattr(config, "name_or_path", ""):
        config.name_or_path = str(file.parent if file.name == "config.json" else file)
    return config


def _from_hub_cache(name: str) -> Any:
    if not name or name.count("/") > 1:
        raise InputError(f"'hf:' names a Hugging Face repository as hf:org/name, not {name!r}")
    transformers = _transformers()
    try:
        return transformers.AutoConfig.from_pretrained(name, local_files_only=True)
    except OSError as e:
        raise InputError(
            f"hf:{name}: its config.json is not in the local Hugging Face cache and rooflens does not download "
            f"(fetch it first, e.g. `hf download {name} config.json`, or give the file's path) [{e}]"
        ) from None
    except (ValueError, KeyError) as e:
        raise InputError(f"hf:{name}: transformers {transformers.__version__} cannot read its config: {e}") from e


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name.strip().lower(), list(_BY_NAME), n=4, cutoff=0.5)
    ids = []
    for match in close:  # show ids, once each
        entry_id = _BY_NAME[match].id
        if entry_id not in ids:
            ids.append(entry_id)
    return f"; did you mean {', '.join(ids)}?" if ids else f" (known: {', '.join(CONFIGS)})"


def _label(config: Any) -> str:
    name = getattr(config, "name_or_path", "") or ""
    return repr(name) if name else "the model"


def _set_layers(config: Any, layers: int) -> None:
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise InputError(f"layers must be a positive whole number, not {layers!r}")
    if not hasattr(config, "num_hidden_layers"):
        raise InputError(f"{_label(config)}: its config has no num_hidden_layers to override")
    config.num_hidden_layers = layers
    pattern = getattr(config, "layer_types", None)  # per-layer attention kinds (Gemma-2, Qwen2, ...)
    if isinstance(pattern, list) and pattern and len(pattern) != layers:
        config.layer_types = [pattern[i % len(pattern)] for i in range(layers)]


_DTYPES: Mapping[str, torch.dtype] = MappingProxyType({
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
})


def _resolve_dtype(dtype: torch.dtype | str | None, config: Any) -> torch.dtype:
    if dtype is None:
        published = getattr(config, "dtype", None)
        if isinstance(published, str):
            published = _DTYPES.get(published.lower())
        return published if published in (torch.float16, torch.bfloat16) else DEFAULT_DTYPE
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise InputError(f"dtype must be a floating-point dtype, not {dtype}")
        return dtype
    if isinstance(dtype, str) and dtype.strip().lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.strip().lower().removeprefix("torch.")]
    raise InputError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)} or a torch.dtype")


def _supports_sdpa(transformers: Any, config: Any) -> bool:
    model_class = transformers.MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    return model_class is None or bool(getattr(model_class, "_supports_sdpa", True))
