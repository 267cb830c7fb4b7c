"""Whole models against published figures: AlexNet (thop) and torchvision's own `_ops` metadata."""

from __future__ import annotations

import pytest
from torch import nn

import rooflens

torchvision = pytest.importorskip("torchvision")
from torchvision import models

from rooflens.zoo import load_model


def classic_alexnet() -> nn.Module:
    """The AlexNet of the complexity-analysis literature (one tower, 96-192-384-256-256), convs without bias."""
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 192, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(),
        nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    )


def test_classic_alexnet_thop_figures():
    r = rooflens.analyze(classic_alexnet().eval(), input_size=(1, 3, 224, 224))
    # weights: 96*3*121 + 192*96*25 + 384*192*9 + 256*384*9 + 256*256*9 = 3,745,824 conv
    #        + (9216+1)*4096 + (4096+1)*4096 + (4096+1)*1000 = 57,519,080 linear -> 61,264,904
    assert r.params.total == 61_264_904
    # conv MACs (output HxW 55, 27, 13, 13, 13):
    #   96*55*55*3*121 = 105,415,200   192*27*27*96*25 = 335,923,200   384*13*13*192*9 = 112,140,288
    #   256*13*13*384*9 = 149,520,384  256*13*13*256*9 = 99,680,256   -> 802,679,328
    # linear MACs: 9216*4096 + 4096*4096 + 4096*1000 = 58,621,952 -> total 861,301,280 (thop's figure)
    assert r.total().macs == 861_301_280
    assert r.unsupported_ops() == {}


def _classification_models() -> list[str]:
    return models.list_models(module=models)


def _published(name: str) -> tuple[float, int]:
    weights = models.get_model_weights(name).DEFAULT
    return weights.meta["_ops"], weights.transforms().crop_size[0]


@pytest.mark.parametrize("name", _classification_models())
def test_torchvision_classification_matches_published_ops(name: str) -> None:
    gmacs, crop = _published(name)
    # built on the meta device (no weights, no memory: the large ones stay fast); vit_h_14 at image_size 518
    loaded = load_model(f"torchvision:{name}")
    model = loaded.model
    assert all(p.device.type == "meta" for p in model.parameters())
    assert not model.training
    r = rooflens.analyze(model, input_size=(1, 3, crop, crop))
    assert r.params.total == sum(p.numel() for p in model.parameters())
    assert r.unsupported_ops() == {}
    # published figures are GMACs of conv + matmul rounded to 3 decimals: allow 0.5 % or that rounding
    tolerance = max(0.005 * gmacs, 0.0005)
    assert abs(r.total().macs / 1e9 - gmacs) <= tolerance, (r.total().macs / 1e9, gmacs)


def test_there_are_80_classification_models():
    assert len(_classification_models()) == 80
