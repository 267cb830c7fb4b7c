"""Model specs: torchvision:NAME (one model per family), package.module:callable, path/to/file.py:callable."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

import rooflens
from rooflens.errors import SpecError
from rooflens.zoo import load_model, torchvision_family, torchvision_models

pytest.importorskip("torchvision")


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Building a model must never fetch weights."""

    def refuse(*args, **kwargs):
        raise AssertionError("rooflens tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def on_meta(model: torch.nn.Module) -> bool:
    return all(p.device.type == "meta" for p in model.parameters())


# ---- torchvision: defaults per family ---------------------------------------------------------------


def test_classification_on_meta_at_the_weights_crop():
    model, example, name = load_model("torchvision:resnet18")
    assert name == "resnet18" and not model.training and on_meta(model)
    assert example.input_size == ((1, 3, 224, 224),)
    report = rooflens.analyze(model, **example.as_kwargs(), name=name)
    assert report.total().macs > 1e9  # ~1.8 GMACs
    _, example, _ = load_model("torchvision:inception_v3")
    assert example.input_size == ((1, 3, 299, 299),)


def test_vit_h_14_is_built_at_518():
    model, example, _ = load_model("torchvision:vit_h_14")
    assert model.image_size == 518 and on_meta(model)
    assert example.input_size == ((1, 3, 518, 518),)


def test_builders_that_compute_with_tensors_still_go_to_meta():
    model, example, _ = load_model("torchvision:regnet_x_400mf")  # its builder calls .tolist()
    assert on_meta(model) and all(b.device.type == "meta" for b in model.buffers())
    assert torch.nn.Module.register_parameter.__name__ == "register_parameter"  # patch undone
    rooflens.analyze(model, **example.as_kwargs())


def test_segmentation():
    model, example, _ = load_model("torchvision:lraspp_mobilenet_v3_large")
    assert on_meta(model) and example.input_size == ((1, 3, 520, 520),)
    report = rooflens.analyze(model, **example.as_kwargs())
    assert report.root.output_shapes[0] == (1, 21, 520, 520)


def test_video():
    model, example, _ = load_model("torchvision:r3d_18")
    assert on_meta(model) and example.input_size == ((1, 3, 16, 112, 112),)
    rooflens.analyze(model, **example.as_kwargs())
    _, example, _ = load_model("torchvision:mvit_v2_s")
    assert example.input_size == ((1, 3, 16, 224, 224),)


def test_optical_flow_takes_two_images():
    model, example, _ = load_model("torchvision:raft_small")
    assert not on_meta(model)
    assert example.input_size == ((1, 3, 368, 496), (1, 3, 368, 496))
    report = rooflens.analyze(model, **example.as_kwargs())
    assert len(report.inputs) == 2 and report.total().macs > 0


def test_detection_takes_a_list_and_runs_for_real():
    model, example, name = load_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert not on_meta(model) and not model.training
    (images,) = example.inputs
    assert isinstance(images, list) and images[0].shape == (3, 800, 800)
    report = rooflens.analyze(model, **example.as_kwargs(), name=name)
    assert report.executed == "real" and report.total().macs > 0


def test_quantization_is_built_on_the_cpu():
    model, example, _ = load_model("torchvision:quantized_mobilenet_v2")
    assert not on_meta(model) and example.input_size == ((1, 3, 224, 224),)


def test_meta_can_be_forced_either_way():
    model, _, _ = load_model("torchvision:resnet18", meta=False)
    assert not on_meta(model)
    model, _, _ = load_model("torchvision:quantized_mobilenet_v2", meta=True)
    assert on_meta(model)


def test_every_torchvision_name_has_a_family():
    names = torchvision_models()
    assert len(names) > 100
    families = {torchvision_family(n) for n in names}
    assert families == {"classification", "segmentation", "detection", "video", "optical_flow", "quantization"}
    assert torchvision_family("quantized_resnet50") == "quantization"
    assert torchvision_family("maskrcnn_resnet50_fpn") == "detection"


# ---- torchvision errors -----------------------------------------------------------------------------


def test_unknown_name_suggests():
    with pytest.raises(SpecError, match=r"unknown torchvision model 'resnet5'; did you mean resnet50"):
        load_model("torchvision:resnet5")
    with pytest.raises(SpecError, match="torchvision:NAME, package.module:callable or path/to/file.py:callable"):
        load_model("torchvision:zzzzzz")
    with pytest.raises(SpecError, match="names no model"):
        load_model("torchvision:")


def test_bare_name_is_not_a_spec():
    with pytest.raises(SpecError, match=r"did you mean torchvision:resnet50\?"):
        load_model("resnet50")
    with pytest.raises(SpecError, match="empty model spec"):
        load_model("")
    with pytest.raises(SpecError, match="'resnet50:' is not a model spec"):
        load_model("resnet50:")


# ---- package.module:callable and file.py:callable ---------------------------------------------------

FILE = textwrap.dedent(
    """
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)

    class Factory:
        @staticmethod
        def build():
            return Net()

    def raises():
        raise ValueError("bad config")

    def not_a_module():
        return "hello"

    VALUE = 3
    instance = Net().train()
    """
)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "nets.py"
    path.write_text(FILE)
    return path


def test_file_callable(model_file):
    model, example, name = load_model(f"{model_file}:Net")
    assert type(model).__name__ == "Net" and name == "Net" and example is None and not model.training
    model, _, name = load_model(f"{model_file}:Factory.build")  # dotted attribute
    assert type(model).__name__ == "Net" and name == "build"
    model, _, _ = load_model(f"{model_file}:instance")  # a module instance is used as it is, in eval mode
    assert not model.training
    model, _, _ = load_model(f"{model_file}:Net", meta=True)
    assert on_meta(model)


def test_package_module_callable(tmp_path, monkeypatch):
    model, _, name = load_model("torch.nn:Identity")
    assert isinstance(model, torch.nn.Identity) and name == "Identity"
    (tmp_path / "localnets.py").write_text(FILE)
    monkeypatch.chdir(tmp_path)  # modules in the current directory are found, as with python -m
    model, _, _ = load_model("localnets:Net")
    assert type(model).__name__ == "Net"


def test_file_errors(model_file, tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_model(f"{tmp_path / 'missing.py'}:Net")
    with pytest.raises(SpecError, match=r"has no attribute 'Nett'; did you mean 'Net'"):
        load_model(f"{model_file}:Nett")
    with pytest.raises(SpecError, match=r"calling raises\(\) raised ValueError: bad config"):
        load_model(f"{model_file}:raises")
    with pytest.raises(SpecError, match=r"not_a_module\(\) returned an object of type str, not a torch.nn.Module"):
        load_model(f"{model_file}:not_a_module")
    with pytest.raises(SpecError, match=r"VALUE is not a class or function .* \(got int\)"):
        load_model(f"{model_file}:VALUE")
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(:\n")
    with pytest.raises(SpecError, match="importing .*broken.py.* raised SyntaxError"):
        load_model(f"{broken}:Net")
    with pytest.raises(SpecError, match=r"e.g. .*nets.py:Net"):
        load_model(str(model_file))


def test_module_errors():
    with pytest.raises(SpecError, match="no module named 'no_such_package_xyz'"):
        load_model("no_such_package_xyz.models:Net")
    with pytest.raises(SpecError, match="has no attribute 'Nope'"):
        load_model("torch.nn:Nope")
