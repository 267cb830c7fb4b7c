"""Resolving model specs: ``torchvision:NAME``, ``package.module:callable`` and ``path/to/file.py:callable``.

:func:`load_model` returns the model (in eval mode), an :class:`Example` (the input it is analysed
with by default, or none when rooflens cannot know it) and a display name. Nothing is downloaded:
torchvision models are built with ``weights=None``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from rooflens.errors import SpecError

SPEC_HELP = "spell a model as torchvision:NAME, package.module:callable or path/to/file.py:callable"

# Families of torchvision models, by the sub-package that registers them.
CLASSIFICATION, SEGMENTATION, DETECTION, VIDEO, OPTICAL_FLOW, QUANTIZATION = (
    "classification", "segmentation", "detection", "video", "optical_flow", "quantization",
)
# Families built for real on the CPU by default: their forward needs tensor values (detection's
# post-processing, RAFT's iterations) or their builders run code that does (quantization).
_REAL_FAMILIES = frozenset({DETECTION, OPTICAL_FLOW, QUANTIZATION})

SEGMENTATION_SIZE = (1, 3, 520, 520)
DETECTION_IMAGE = (3, 800, 800)
VIDEO_FRAMES = 16
OPTICAL_FLOW_SIZE = (1, 3, 368, 496)


@dataclass(frozen=True)
class Example:
    """What a model is analysed with by default: shapes (``input_size``) or actual ``inputs``.

    ``inputs`` is a tuple of positional arguments (detection models take a list of images, so their
    ``inputs`` is ``([image],)``). ``description`` says it in words, for messages and reports.
    """

    input_size: tuple[tuple[int, ...], ...] | None = None
    inputs: tuple[Any, ...] | None = None
    description: str = ""

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`rooflens.analyze` (``input_size=`` or ``inputs=``)."""
        if self.inputs is not None:
            return {"inputs": self.inputs}
        if self.input_size is not None:
            return {"input_size": [list(s) for s in self.input_size]}
        return {}


class LoadedModel(NamedTuple):
    model: torch.nn.Module
    example: Example | None  # None: the spec does not say what the model takes (give an input size)
    name: str


