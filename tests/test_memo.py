"""The output memo (rooflens.capture.memo) changes nothing but the time an analysis takes.

The reference for every comparison is the same analysis with the memo switched off (every operator goes
through ``FakeTensorMode``): records, their module paths, shapes, dtypes, kinds and costs, the output
shapes and the diagnostics must be identical, on the first (cold) and a later (warm) analysis.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torchvision import models

import rooflens
from rooflens.capture import memo

from _helpers import Fn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loop_models import mamba_loop

transformers = pytest.importorskip("transformers")


def _summary(report: rooflens.Report) -> Any:
    return [r.as_dict() for r in report.records], report.executed, report.diagnostics, dict(report.modules)


def _compare(monkeypatch: pytest.MonkeyPatch, make: Any, inputs: Any, **options: Any) -> rooflens.Report:
    def build() -> nn.Module:
        torch.manual_seed(0)  # the same weights each time (the count of non-zero parameters is compared too)
        return make()  # type: ignore[no-any-return]

    memo._OUTPUTS.clear()
    cold = rooflens.analyze(build(), inputs, **options)
    warm = rooflens.analyze(build(), inputs, **options)
    with monkeypatch.context() as m:
        m.setattr(memo, "key", lambda *_: None)
        plain = rooflens.analyze(build(), inputs, **options)
    assert _summary(cold) == _summary(plain)
    assert _summary(warm) == _summary(plain)
    assert cold.records, "nothing was recorded"
    return plain


def _meta(name: str) -> Any:
    def build() -> nn.Module:
        with torch.device("meta"):
            return models.get_model(name, weights=None).eval()

    return build


# Families with different operator mixes: residual CNN, depthwise + SiLU + squeeze-excite, channel shuffle,
# layer-norm CNN, windowed attention (rolls, pads, masks), plain ViT (SDPA), inception's branches
VISION = ["resnet50", "efficientnet_b0", "shufflenet_v2_x1_0", "convnext_tiny", "swin_t", "vit_b_16", "googlenet"]


@pytest.mark.filterwarnings("ignore:The default weight initialization of GoogleNet:FutureWarning")
@pytest.mark.parametrize("name", VISION)
def test_vision_models_count_the_same_with_the_memo(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _compare(monkeypatch, _meta(name), torch.empty(1, 3, 224, 224, device="meta"))


def test_backward_counts_the_same_with_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    report = _compare(monkeypatch, lambda: models.resnet18(), torch.randn(2, 3, 64, 64), backward=True)
    assert any(r.phase == "backward" for r in report.records)


def test_a_python_loop_model_counts_the_same_with_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    _compare(monkeypatch, lambda: mamba_loop(layers=2, d_model=32).eval(), torch.randint(0, 256, (1, 24)))


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM])
def test_recurrent_layers_count_the_same_with_the_memo(monkeypatch: pytest.MonkeyPatch, cls: Any) -> None:
    _compare(monkeypatch, lambda: cls(16, 32, num_layers=2), torch.randn(10, 2, 16))


def test_a_decoder_with_a_mask_counts_the_same_with_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    def build() -> nn.Module:
        config = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                          vocab_size=100, intermediate_size=128)
        with torch.device("meta"):
            return transformers.LlamaForCausalLM(config).eval()

    text = {"input_ids": torch.zeros(2, 16, dtype=torch.long, device="meta"),
            "attention_mask": torch.ones(2, 16, dtype=torch.long, device="meta")}
    _compare(monkeypatch, build, text)


def _in_place_and_out(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y.add_(1)  # in-place: the memo returns the argument itself
    out = torch.empty(0)
    torch.mul(x, 2, out=out)  # out= resizes its destination: never answered from the memo
    parts = y.split(3, dim=1)  # a list of views
    z = torch.cat([parts[0], parts[-1].t().t()], dim=1)
    z.resize_(4, 2)  # metadata mutation
    return z.sum() + out.sum() + x.view(torch.int32).float().sum()  # a view with another dtype


def test_in_place_out_views_and_resizes_count_the_same_with_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    report = _compare(monkeypatch, lambda: Fn(_in_place_and_out), torch.randn(4, 7))
    assert any(r.op == "aten.mul" for r in report.records)


def test_a_call_is_memoised_after_it_ran_and_answered_with_its_layouts() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode()
    with mode:
        x = torch.empty(2, 3)
    add = torch.ops.aten.add.Tensor
    k = memo.key(add, (x, x), {}, mode)
    assert k is not None
    memo._OUTPUTS.pop(k, None)
    assert memo.lookup(k, add, (x, x), {}, mode) is None
    with mode:
        out = add(x, x)
    memo.store(k, add, (x, x), {}, out, mode)
    again = memo.lookup(k, add, (x, x), {}, mode)
    assert again is not out and again.shape == (2, 3) and again.stride() == (3, 1) and again.device == x.device
    # a view comes back as a view of the argument it was taken from
    t = torch.ops.aten.t.default
    kt = memo.key(t, (x,), {}, mode)
    assert kt is not None
    with mode:
        first = t(x)
    memo.store(kt, t, (x,), {}, first, mode)
    view = memo.lookup(kt, t, (x,), {}, mode)
    assert view.shape == (3, 2) and view.stride() == (1, 3)
    assert StorageWeakRef(view.untyped_storage()) == StorageWeakRef(x.untyped_storage())
    # real tensors, and fake tensors of another mode, are never keyed
    assert memo.key(add, (torch.ones(2), torch.ones(2)), {}, mode) is None
    with FakeTensorMode():
        y = torch.empty(2)
    assert memo.key(add, (y, y), {}, mode) is None
    # operators whose output shape depends on values are never keyed
    assert memo.key(torch.ops.aten.nonzero.default, (x,), {}, mode) is None
