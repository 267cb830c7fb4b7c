"""The capture engine: attribution, fake vs real execution, errors, and leaving the model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import rooflens
from rooflens.errors import InputError, ModelError
from rooflens.types import TensorKind


def conv_macs(cout: int, h: int, w: int, cin: int, k: int) -> int:
    return cout * h * w * cin * k * k


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    """stem conv, one block called twice (shared weights), an unused head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block()
        self.unused = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.block(x)
        return self.block(x)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        },
        "attrs": {n: sorted(vars(m)) for n, m in model.named_modules()},
        "params": {n: (id(p), p.requires_grad) for n, p in model.named_parameters()},
    }


def assert_same(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k
    for key in ("training", "hooks", "attrs", "params"):
        assert before[key] == after[key], key
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    assert _get_current_dispatch_mode() is None


def test_attribution_own_cumulative_and_calls():
    r = rooflens.analyze(Net().eval(), input_size=(1, 3, 16, 16))
    stem = conv_macs(8, 16, 16, 3, 3)  # 8*16*16*3*9 = 55,296
    block = conv_macs(8, 16, 16, 8, 3)  # 8*16*16*8*9 = 147,456 per call
    mods = r.by_module()
    assert mods["stem"].own.macs == stem
    assert mods["block.conv"].cumulative.macs == 2 * block  # called twice, both calls summed
    assert mods["block"].calls == 2 and mods["block.conv"].calls == 2 and mods["stem"].calls == 1
    assert mods["block"].own.macs == 0  # the relu runs in block itself, the conv in block.conv
    assert r.total().macs == stem + 2 * block == 350_208
    assert mods[""].cumulative == r.total()
    assert r.uncalled_modules == ("unused",)  # its children are not listed again
    assert mods["stem"].output_shapes == ((1, 8, 16, 16),)
    # every record is attributed to the innermost module it ran in
    assert {rec.module for rec in r.records if rec.op == "aten.convolution"} == {"stem", "block.conv"}


def test_params_tied_counted_once_and_per_module():
    net = Net()
    # stem: 8*3*9 + 8 = 224; block.conv 8*8*9 = 576; bn 8 + 8 = 16; unused 4*4 + 4 = 20
    assert rooflens.count_parameters(net) == 224 + 576 + 16 + 20 == 836
    r = rooflens.analyze(net, input_size=(1, 3, 8, 8))
    assert r.params.total == 836 and r.params.trainable == 836
    assert r.params.buffers == 8 + 8 + 1  # running mean, var, num_batches_tracked
    assert r.by_module()["block"].params.total == 592
    assert r.by_module()["block"].own_params == 0
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight
    assert rooflens.count_parameters(tied) == 40  # one 10x4 tensor, counted once


def test_nonzero_and_model_size():
    lin = nn.Linear(10, 10)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, :3] = 1.0
    # weight 100 elements of which 3 non-zero; bias 10 elements (random, non-zero)
    assert rooflens.count_parameters(lin, nonzero_only=True) == 3 + int((lin.bias != 0).sum())
    assert rooflens.count_parameters(lin, trainable_only=True) == 110
    lin.bias.requires_grad_(False)
    assert rooflens.count_parameters(lin, trainable_only=True) == 100
    assert rooflens.model_size_bytes(lin) == 110 * 4  # float32
    assert rooflens.model_size_bytes(lin, bits=8) == 110
    assert rooflens.model_size_bytes(lin, bits=4) == 55
    assert rooflens.model_size_bytes(lin, bits=3) == 42  # 330 bits -> 41.25 -> 42 bytes
    with torch.device("meta"):
        meta = nn.Linear(10, 10)
    with pytest.raises(InputError, match="meta"):
        rooflens.count_parameters(meta, nonzero_only=True)
    assert rooflens.analyze(meta, input_size=(1, 10)).params.nonzero is None


def test_model_untouched_and_repeatable_train_mode():
    torch.manual_seed(0)
    net = Net().train()  # batch norm in training mode would update its running statistics
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(net)
    ref = copy.deepcopy(net)
    r1 = rooflens.analyze(net, x)
    r2 = rooflens.analyze(net, x)
    assert_same(before, net)
    assert r1.total() == r2.total()
    assert [rec.op for rec in r1.records] == [rec.op for rec in r2.records]
    torch.manual_seed(1)
    assert torch.equal(net(x), ref(x))  # same outputs afterwards (and the same running stats update)


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        raise ValueError("boom")


def test_forward_raises_leaves_no_trace():
    net = Raises().train()
    before = snapshot(net)
    with pytest.raises(ModelError, match="ValueError.*boom"):
        rooflens.analyze(net, torch.randn(1, 3, 8, 8))
    assert_same(before, net)


