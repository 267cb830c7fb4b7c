"""Parity: a torchvision classifier exported with torch.onnx.export gives the MACs rooflens.analyze gives for
the module itself (within 0.1 %; they are equal to the MAC in every case here), and the module tree of
the export reads like the torch one.

Small inputs keep the suite quick (64x64: every network here allows it); 20 classifiers of
``torchvision.models.list_models()`` and, beside them, the transformers (ViT, Swin, Swin V2, MaxViT) as
torchvision's own classes at small widths, so that attention, the windows' shape arithmetic
and the relative position tables are exercised in seconds. Most exports use the TorchScript exporter
(``dynamo=False``, ~0.4 s a model); one uses torch.export's (``dynamo=True``, ~3 s), whose node metadata
carries the module paths and classes. All ~80 classifiers at full size: ``bench/onnx_parity.py``.

Operator-level differences between the two graphs, none of which changes a MAC: the exporters fold each
batch norm into the convolution before it (torch: batch norm 2 FLOPs per element, no bias on the
convolution; ONNX: a bias add, 1 FLOP per output element), the attention's 1/sqrt(d) scaling is written as
a multiply of q and of k, layout changes that are views in torch are Transposes (copies) in ONNX, and
adaptive average pools become GlobalAveragePool or ReduceMean. So FLOPs and bytes differ by a few per
cent, and the tests compare MACs; docs/onnx.md lists these.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import rooflens
from rooflens.report.report import Report

TOLERANCE = 1e-3  # 0.1 %
SIDE = 64


def _small_vit() -> torch.nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
                             num_classes=10)


def _small_swin() -> torch.nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    # 64x64 -> 16x16 patches, windows of 4 shifted by 2, two stages: patch merging, masks, position tables
    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10)


def _small_swin_v2() -> torch.nn.Module:
    from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                           num_classes=10, block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)


def _small_maxvit() -> torch.nn.Module:
    from torchvision.models.maxvit import MaxVit

    return MaxVit(input_size=(64, 64), stem_channels=16, partition_size=2, block_channels=[16, 32],
                  block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=10)


# name -> how to build it (torchvision.models.get_model(name, weights=None) unless given)
MODELS: dict[str, Callable[[], torch.nn.Module] | None] = {
    "resnet18": None, "resnext50_32x4d": None, "mobilenet_v2": None, "mobilenet_v3_small": None,
    "mobilenet_v3_large": None, "mnasnet0_5": None, "mnasnet0_75": None, "mnasnet1_0": None,
    "shufflenet_v2_x0_5": None, "shufflenet_v2_x1_0": None, "shufflenet_v2_x1_5": None, "squeezenet1_0": None,
    "squeezenet1_1": None, "efficientnet_b0": None, "efficientnet_b1": None, "regnet_x_400mf": None,
    "regnet_y_400mf": None, "regnet_y_800mf": None, "regnet_x_800mf": None, "convnext_tiny": None,
    "vit (small)": _small_vit, "swin (small)": _small_swin, "swin_v2 (small)": _small_swin_v2,
    "maxvit (small)": _small_maxvit,
}


class Exported:
    """A model's torch report and its ONNX file, made once per session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cache: dict[tuple[str, bool], tuple[Report, Path]] = {}

    def __call__(self, name: str, *, dynamo: bool = False) -> tuple[Report, Path]:
        key = (name, dynamo)
        if key not in self.cache:
            torch.manual_seed(0)
            build = MODELS.get(name)
            model = (build() if build is not None else torchvision.models.get_model(name, weights=None)).eval()
            shape = (1, 3, SIDE, SIDE)
            report = rooflens.analyze(model, input_size=shape)
            path = self.folder / f"{name.replace(' ', '_').strip('()')}{'_dynamo' if dynamo else ''}.onnx"
            sink = io.StringIO()
            with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (torch.randn(shape),), str(path), dynamo=dynamo)
            self.cache[key] = report, path
        return self.cache[key]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return Exported(tmp_path_factory.mktemp("onnx_parity"))


@pytest.mark.parametrize("name", list(MODELS))
def test_exported_classifier_has_the_same_macs(name: str, exported: Exported) -> None:
    torch_report, path = exported(name)
    onnx_report = rooflens.analyze_onnx(path)
    t, o = torch_report.total().macs, onnx_report.total().macs
    assert t > 0
    assert abs(o - t) <= TOLERANCE * t, f"{name}: torch {t:,} MACs, ONNX {o:,} ({100 * (o - t) / t:+.4f} %)"
    assert onnx_report.unsupported_ops() == {}, onnx_report.diagnostics
    # the rest differs by the graph's operators, not by much (module docstring): FLOPs within 5 %
    assert onnx_report.total().flops == pytest.approx(torch_report.total().flops, rel=0.05)


def _leaf_macs(report: Report) -> dict[str, int]:
    return {p: n.cumulative.macs for p, n in report.by_module().items() if not n.children and n.cumulative.macs}


def test_dynamo_export_keeps_the_module_tree(exported: Exported) -> None:
    """torch.export's exporter writes each node's module path and classes: the same tree, module by module,
    with the convolutions the exporter fused with their batch norms credited to the convolution."""
    torch_report, path = exported("resnet18", dynamo=True)
    onnx_report = rooflens.analyze_onnx(path)
    assert onnx_report.total().macs == torch_report.total().macs
    assert _leaf_macs(onnx_report) == _leaf_macs(torch_report)
    for p in ("", "layer1", "layer1.0", "fc"):  # a fused convolution's class is not in the graph: typed "Conv"
        assert onnx_report.by_module()[p].type_name == torch_report.by_module()[p].type_name, p
        assert onnx_report.by_module()[p].cumulative.macs == torch_report.by_module()[p].cumulative.macs, p
    assert onnx_report.by_module()["layer1.0.conv1"].type_name == "Conv"


def test_torchscript_export_names_give_the_module_tree(exported: Exported) -> None:
    """The TorchScript exporter's node names (``/layer1/layer1.0/conv1/Conv``) give the same paths."""
    for name in ("resnet18", "mobilenet_v2"):
        torch_report, path = exported(name)
        onnx_report = rooflens.analyze_onnx(path)
        assert _leaf_macs(onnx_report) == _leaf_macs(torch_report), name
        top = {p: n.cumulative.macs for p, n in torch_report.by_module().items() if n.depth == 1}
        assert {p: onnx_report.by_module()[p].cumulative.macs for p in top if top[p]} == {
            p: m for p, m in top.items() if m}


def test_transformer_module_tree(exported: Exported) -> None:
    """A ViT's attention: the projections and the two products are in the encoder layers' modules."""
    torch_report, path = exported("vit (small)")
    onnx_report = rooflens.analyze_onnx(path)
    for p in ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1", "conv_proj", "heads"):
        assert onnx_report.by_module()[p].cumulative.macs == torch_report.by_module()[p].cumulative.macs, p
