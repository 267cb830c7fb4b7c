"""Memory footprint: the live-memory timeline, its peak and where, by hand; fake run against real runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rooflens.analysis.memory import MemoryReport, _analyse, _config, memory
from rooflens.errors import InputError, ModelError

VIEW_OPS = {"aten.t", "aten.view", "aten.transpose", "aten._unsafe_view", "aten.expand", "aten.detach"}


def _hand_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1000, 2000), nn.ReLU(inplace=True), nn.Linear(2000, 500))


def test_hand_worked_sequential_peak_and_where():
    # Linear(1000->2000) -> ReLU(inplace) -> Linear(2000->500), batch 4, fp32.
    # input 4x1000x4 B                        = 16,000 live from the start (the caller holds it)
    # fc1 ("0"): t(weight) is a view (+0); addmm output 4x2000x4 = 32,000 -> 48,000 live
    # ReLU ("1") in place: relu_ returns fc1's storage             (+0) -> 48,000
    # fc2 ("2"): addmm output 4x500x4 = 8,000 while fc1's output is still referenced (it is fc2's input)
    #                                                              -> 56,000 = the peak, at "2", aten.addmm
    # weights: (1000*2000 + 2000 + 2000*500 + 500) x 4 = 3,002,500 x 4 = 12,010,000 (apart, not in the timeline)
    model = _hand_model()
    r = memory(model, torch.randn(4, 1000))
    assert isinstance(r, MemoryReport)
    assert r.executed == "fake"
    assert r.inputs_bytes == 16_000
    assert [(e.op, e.module, e.allocated_bytes, e.live_bytes) for e in r.timeline] == [
        ("aten.t", "0", 0, 16_000),
        ("aten.addmm", "0", 32_000, 48_000),
        ("aten.relu_", "1", 0, 48_000),
        ("aten.t", "2", 0, 48_000),
        ("aten.addmm", "2", 8_000, 56_000),
    ]
    assert r.peak_bytes == 56_000
    assert (r.peak_at, r.peak_op) == ("2", "aten.addmm")
    assert r.peak_event() is r.timeline[4]
    assert r.weights_bytes == 12_010_000
    assert r.buffers_bytes == 0
    assert r.activations_bytes == 32_000 + 8_000
    assert r.activation_elements == 8_000 + 2_000  # #activations: 4x2000 + 4x500
    assert r.outputs_bytes == 8_000
    assert r.total_peak_bytes == 12_010_000 + 56_000
    assert r.train_peak_bytes is None and r.optimizer_state_bytes is None


def test_torchsummary_footer_of_the_hand_model():
    # torchsummary: 4 bytes a number. input 4,000 elements -> 16,000 B
    # forward/backward: 2 x (fc1 8,000 + relu 8,000 + fc2 2,000 = 18,000 output elements) x 4 = 144,000 B
    # (the root Sequential is not hooked by torchsummary); params 3,002,500 x 4 = 12,010,000 B
    # estimated total 16,000 + 144,000 + 12,010,000 = 12,170,000; the timeline's peak 12,066,000 (weights + 56,000)
    s = memory(_hand_model(), torch.randn(4, 1000)).summary()
    assert s.input_bytes == 16_000
    assert s.forward_backward_bytes == 144_000
    assert s.params_bytes == 12_010_000
    assert s.estimated_total_bytes == 12_170_000
    assert s.peak_bytes == 12_066_000 and s.peak_at == "2"
    assert s.mb("estimated_total_bytes") == pytest.approx(12.17)
    assert s.mib("params_bytes") == pytest.approx(12_010_000 / 1_048_576)
    assert "Estimated total size" in str(s) and "MiB" in str(s)


def test_bit_widths_scale_weights_and_activations():
    # act_bits=8: every activation at 1 byte an element: peak 56,000 / 4 = 14,000
    # weight_bits=4: 3,002,500 parameters x 4 bits = 1,501,250 bytes
    r = memory(_hand_model(), torch.randn(4, 1000), act_bits=8, weight_bits=4)
    assert r.peak_bytes == 14_000
    assert r.weights_bytes == 1_501_250
    # precision="int8": every floating-point tensor at 1 byte; weight_bits still overrides it for the weights
    r = memory(_hand_model(), torch.randn(4, 1000), precision="int8", weight_bits=4)
    assert r.peak_bytes == 14_000
    assert r.weights_bytes == 1_501_250
    assert memory(_hand_model(), torch.randn(4, 1000), precision="int8").weights_bytes == 3_002_500  # 1 byte each


class Views(nn.Module):
    """Views and in-place operators: they add no memory."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        y.relu_()
        z = y.view(8, 4, 8).transpose(1, 2)
        z.mul_(2)
        return z.sum(1)