def test_shape_mismatch_names_module_and_shapes():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(10, 2))
    before = snapshot(net)
    with pytest.raises(ModelError) as err:
        rooflens.analyze(net, input_size=(1, 4, 8, 8))
    msg = str(err.value)
    assert "'0'" in msg and "Conv2d" in msg and "4" in msg  # module 0 and the offending channel count
    with pytest.raises(ModelError, match=r"'2' \(Linear\)"):
        rooflens.analyze(net, input_size=(1, 3, 8, 8))
    assert_same(before, net)


def test_bad_arguments():
    net = nn.Linear(2, 2)
    with pytest.raises(InputError, match="exactly one"):
        rooflens.analyze(net)
    with pytest.raises(InputError, match="positive"):
        rooflens.analyze(net, input_size=(1, 0))
    with pytest.raises(InputError, match="convention"):
        rooflens.analyze(net, input_size=(1, 2), convention="flops")
    with pytest.raises(InputError, match="dtype"):
        rooflens.analyze(net, input_size=(1, 2), dtype="float17")
    with pytest.raises(InputError, match="nn.Module"):
        rooflens.analyze(lambda x: x, input_size=(1, 2))  # type: ignore[arg-type]


def test_meta_model_and_input_forms():
    with torch.device("meta"):
        conv = nn.Conv2d(3, 16, 3, padding=1)
    # 16*32*32*3*9 = 442,368 MACs
    for r in (
        rooflens.analyze(conv, input_size=(1, 3, 32, 32)),
        rooflens.analyze(conv, torch.empty(1, 3, 32, 32, device="meta")),
        rooflens.analyze(conv, (torch.randn(1, 3, 32, 32),)),
        rooflens.analyze(conv, {"input": torch.randn(1, 3, 32, 32)}),
    ):
        assert r.total().macs == 442_368
        assert r.executed == "fake" and r.device == "cpu"


def test_dtype_changes_bytes_not_model():
    conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
    r32 = rooflens.analyze(conv, input_size=(1, 3, 32, 32))
    r16 = rooflens.analyze(conv, input_size=(1, 3, 32, 32), dtype=torch.float16)
    # fp32: input 3*32*32*4 = 12,288 + weight 16*3*9*4 = 1,728 read; output 16*32*32*4 = 65,536 written
    assert (r32.total().bytes_read, r32.total().bytes_written) == (14_016, 65_536)
    assert (r16.total().bytes_read, r16.total().bytes_written) == (7_008, 32_768)
    assert r16.total().macs == r32.total().macs
    assert conv.weight.dtype == torch.float32
    kinds = [t.kind for t in r16.records[0].inputs]
    assert kinds == [TensorKind.ACTIVATION, TensorKind.PARAMETER]


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[y > 0]  # nonzero: the output's size depends on the values


def test_data_dependent_falls_back_to_real_run():
    net = DataDependent()
    before = snapshot(net)
    r = rooflens.analyze(net, input_size=(1, 3, 8, 8))
    assert r.executed == "real"
    assert r.total().macs == 4 * 8 * 8 * 3 * 9  # 6,912
    assert any("real tensors" in d and "conv" not in d.split("module")[0] for d in r.diagnostics)
    assert_same(before, net)
    with torch.device("meta"):
        meta = DataDependent()
    with pytest.raises(ModelError, match=r"meta device"):
        rooflens.analyze(meta, input_size=(1, 3, 8, 8))


def test_unsupported_op_is_reported_with_bytes():
    lib = torch.library.Library("rooflens_test", "DEF")
    lib.define("opaque(Tensor x) -> Tensor")
    lib.impl("opaque", lambda x: x.clone(), "CompositeExplicitAutograd")
    lib.impl("opaque", lambda x: torch.empty_like(x), "Meta")

    class Opaque(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.rooflens_test.opaque(x)

    r = rooflens.analyze(Opaque(), input_size=(2, 5))
    assert r.unsupported_ops() == {"rooflens_test.opaque": 1}
    rec = r.records[0]
    assert not rec.supported and rec.cost.flops == 0
    assert (rec.cost.bytes_read, rec.cost.bytes_written) == (40, 40)  # 10 float32 in, 10 out


def test_a_failing_formula_is_reported_not_fatal():
    from rooflens.formulas import REGISTRY

    lib = torch.library.Library("rooflens_test2", "DEF")
    lib.define("broken(Tensor x) -> Tensor")
    lib.impl("broken", lambda x: x.clone(), "CompositeExplicitAutograd")
    lib.impl("broken", lambda x: torch.empty_like(x), "Meta")

    @REGISTRY.register("rooflens_test2.broken")
    def broken(call):  # a formula with a bug
        raise ZeroDivisionError("oops")

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.rooflens_test2.broken(x) + 1

    try:
        r = rooflens.analyze(Broken(), input_size=(2, 3))
    finally:
        del REGISTRY.entries["rooflens_test2.broken"]
    assert r.unsupported_ops() == {"rooflens_test2.broken": 1}
    assert any("rooflens_test2.broken" in d and "ZeroDivisionError" in d for d in r.diagnostics)
    assert r.total().flops == 6  # the add after it is still counted: 1 FLOP x 6 elements
