"""LLM inference with rooflens.

Model sources (:mod:`rooflens.llm.configs`): a table of popular decoder configs (:data:`CONFIGS`), the
resolution of a source into a ``transformers`` config (:func:`load_config`) and the causal LM built from
it on the meta device (:func:`build_model`). The phases (:mod:`rooflens.llm.run`): :func:`llm` counts the
prefill and the decode steps of a generation and times them on a device (:class:`LLMRun`).

``rooflens.llm`` at the top level is the function :func:`llm` (this package is reached by its submodules'
full names); every submodule is imported here, so none rebinds that name later.
"""

from rooflens.llm.configs import (
    CONFIGS,
    ModelEntry,
    attention_implementation,
    build_model,
    entry,
    load_config,
)
from rooflens.llm.run import LLMMemory, LLMRun, llm

__all__ = [
    "CONFIGS",
    "LLMMemory",
    "LLMRun",
    "ModelEntry",
    "attention_implementation",
    "build_model",
    "entry",
    "llm",
    "load_config",
]
