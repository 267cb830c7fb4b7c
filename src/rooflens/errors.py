"""Errors rooflens raises. Each names what was wrong: the module, the shapes, the spec or the file."""

from collections.abc import Sequence


def first_names(names: Sequence[str], most: int, sep: str = ", ") -> str:
    """The first ``most`` of ``names`` joined by ``sep``, and how many more there are: for messages that name
    what they are about without listing hundreds of names."""
    return sep.join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


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
