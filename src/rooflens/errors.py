"""Errors rooflens raises. Each names what was wrong: the module, the shapes, the spec or the file."""


class RooflensError(Exception):
    """Base class of every error rooflens raises on purpose."""


class InputError(RooflensError, ValueError):
    """The inputs or options given do not fit (bad input size, unknown convention ...)."""


class ModelError(RooflensError, RuntimeError):
    """The model's forward raised; the message names the module and operator where it happened."""


class SpecError(RooflensError, ValueError):
    """A model spec such as ``torchvision:resnet50`` or ``file.py:Net`` does not resolve."""


class HardwareError(RooflensError, ValueError):
    """A hardware entry or choice is wrong: unknown id, bad unit, implausible figure, missing peak."""
