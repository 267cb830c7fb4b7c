"""Engine v2: models that used to crash or get misattributed (issue 10, sections 2 and 7), each a small
model with the pattern; expected numbers by hand, or the other tools' published expectations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rooflens
from rooflens.errors import InputError, ModelError


class Inner(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class SharedModuleNet(nn.Module):
    """Two parents call the same nn.Linear (fvcore's SharedModuleNet pattern)."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(10, 10, bias=False)
        self.submod1 = Inner(shared)
        self.submod2 = Inner(shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.submod2(self.submod1(x))


def test_each_call_of_a_shared_module_is_credited_to_the_path_it_was_called_through() -> None:
    report = rooflens.analyze(SharedModuleNet(), input_size=(1, 10))
    macs = {path: node.cumulative.macs for path, node in report.modules.items()}
    # one call of Linear(10, 10) on one row: 10 x 10 = 100 MACs; fvcore expects 100 and 100 for the parents
    assert macs == {"": 200, "submod1": 100, "submod1.linear": 100, "submod2": 100, "submod2.linear": 100}
    assert report.modules["submod2.linear"].calls == 1
    assert report.params.total == 100  # the shared weight once


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2)
        return self.linear(x)


def test_backward_with_an_input_that_requires_grad_but_is_not_a_leaf() -> None:
    x = torch.randn(2, 3, requires_grad=True).clone()
    report = rooflens.analyze(InPlace(), x, backward=True)
    # forward: linear 2 x 3 x 3 = 18 MACs; backward: grad of input 18 and of weight 18 MACs
    assert report.total("forward").macs == 18
    assert report.total("backward").macs == 36
    assert x.grad_fn is not None and x._version == 0


def test_data_parallel_analyses_the_wrapped_module_and_says_so() -> None:
    report = rooflens.analyze(nn.DataParallel(nn.Linear(4, 5)), input_size=(2, 4))
    assert report.total().macs == 2 * 4 * 5  # 40
    assert any("DataParallel wraps a Linear" in d for d in report.diagnostics)


@torch.library.custom_op("rooflens_test::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


class UsesCustomOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return twice(self.linear(x))


def test_a_custom_op_without_a_fake_kernel_falls_back_and_is_listed_as_unsupported() -> None:
    report = rooflens.analyze(UsesCustomOp(), input_size=(2, 3))
    assert report.executed == "real"
    assert report.unsupported_ops() == {"rooflens_test.twice": 1}
    assert any("no fake (meta) kernel" in d for d in report.diagnostics)
    with torch.device("meta"):
        meta = UsesCustomOp()
    with pytest.raises(ModelError, match=r"rooflens_test.twice .* has no fake .*torch.library.register_fake"):
        rooflens.analyze(meta, input_size=(2, 3))


class Bad(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyError("boom")


def test_an_exception_raised_in_a_submodule_names_its_path() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Bad()))
    with pytest.raises(ModelError, match=r"in module '1\.1' \(Bad\): 'boom'"):
        rooflens.analyze(model, input_size=(2, 3))


def test_a_module_nested_200_deep() -> None:
    model: nn.Module = nn.Linear(4, 4)
    for _ in range(200):
        model = nn.Sequential(model)
    report = rooflens.analyze(model, input_size=(1, 4))
    assert report.total().macs == 16
    assert len(report.modules) == 201


def test_lazy_modules_that_are_not_initialised_get_one_clear_line() -> None:
    with pytest.raises(InputError, match="'weight' of LazyLinear is not initialised .* run the model once"):
        rooflens.analyze(nn.LazyLinear(4), input_size=(2, 3))


def test_an_input_size_that_overflows() -> None:
    with pytest.raises(InputError, match="more than a tensor can address"):
        rooflens.analyze(nn.Linear(3, 3), input_size=(10**12, 10**12, 3))


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        ("bool", "dtype=bool is not a real floating-point dtype"),
        ("complex64", "dtype=complex64 is not a real floating-point dtype"),
        ("int64", "dtype=int64 is not a real floating-point dtype"),
        ("quint8", "dtype=quint8 is a quantized dtype"),
        ("float17", "'float17' is not a torch dtype"),
    ],
)
def test_dtypes_that_are_not_floating_point_get_one_clear_line(dtype: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        rooflens.analyze(nn.Linear(3, 3), input_size=(1, 3), dtype=dtype)


def test_integer_inputs_made_from_a_size() -> None:
    report = rooflens.analyze(nn.Embedding(10, 4), input_size=(2, 5), input_dtype="int64")
    assert report.inputs[0].dtype == "int64"


# ---- value checks on the meta device -------------------------------------------------------------------

transformers = pytest.importorskip("transformers")

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100}
HF_MODELS = {
    "bert": (transformers.BertModel, transformers.BertConfig, {"intermediate_size": 128}),
    "opt": (transformers.OPTForCausalLM, transformers.OPTConfig, {"ffn_dim": 128, "word_embed_proj_dim": 64}),
    "llama": (transformers.LlamaForCausalLM, transformers.LlamaConfig, {"intermediate_size": 128}),
}


