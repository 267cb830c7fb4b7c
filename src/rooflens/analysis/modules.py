"""The module tree: own and cumulative cost per module, parameters, calls, output shapes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from rooflens.capture.quantized import is_weight_holder, module_type_name, packed_tensors
from rooflens.params import param_stats
from rooflens.types import ZERO, Cost, ModuleNode, OpRecord


def parent_of(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def lineage(path: str) -> Iterator[str]:
    """``path`` and each of its ancestors, up to the root ``""``: ``"a.b"`` -> ``"a.b"``, ``"a"``, ``""``."""
    while path:
        yield path
        path = parent_of(path)
    yield ""


def build_tree(
    model: torch.nn.Module,
    records: Iterable[OpRecord],
    calls: dict[str, int],
    output_shapes: dict[str, tuple[tuple[int, ...], ...]],
) -> dict[str, ModuleNode]:
    """One node per module, in definition order, under its first name; and one per other name a shared
    module was called through (each call is credited to the path it was called through).

    Parameter counts are of the distinct tensors under each node, gathered bottom-up (one pass); the
    non-zero count, which reads every value, is made for the whole model only. A quantized module's packed
    weights and biases count as its own parameters (unpacked once per module)."""
    nodes: dict[str, ModuleNode] = {}
    modules: dict[str, torch.nn.Module] = {}
    called = {p for path, n in calls.items() if n for p in lineage(path)}
    seen: set[int] = set()
    packed: dict[int, list[torch.Tensor]] = {}  # id(module) -> its packed weights (quantized modules only)
    for path, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen and path not in called:
            continue  # another name of a module that never ran under it
        seen.add(id(module))
        modules[path] = module
        if id(module) not in packed:
            packed[id(module)] = packed_tensors(module)
        nodes[path] = ModuleNode(
            path=path,
            type_name=module_type_name(module),
            own_params=sum(p.numel() for p in module._parameters.values() if p is not None)
            + sum(p.numel() for p in packed[id(module)]),
            calls=calls.get(path, 0),
            output_shapes=output_shapes.get(path, ()),
        )
        if path:
            nodes[parent_of(path)].children.append(path)
    own: dict[str, Cost] = {}
    own_backward: dict[str, Cost] = {}
    for r in records:
        own[r.module] = own.get(r.module, ZERO) + r.cost
        if r.phase == "backward":
            own_backward[r.module] = own_backward.get(r.module, ZERO) + r.cost
    tensors: dict[str, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]] = {}
    for path in reversed(list(nodes)):  # children come after their parent in named_modules order
        node, module = nodes[path], modules[path]
        # the module's own tensors (its _parameters and _buffers: parameters(recurse=False) without the walk)
        params: dict[int, torch.Tensor] = {id(p): p for p in module._parameters.values() if p is not None}
        params.update((id(p), p) for p in packed[id(module)])
        buffers: dict[int, torch.Tensor] = {id(b): b for b in module._buffers.values() if b is not None}
        for child in node.children:
            params.update(tensors[child][0])
            buffers.update(tensors[child][1])
        for child in node.children:
            del tensors[child]
        tensors[path] = params, buffers
        node.params = param_stats(params.values(), buffers.values(), count_nonzero=not path)
        node.own = own.get(path, ZERO)
        node.cumulative = node.own + sum((nodes[c].cumulative for c in node.children), ZERO)
        node.cumulative_backward = own_backward.get(path, ZERO) + sum(
            (nodes[c].cumulative_backward for c in node.children), ZERO
        )
    return nodes


def uncalled(nodes: dict[str, ModuleNode]) -> list[str]:
    """The topmost modules of subtrees in which no module ran (unused heads, dead branches). A quantized
    module's weight holder (``LinearPackedParams``) is never called: its parent's kernel reads its weights."""
    ran: dict[str, bool] = {}
    holders = {p for p, node in nodes.items() if is_weight_holder(node.type_name)}
    for path in reversed(list(nodes)):
        node = nodes[path]
        ran[path] = node.calls > 0 or any(ran[c] for c in node.children if c not in holders)
    return [p for p in nodes if not ran[p] and (p == "" or ran.get(parent_of(p), True)) and p not in holders]