def load_model(spec: str, *, meta: bool | None = None) -> LoadedModel:
    """Build the model a spec names, in eval mode, with its default example input when known.

    ``meta``: build on the meta device (fast, no memory; parameter values unknown). ``None`` chooses:
    torchvision classification, segmentation and video models on meta; detection, optical-flow and
    quantization models for real on the CPU (they need tensor values); other specs as they build.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty model spec; {SPEC_HELP}")
    spec = spec.strip()
    if is_onnx(spec):
        raise SpecError(f"{spec!r} is an ONNX file, not a torch model: `rooflens profile` and `rooflens roofline` "
                        "analyse it (rooflens.analyze_onnx in Python)")
    if spec.startswith("torchvision:"):
        return _torchvision(spec.removeprefix("torchvision:"), meta)
    if ":" not in spec:
        raise SpecError(f"{spec!r} is not a model spec{_spec_hint(spec) or ';'} {SPEC_HELP}")
    target, attr = spec.rsplit(":", 1)
    if not attr or not target:
        raise SpecError(f"{spec!r} is not a model spec; {SPEC_HELP}")
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(target)
        where = target
    else:
        module = _import_module(target)
        where = f"module {target!r}"
    obj = _getattr_path(module, attr, where)
    model = _build(obj, attr, meta)
    return LoadedModel(model, None, attr.rsplit(".", 1)[-1])


def is_onnx(spec: str) -> bool:
    """Whether MODEL names an ONNX file (``path/to/model.onnx``), which ``analyze_onnx`` analyses."""
    return isinstance(spec, str) and spec.strip().lower().endswith(".onnx")


# ---- torchvision ------------------------------------------------------------------------------------


def torchvision_family(name: str) -> str:
    """The family of a registered torchvision model name, or raise :class:`SpecError`."""
    families = _torchvision_families()
    if name in families:
        return families[name]
    close = difflib.get_close_matches(name, list(families), n=3, cutoff=0.6)
    hint = f"; did you mean {_or(close)}?" if close else " (NAME is one of torchvision.models.list_models());"
    raise SpecError(f"unknown torchvision model {name!r}{hint} {SPEC_HELP}")


@functools.cache
def _torchvision_families() -> dict[str, str]:
    tv = _import_torchvision()
    models = tv.models
    families: dict[str, str] = {}
    for family, module in (
        (SEGMENTATION, models.segmentation),
        (DETECTION, models.detection),
        (VIDEO, models.video),
        (OPTICAL_FLOW, models.optical_flow),
        (QUANTIZATION, models.quantization),
    ):
        for name in models.list_models(module=module):
            families[name] = family
    for name in models.list_models():
        families.setdefault(name, CLASSIFICATION)
    return families


def _import_torchvision() -> Any:
    try:
        import torchvision
    except ImportError as e:
        raise SpecError(f"torchvision:NAME needs torchvision, which is not installed ({e}); "
                        "pip install 'rooflens[vision]'") from None
    return torchvision


def _torchvision(name: str, meta: bool | None) -> LoadedModel:
    if not name:
        raise SpecError(f"'torchvision:' names no model; {SPEC_HELP}")
    family = torchvision_family(name)
    from torchvision import models

    on_meta = (family not in _REAL_FAMILIES) if meta is None else meta
    kwargs: dict[str, Any] = {"weights": None}
    crop = _crop_size(name) if family in (CLASSIFICATION, QUANTIZATION, VIDEO) else None
    if name.startswith("vit_") and crop is not None and crop[0] != 224:
        kwargs["image_size"] = crop[0]  # vit_h_14's default weights are at 518: build the model to match
    if family in (DETECTION, SEGMENTATION):
        kwargs["weights_backbone"] = None  # their default is ImageNet weights, which would be downloaded
    try:
        with warnings.catch_warnings():  # googlenet/inception_v3 warn about a future init default
            warnings.simplefilter("ignore", FutureWarning)
            model = _call_on(lambda: models.get_model(name, **kwargs), on_meta)
    except Exception as e:  # pragma: no cover - a torchvision builder failing is not expected
        raise SpecError(f"building torchvision model {name!r} raised {type(e).__name__}: {e}") from e
    model.eval()
    return LoadedModel(model, _default_example(name, family, crop), name)


def _crop_size(name: str) -> tuple[int, int] | None:
    """The crop size of the model's default weights' transforms (no download: only their metadata)."""
    from torchvision import models

    try:
        transforms = models.get_model_weights(name).DEFAULT.transforms()
        crop = list(transforms.crop_size)
    except (AttributeError, KeyError, ValueError):  # no weights, or transforms without a crop (optical flow)
        return None
    if len(crop) == 1:
        crop = crop * 2
    return int(crop[0]), int(crop[1])


def _default_example(name: str, family: str, crop: tuple[int, int] | None) -> Example:
    if family in (CLASSIFICATION, QUANTIZATION):
        h, w = crop or (224, 224)
        return Example(input_size=((1, 3, h, w),), description=f"1x3x{h}x{w} image (the default weights' crop)")
    if family == SEGMENTATION:
        return Example(input_size=(SEGMENTATION_SIZE,), description="1x3x520x520 image")
    if family == VIDEO:
        h, w = crop or (112, 112)
        return Example(
            input_size=((1, 3, VIDEO_FRAMES, h, w),),
            description=f"1x3x{VIDEO_FRAMES}x{h}x{w} clip ({VIDEO_FRAMES} frames at the default weights' crop)",
        )
    if family == OPTICAL_FLOW:
        return Example(input_size=(OPTICAL_FLOW_SIZE, OPTICAL_FLOW_SIZE), description="two 1x3x368x496 images")
    # detection: a list of images of any size; values matter (post-processing depends on them)
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(DETECTION_IMAGE, generator=gen)
    c, h, w = DETECTION_IMAGE
    return Example(inputs=([image],), description=f"a list of one {c}x{h}x{w} image")


# ---- package.module:callable and file.py:callable ---------------------------------------------------


def _import_module(target: str) -> Any:
    """Import ``package.module``, also from the current directory (as ``python -m`` would)."""
    try:
        with _on_path(os.getcwd()):
            return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and (target == e.name or target.startswith(e.name + ".")):
            raise SpecError(f"no module named {e.name!r} (in the spec {target}:...); {SPEC_HELP}") from None
        raise SpecError(f"importing module {target!r} raised ModuleNotFoundError: {e}") from e
    except Exception as e:
        raise SpecError(f"importing module {target!r} raised {type(e).__name__}: {e}") from e


def _import_file(target: str) -> Any:
    path = os.path.abspath(os.path.expanduser(target))
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise SpecError(f"model file {target!r} {what}; {SPEC_HELP}")
    if not path.endswith(".py"):
        raise SpecError(f"model file {target!r} is not a .py file; {SPEC_HELP}")
    stem = os.path.splitext(os.path.basename(path))[0]
    mod_name = f"_rooflens_model_{stem}_{abs(hash(path)) & 0xFFFFFF:06x}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd file systems
        raise SpecError(f"cannot import {target!r} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
    with _on_path(os.path.dirname(path)):
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:
            sys.modules.pop(mod_name, None)
            raise SpecError(f"importing {target!r} raised {type(e).__name__}: {e}") from e
    return module


def _getattr_path(module: Any, attr: str, where: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in vars(module) if not n.startswith("_")] if obj is module else []
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SpecError(f"{where} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def _build(obj: Any, what: str, meta: bool | None) -> torch.nn.Module:
    if isinstance(obj, torch.nn.Module):
        module: torch.nn.Module = obj.to("meta") if meta else obj
        return module.eval()
    if not callable(obj):
        raise SpecError(f"{what} is not a class or function that builds an nn.Module (got {type(obj).__name__})")
    try:
        model = _call_on(obj, bool(meta))
    except Exception as e:
        raise SpecError(f"calling {what}() raised {type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise SpecError(f"{what}() returned an object of type {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


# ---- helpers ----------------------------------------------------------------------------------------


def _call_on(build: Callable[[], Any], meta: bool) -> Any:
    """``build()``, on the meta device when ``meta``.

    Some builders compute sizes with tensors (regnet's ``torch.round(...).tolist()``), which fails
    under ``torch.device("meta")``; for them, parameters and buffers are moved to meta as they are
    registered instead, so the rest of the builder runs on the CPU (and initialisation is a no-op).
    """
    if not meta:
        return build()
    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:
        with _empty_weights():
            return build()


@contextlib.contextmanager
def _empty_weights() -> Iterator[None]:
    """Every parameter and buffer registered inside goes to the meta device (as accelerate does)."""
    module_cls = torch.nn.Module
    register_parameter, register_buffer = module_cls.register_parameter, module_cls.register_buffer

    def parameter_on_meta(self: torch.nn.Module, name: str, param: Any) -> None:
        register_parameter(self, name, param)
        p = self._parameters.get(name)
        if p is not None and p.device.type != "meta":
            self._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    def buffer_on_meta(self: torch.nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        register_buffer(self, name, tensor, persistent)
        b = self._buffers.get(name)
        if b is not None and b.device.type != "meta":
            self._buffers[name] = b.to("meta")

    module_cls.register_parameter = parameter_on_meta  # type: ignore[method-assign]
    module_cls.register_buffer = buffer_on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        module_cls.register_parameter = register_parameter  # type: ignore[method-assign]
        module_cls.register_buffer = register_buffer  # type: ignore[method-assign]


@contextlib.contextmanager
def _on_path(folder: str) -> Iterator[None]:
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _spec_hint(spec: str) -> str:
    try:
        families = _torchvision_families()
    except SpecError:
        return ""
    if spec in families:
        return f"; did you mean torchvision:{spec}?"
    if spec.endswith(".py"):
        return f"; name the model in the file, e.g. {spec}:Net;"
    close = difflib.get_close_matches(spec, list(families), n=1, cutoff=0.75)
    return f"; did you mean torchvision:{close[0]}?" if close else ""


def _or(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def torchvision_models() -> list[str]:
    """Every model name ``torchvision:NAME`` accepts."""
    return sorted(_torchvision_families())


__all__ = [
    "SPEC_HELP", "Example", "LoadedModel", "is_onnx", "load_model", "torchvision_family", "torchvision_models",
]