def _hf(name: str, device: str, **extra: object) -> nn.Module:
    cls, config, sizes = HF_MODELS[name]
    with torch.device(device):
        return cls(config(**SMALL, **sizes, **extra)).eval()


def _text(device: str) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.zeros(2, 16, dtype=torch.long, device=device),
            "attention_mask": torch.ones(2, 16, dtype=torch.long, device=device)}


@pytest.mark.parametrize("name", list(HF_MODELS))
def test_hugging_face_models_with_an_attention_mask_on_meta(name: str) -> None:
    torch.manual_seed(0)
    on_meta = rooflens.analyze(_hf(name, "meta"), _text("meta"))
    with_weights = rooflens.analyze(_hf(name, "cpu"), _text("cpu"))
    assert on_meta.executed == with_weights.executed == "fake"
    assert on_meta.total() == with_weights.total() and on_meta.total().macs > 0


@pytest.mark.filterwarnings("ignore:_compile flag on create_block_mask:DeprecationWarning")  # transformers' own call
def test_a_value_check_on_meta_is_assumed_to_pass_and_listed_or_an_error() -> None:
    # transformers' flex-attention mask builder asks attention_mask.all() (is there padding?)
    model = _hf("llama", "meta", attn_implementation="flex_attention")
    report = rooflens.analyze(model, _text("meta"))
    assert any(d.startswith("assumed that a value check in module 'model' passes") for d in report.diagnostics)
    # flex attention is counted like the SDPA implementation of the same model: dense, the same MACs
    assert report.total().macs == rooflens.analyze(_hf("llama", "meta"), _text("meta")).total().macs
    with pytest.raises(ModelError, match="aten._local_scalar_dense .* depends on tensor values"):
        rooflens.analyze(model, _text("meta"), value_checks="error")
    with pytest.raises(InputError, match="value_checks='maybe'"):
        rooflens.analyze(model, _text("meta"), value_checks="maybe")


# ---- higher-order operators and nested tensors ---------------------------------------------------------


class Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8, bias=False)
        self.b = nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: self.b(self.a(t)), lambda t: self.a(t) * 2, (x,))


def test_cond_with_an_unknown_predicate_counts_the_costlier_branch() -> None:
    report = rooflens.analyze(Branches(), input_size=(2, 8))
    # true branch: two Linear(8, 8) on 2 rows = 2 x (2 x 8 x 8) = 256 MACs; false: one Linear = 128 MACs
    assert report.total().macs == 256
    assert {p: n.cumulative.macs for p, n in report.modules.items()} == {"": 256, "a": 128, "b": 128}
    assert any("torch.cond" in d and "the true branch" in d for d in report.diagnostics)


class Loop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = torch.zeros((), dtype=torch.long, device=x.device)
        return torch._higher_order_ops.while_loop(lambda i, t: i < 3, lambda i, t: (i + 1, self.a(t)), (start, x))[1]


def test_while_loop_counts_each_iteration_from_a_real_run() -> None:
    report = rooflens.analyze(Loop(), input_size=(2, 8))
    assert report.executed == "real"
    assert report.total().macs == 3 * 2 * 8 * 8  # three iterations of Linear(8, 8) on 2 rows: 384
    with torch.device("meta"):
        meta = Loop()
    with pytest.raises(ModelError, match="higher_order.while_loop .* depends on tensor values"):
        rooflens.analyze(meta, input_size=(2, 8))


class Flex(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        from torch.nn.attention.flex_attention import flex_attention

        return flex_attention(q, k, v)  # type: ignore[return-value]


def test_flex_attention_is_one_operator_counted_dense() -> None:
    report = rooflens.analyze(Flex(), input_size=[(1, 2, 16, 8), (1, 2, 32, 8), (1, 2, 32, 4)])
    (flex,) = [r for r in report.records if r.op == "higher_order.flex_attention"]
    # B·H·L·S·(E + Ev) = 1 x 2 x 16 x 32 x (8 + 4) = 12,288 MACs
    assert flex.cost.macs == 12_288 and flex.family == "attention"


def test_transformer_encoder_with_a_padding_mask_counts_the_dense_path() -> None:
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2).eval()
    x = torch.randn(2, 10, 32)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 7:] = True
    padded = rooflens.analyze(encoder, {"src": x, "src_key_padding_mask": mask})
    plain = rooflens.analyze(encoder, {"src": x})
    # per layer, 20 tokens: in-proj 20 x 32 x 96, out-proj 20 x 32 x 32, FFN 20 x (32 x 64 + 64 x 32),
    # attention 2 x 4 heads x 10 x 10 x (8 + 8); two layers
    per_layer = 20 * 32 * 96 + 20 * 32 * 32 + 20 * (32 * 64 + 64 * 32) + 2 * 4 * 10 * 10 * 16
    assert padded.total().macs == plain.total().macs == 2 * per_layer
    assert any("nested-tensor fast path" in d for d in padded.diagnostics)
    assert not any("nested-tensor fast path" in d for d in plain.diagnostics)
