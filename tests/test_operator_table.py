"""docs/operators.md is the table generated from the formula registry, and the registry is sound."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch

from rooflens.formulas import REGISTRY
from rooflens.formulas.table import REGENERATE, markdown_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "operators.md"


def test_docs_operators_md_is_up_to_date() -> None:
    expected = markdown_table()
    assert DOC.exists(), f"docs/operators.md is missing; generate it with: {REGENERATE}"
    current = DOC.read_text(encoding="utf-8")
    if current != expected:
        import difflib

        diff = "".join(difflib.unified_diff(
            current.splitlines(keepends=True), expected.splitlines(keepends=True),
            fromfile="docs/operators.md", tofile="generated", n=1,
        ))
        pytest.fail(f"docs/operators.md is out of date with the formula registry; regenerate it with:\n"
                    f"    {REGENERATE}\n(from the repository root)\n{diff[:4000]}")


def test_module_entry_point_prints_the_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # as ``python -m rooflens.formulas.table`` runs it (a fresh module, not the one imported above)
    monkeypatch.delitem(sys.modules, "rooflens.formulas.table")
    runpy.run_module("rooflens.formulas.table", run_name="__main__")
    assert capsys.readouterr().out == markdown_table()


def test_every_entry_is_listed_once_under_its_family() -> None:
    text = markdown_table()
    sections = text.split("\n## ")[1:]
    by_family = {s.split("\n", 1)[0]: s for s in sections}
    for entry in REGISTRY:
        assert entry.family in by_family, entry.family
        assert by_family[entry.family].count(f"`{entry.op}`") == 1, entry.op
        assert entry.doc, f"{entry.op} has no one-line rule for the table"
    for family in ("pointwise", "norm", "pool", "reduction", "memory"):
        assert family in by_family


def test_pipes_in_rules_do_not_break_the_table() -> None:
    for line in markdown_table().splitlines():
        if line.startswith("| `"):
            # operator(s), FLOPs rule, bytes rule: 4 unescaped pipes
            assert line.replace("\\|", "").count("|") == 4, line


def test_every_registered_operator_exists_in_torch() -> None:
    missing = []
    for entry in REGISTRY:
        namespace, name = entry.op.split(".", 1)
        if namespace == "torchvision":
            pytest.importorskip("torchvision")
        try:
            getattr(getattr(torch.ops, namespace), name)
        except (AttributeError, RuntimeError):
            missing.append(entry.op)
    assert missing == [], f"registered under a name torch does not have: {missing}"


def test_operators_named_in_the_conventions_are_covered() -> None:
    # a sample of what the conventions promise, one or more per family
    for op in [
        "aten.add", "aten.add_", "aten.rsub", "aten.where", "aten.addcmul", "aten.clamp", "aten.gelu", "aten.silu",
        "aten.hardswish", "aten.mish", "aten.glu", "aten.native_dropout", "aten._softmax", "aten._log_softmax",
        "aten._native_batch_norm_legit_no_training", "aten._native_batch_norm_legit", "aten.native_batch_norm",
        "aten.native_layer_norm", "aten.native_group_norm", "aten.cudnn_batch_norm", "aten.miopen_batch_norm",
        "aten._batch_norm_with_update", "aten._batch_norm_no_update", "aten._fused_rms_norm",
        "aten.max_pool2d_with_indices", "aten.max_pool3d_with_indices", "aten.avg_pool2d", "aten.avg_pool3d",
        "aten._adaptive_avg_pool2d", "aten._adaptive_avg_pool3d", "aten.adaptive_max_pool2d",
        "aten.adaptive_max_pool1d", "aten.upsample_nearest2d", "aten._upsample_nearest_exact2d",
        "aten.upsample_bilinear2d", "aten.upsample_bicubic2d", "aten.grid_sampler_2d", "aten.sum", "aten.mean",
        "aten.var_mean", "aten.linalg_vector_norm", "aten.topk", "aten.sort", "aten.cat", "aten.copy_",
        "aten._to_copy", "aten.fill_", "aten.zeros", "aten.arange", "aten.constant_pad_nd", "aten.index_put",
        "aten.embedding", "aten._embedding_bag", "aten.bernoulli_", "aten.nonzero",
    ]:
        assert op in REGISTRY, op