def test_views_and_in_place_ops_add_nothing():
    # input 8x32x4 = 1,024; fc output 8x32x4 = 1,024 -> 2,048; relu_, view, transpose, mul_ add nothing;
    # sum over dim 1 of 8x8x4 -> 8x4 = 32 elements x 4 = 128 -> 2,176, the peak, in the root module.
    r = memory(Views(), torch.randn(8, 32))
    for e in r.timeline:
        if e.op in VIEW_OPS or e.op.endswith("_"):
            assert e.allocated_bytes == 0, e
    assert [e.op for e in r.timeline if e.allocated_bytes] == ["aten.addmm", "aten.sum"]
    assert r.peak_bytes == 2_176
    assert (r.peak_at, r.peak_op) == ("", "aten.sum")
    assert r.activations_bytes == 1_024 + 128


class ResCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        z = self.bn2(self.conv2(y))
        z = torch.relu(z + y)
        return self.fc(z.mean((2, 3)))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32))


def _real_and_fake(model: nn.Module, x: torch.Tensor, **options: object) -> tuple[MemoryReport, MemoryReport]:
    cfg = _config(
        model, dtype=None, train=bool(options.get("train", False)), optimizer=options.get("optimizer"),  # type: ignore[arg-type]
        mixed_precision=False, checkpoint=(), weight_bits=None, act_bits=None,
    )
    return _analyse(model, (x,), {}, cfg), _analyse(model, (x,), {}, cfg, real=True)


@pytest.mark.parametrize(
    ("make", "shape"),
    [(_mlp, (8, 64)), (lambda: ResCNN().eval(), (2, 3, 16, 16)), (lambda: ResCNN().train(), (2, 3, 16, 16)),
     (Views, (8, 32))],
    ids=["mlp", "cnn-eval", "cnn-train-mode", "views-inplace"],
)
def test_fake_peak_equals_real_run_peak(make, shape):
    # The same tracking on real CPU tensors: the timeline (and so the peak) must be the same, exactly.
    torch.manual_seed(0)
    fake, real = _real_and_fake(make(), torch.randn(*shape))
    assert (fake.executed, real.executed) == ("fake", "real")
    assert fake.peak_bytes == real.peak_bytes
    assert (fake.peak_at, fake.peak_op) == (real.peak_at, real.peak_op)
    assert [(e.op, e.allocated_bytes, e.live_bytes) for e in fake.timeline] == [
        (e.op, e.allocated_bytes, e.live_bytes) for e in real.timeline
    ]


@pytest.mark.parametrize(("make", "shape"), [(_mlp, (8, 64)), (ResCNN, (2, 3, 16, 16))], ids=["mlp", "cnn"])
def test_fake_training_step_equals_real_one(make, shape):
    torch.manual_seed(0)
    fake, real = _real_and_fake(make(), torch.randn(*shape), train=True, optimizer="adam")
    assert fake.train_peak_bytes == real.train_peak_bytes
    assert fake.saved_activation_bytes == real.saved_activation_bytes
    assert [(e.op, e.phase, e.live_bytes) for e in fake.timeline] == [
        (e.op, e.phase, e.live_bytes) for e in real.timeline
    ]


def _big_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def test_training_step_with_adam_by_hand():
    # parameters: 256*512+512 + 512*512+512 + 512*10+10 = 131,584 + 262,656 + 5,130 = 399,370
    # weights 399,370 x 4 = 1,597,480; gradients the same; Adam: 2 x 399,370 x 4 = 3,194,960
    torch.manual_seed(0)
    model = _big_mlp()
    r = memory(model, torch.randn(64, 256), train=True, optimizer="adam")
    assert r.weights_bytes == 1_597_480
    assert r.gradient_bytes == 1_597_480
    assert r.optimizer_state_bytes == 2 * 399_370 * 4 == 3_194_960
    assert r.master_weights_bytes == 0
    # saved by autograd at the end of the forward, besides the input x (saved by fc1) and the output:
    # relu1's output r1 (saved by relu1 and by fc2) and relu2's output r2 (saved by relu2 and fc3), 64x512x4
    # = 131,072 each -> 262,144. fc1's and fc2's outputs are gone: a linear saves its input, relu its output.
    assert r.saved_activation_bytes == 2 * 64 * 512 * 4
    assert r.train_peak_bytes == r.weights_bytes + r.optimizer_state_bytes + r.peak_bytes
    assert {e.phase for e in r.timeline} == {"forward", "backward", "optimizer"}
    # SGD with momentum keeps one buffer a parameter; plain SGD none
    assert memory(model, torch.randn(64, 256), train=True, optimizer="sgd-momentum").optimizer_state_bytes == 1_597_480
    assert memory(model, torch.randn(64, 256), train=True, optimizer="sgd").optimizer_state_bytes == 0


def test_mixed_precision_is_16_bytes_a_parameter():
    # ZeRO (Rajbhandari et al. 2020): mixed-precision Adam keeps 2 + 2 + (4 + 4 + 4) = 16 bytes a parameter:
    # fp16 weights, fp16 gradients, fp32 master weights, fp32 first and second moments. P = 399,370.
    r = memory(_big_mlp(), input_size=(64, 256), train=True, optimizer="adam", mixed_precision=True)
    p = 399_370
    assert r.weights_bytes == 2 * p
    assert r.gradient_bytes == 2 * p
    assert r.master_weights_bytes == 4 * p
    assert r.optimizer_state_bytes == 8 * p
    assert r.weights_bytes + r.gradient_bytes + r.master_weights_bytes + r.optimizer_state_bytes == 16 * p


def test_training_peak_agrees_with_torch_memtracker():
    # torch's own MemTracker on a real CPU training step (after a first step, so that Adam's state exists,
    # as in rooflens's steady-state step): forward, backward, optimizer.step, zero_grad.
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError as e:  # pragma: no cover - builds without torch.distributed
        pytest.skip(f"torch.distributed._tools.mem_tracker is not available: {e}")
    torch.manual_seed(0)
    model, x = _big_mlp(), torch.randn(512, 256)
    ours = memory(model, x, train=True, optimizer="adam")
    opt = torch.optim.Adam(model.parameters())
    model(x).sum().backward()
    opt.step()
    opt.zero_grad()
    tracker = MemTracker()
    tracker.track_external(model, opt, x)
    with tracker:
        out = model(x)
        loss = out.sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    # Measured with torch 2.14.1: rooflens 9,554,088 B, MemTracker 9,533,632 B (0.21 % apart).
    assert ours.train_peak_bytes == pytest.approx(peak, rel=0.05)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 256, bias=False)
        self.b = nn.Linear(256, 64, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_activation_checkpointing_saves_memory_and_recomputes():
    # Two blocks Linear(64->256) -> ReLU -> Linear(256->64), no bias, batch 32, fp32.
    # Saved after the forward (besides input and output): each block's relu output r (saved by relu and by
    # b) 32x256x4 = 32,768, and block 0's output (block 1's input, saved by its first mm) 32x64x4 = 8,192:
    # 32,768 + 8,192 + 32,768 = 73,728. Checkpointing block "0" drops its r: 40,960.
    # Recompute (torch stops once every saved tensor is back): block 0's mm 2 x 32 x 64 x 256 = 1,048,576
    # FLOPs + relu 32 x 256 = 8,192 -> 1,056,768.
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block())
    x = torch.randn(32, 64)
    plain = memory(model, x, train=True)
    ckpt = memory(model, x, train=True, checkpoint=["0"])
    assert plain.saved_activation_bytes == 73_728
    assert ckpt.saved_activation_bytes == 40_960
    assert plain.recompute_flops == 0
    assert ckpt.recompute_flops == 1_056_768
    assert ckpt.checkpointed == ("0",)
    assert any(e.phase == "recompute" for e in ckpt.timeline)
    assert ckpt.gradient_bytes == plain.gradient_bytes == 2 * 64 * 256 * 4 * 2


def test_the_users_model_is_left_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(ResCNN(), nn.Flatten())
    model[0].bn2.eval()  # mixed flags must come back as they were
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    pre_hooks = len(torch.nn.modules.module._global_forward_pre_hooks)
    hooks = len(torch.nn.modules.module._global_forward_hooks)
    x = torch.randn(2, 3, 16, 16)
    for options in ({}, {"train": True, "optimizer": "adamw", "checkpoint": ["0.conv2"]}):
        memory(model, x, **options)
        after = model.state_dict()
        assert before.keys() == after.keys()
        for k, v in before.items():
            assert torch.equal(v, after[k]), k
        assert [m.training for m in model.modules()] == flags
        assert all(p.grad is None for p in model.parameters())
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
        assert len(torch.nn.modules.module._global_forward_pre_hooks) == pre_hooks
        assert len(torch.nn.modules.module._global_forward_hooks) == hooks
    assert not x.requires_grad


def test_raises_name_what_is_wrong():
    model = _hand_model()
    x = torch.randn(4, 1000)
    with pytest.raises(InputError, match="unknown optimizer 'lamb'"):
        memory(model, x, train=True, optimizer="lamb")
    with pytest.raises(InputError, match="needs train=True"):
        memory(model, x, optimizer="adam")
    with pytest.raises(InputError, match="'3'"):
        memory(model, x, train=True, checkpoint=["3"])
    with pytest.raises(ModelError, match=r"module '0' \(Linear\)"):
        memory(model, torch.randn(4, 999))


def test_resnet18_inference_peak_by_hand():
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = tv.models.resnet18().eval()
    r = memory(model, input_size=(1, 3, 224, 224))
    # input 3x224x224x4 = 602,112; conv1 output 64x112x112x4 = 3,211,264; bn1 writes another 3,211,264
    # while conv1's output is still referenced: 602,112 + 2 x 3,211,264 = 7,024,640 at bn1
    assert r.peak_bytes == 7_024_640
    assert (r.peak_at, r.peak_op) == ("bn1", "aten.native_batch_norm")
    assert r.weights_bytes == 11_689_512 * 4


def test_vgg16_summary_matches_torchsummary_readme():
    # torchsummary's README prints for vgg16 at 3x224x224 (in its "MB", which are MiB):
    # Input size 0.57, Forward/backward pass size 218.59, Params size 527.79.
    # torchvision's VGG has since gained an AdaptiveAvgPool2d (output 512x7x7 = 25,088 elements, one more
    # hooked module): 2 x 25,088 x 4 B = 200,704 B more in the forward/backward figure.
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = tv.models.vgg16()
    s = memory(model, input_size=(1, 3, 224, 224)).summary()
    assert round(s.mib("input_bytes"), 2) == 0.57
    assert round((s.forward_backward_bytes - 200_704) / 2**20, 2) == 218.59
    assert round(s.mib("params_bytes"), 2) == 527.79
