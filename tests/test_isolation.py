"""The isolation promise: an analysis leaves everything the user owns exactly as it was.

Each model below has a pattern found in real models that broke the promise before the harness analysed
a structural copy (see issue 10): attributes a forward stores on itself, old-style spectral and weight
norm, a dynamic rotary cache, a raising forward, cache objects as inputs, threads, and global state.
Every check is by traversal of the model and the inputs, before and after, and by real forwards.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import rooflens
from rooflens.errors import ModelError

from _helpers import tiny_net
from _state import assert_same_state, fakes, state


class RotaryCache(nn.Module):
    """Caches cos/sin tables on itself in the forward, as rotary-embedding modules do."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self._cos_cached: torch.Tensor | None = None
        self.max_seq_len_cached = 0
        self.last: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if self._cos_cached is None or n > self.max_seq_len_cached:  # the dynamic-RoPE pattern
            self.max_seq_len_cached = n
            pos = torch.arange(n, dtype=x.dtype, device=x.device)
            self._cos_cached = torch.cos(pos)[:, None]
        y = self.proj(x) * self._cos_cached[:n]
        self.last = y  # self.last = y: a forward that keeps its output
        return y


class DataDependentRotary(RotaryCache):
    """The same, with an operator whose output depends on values: rooflens falls back to a real run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y[torch.nonzero(y > 0, as_tuple=True)]


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.inner.seen = x  # type: ignore[assignment]
        raise ValueError("this model always fails")


def _norms() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.Sequential(nn.utils.spectral_norm(nn.Linear(8, 8)), nn.utils.weight_norm(nn.Linear(8, 8))).eval()


ANALYSES: dict[str, Callable[[nn.Module, torch.Tensor], Any]] = {
    "analyze": lambda m, x: rooflens.analyze(m, x),
    "backward": lambda m, x: rooflens.analyze(m, x, backward=True),
    "memory": lambda m, x: rooflens.memory(m, x),
    "train-step": lambda m, x: rooflens.memory(m, x, train=True, optimizer="adam"),
    "measure": lambda m, x: rooflens.measure(m, x, warmup=1, iters=3),  # real forwards, on a copy too
}
MODELS: dict[str, Callable[[], nn.Module]] = {
    "rotary-cache": RotaryCache,
    "data-dependent-rotary": DataDependentRotary,
    "spectral-and-weight-norm": _norms,
}


@pytest.mark.parametrize("analysis", list(ANALYSES))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_analysis_changes_nothing_the_user_owns(model_name: str, analysis: str) -> None:
    torch.manual_seed(0)
    model = MODELS[model_name]()
    x = torch.randn(2, 5, 8)
    model(x)  # the caches hold real tensors from a real forward before the analysis
    expected = model(x)
    before = state(model, x)
    ANALYSES[analysis](model, x)
    assert_same_state(before, state(model, x))
    assert fakes(model, x) == []
    again = model(x)
    assert type(again) is torch.Tensor and torch.equal(again, expected)
    torch.save(model, __import__("io").BytesIO())  # a FakeTensor anywhere in the model would fail here


def test_a_real_run_fall_back_is_reported() -> None:
    report = rooflens.analyze(DataDependentRotary(), torch.randn(2, 5, 8))
    assert report.executed == "real"


@pytest.mark.parametrize("analysis", ["analyze", "memory"])
def test_a_forward_that_raises_changes_nothing(analysis: str) -> None:
    model = Raises()
    x = torch.randn(2, 4)
    before = state(model, x)
    with pytest.raises(ModelError, match="this model always fails"):
        ANALYSES[analysis](model, x)
    assert_same_state(before, state(model, x))
    assert model.calls == 0 and "seen" not in vars(model.inner)


class Cache:
    """A non-pytree container of tensors that the forward grows, like a transformers cache."""

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = [torch.zeros(1, 3, 4)]

    def update(self, k: torch.Tensor) -> torch.Tensor:
        self.keys[0] = torch.cat([self.keys[0], k], dim=1)
        return self.keys[0]


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        keys = cache.update(self.k(x))
        return x @ keys.transpose(1, 2)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_cache_objects_in_the_inputs_are_copied_and_faked(device: str) -> None:
    model = Decoder().to(device)
    cache = Cache()
    cache.keys[0] = cache.keys[0].to(device)
    x = torch.randn(1, 1, 4, device=device)
    before = state(model, x, cache)
    report = rooflens.analyze(model, {"x": x, "cache": cache})
    assert_same_state(before, state(model, x, cache))
    assert fakes(model, x, cache) == [] and cache.keys[0].shape == (1, 3, 4)
    # x @ keys^T with 3 + 1 = 4 keys: 1 x 4 x 4 = 16 MACs; k: 1 x 4 x 4 = 16 MACs
    assert report.total().macs == 16 + 16


def test_a_meta_llama_decode_step_with_a_meta_dynamic_cache() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=128,
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg).eval()
    cache = transformers.DynamicCache(config=cfg)
    for layer in range(2):
        kv = torch.empty(1, 2, 256, 16, device="meta")
        cache.update(kv, kv, layer)
    ids = torch.zeros(1, 1, dtype=torch.long, device="meta")
    before = state(model, ids, cache)
    report = rooflens.analyze(model, {"input_ids": ids, "past_key_values": cache, "use_cache": True})
    assert_same_state(before, state(model, ids, cache))
    assert cache.get_seq_length() == 256
    attention = [r for r in report.records if "attention" in r.op]
    assert len(attention) == 2 and all(r.inputs[1].shape == (1, 2, 257, 16) for r in attention)
    # per layer: q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128 each, down 128x64; then lm_head 64x128
    per_layer = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 3 * 64 * 128
    # attention of one query: 4 heads x (257 keys x 16 for q.k + 257 x 16 for p.v)
    attention_macs = 4 * (257 * 16 + 257 * 16)
    assert report.total().macs == 2 * (per_layer + attention_macs) + 64 * 128


# ---- threads -------------------------------------------------------------------------------------------


def test_a_serving_thread_sees_nothing_of_ten_analyses() -> None:
    model = tiny_net()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    errors: list[BaseException] = []
    wrong = 0
    done = threading.Event()

    def serve() -> None:
        nonlocal wrong
        try:
            while not done.is_set():
                with torch.no_grad():
                    y = model(x)
                wrong += type(y) is not torch.Tensor or not torch.equal(y, expected)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    server = threading.Thread(target=serve)
    server.start()
    try:
        reports = [rooflens.analyze(model, input_size=(1, 3, 16, 16)) for _ in range(10)]
    finally:
        done.set()
        server.join()
    assert errors == [] and wrong == 0
    assert len({r.total() for r in reports}) == 1


def test_four_threads_analysing_one_model_get_identical_reports() -> None:
    model = tiny_net()
    before = state(model)
    results: list[Any] = [None] * 4
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        results[i] = rooflens.analyze(model, input_size=(1, 3, 16, 16))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    single = rooflens.analyze(model, input_size=(1, 3, 16, 16))
    for r in results:
        assert r is not None
        assert r.to_dict() == single.to_dict()
    assert_same_state(before, state(model))
    assert fakes(model) == []


# ---- global state --------------------------------------------------------------------------------------


def test_the_real_run_fall_back_leaves_the_rng_alone() -> None:
    model = nn.Sequential(nn.Dropout(0.5), DataDependentRotary()).train()
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    report = rooflens.analyze(model, input_size=(2, 5, 8))
    assert report.executed == "real"
    assert torch.equal(torch.rand(3), expected)


def test_inside_inference_mode_the_counts_are_those_of_a_plain_call() -> None:
    model = tiny_net()
    plain = rooflens.analyze(model, input_size=(1, 3, 16, 16), backward=True)
    with torch.inference_mode():
        x = torch.randn(1, 3, 16, 16)
        inside = rooflens.analyze(model, input_size=(1, 3, 16, 16), backward=True)
        with_tensor = rooflens.analyze(model, x)
    assert inside.to_dict() == plain.to_dict()
    assert with_tensor.total() == rooflens.analyze(model, input_size=(1, 3, 16, 16)).total()


def test_inside_a_users_fake_tensor_mode() -> None:
    model = tiny_net()
    expected = rooflens.analyze(model, input_size=(1, 3, 16, 16))
    with FakeTensorMode():
        report = rooflens.analyze(model, input_size=(1, 3, 16, 16))
    assert report.to_dict() == expected.to_dict()
    assert report.params.nonzero == expected.params.nonzero is not None


def test_a_shape_error_prints_no_torch_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(ModelError, match="same reduction dim"):
        rooflens.analyze(nn.Linear(4, 5), input_size=(2, 3))
    assert [r for r in caplog.records if r.name.startswith("torch")] == []
    assert logging.getLogger("torch._subclasses.fake_tensor").filters == []


def test_a_hook_that_keeps_outputs_in_the_users_list() -> None:
    model = tiny_net()
    kept: list[torch.Tensor] = []
    model.fc.register_forward_hook(lambda module, args, out: kept.append(out))
    before = state(model, kept)
    rooflens.analyze(model, input_size=(1, 3, 16, 16))
    assert kept == []
    assert_same_state(before, state(model, kept))


# ---- state reached in less obvious ways (found by review) ----------------------------------------------


class Slotted:
    __slots__ = ("last", "n")

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None
        self.n = 0


class Reaches(nn.Module):
    """Writes through a slotted object, a weak reference to its parent, a dict keyed by modules, a bound
    builtin method and a partial."""

    def __init__(self, sink: list[torch.Tensor], store: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.state = Slotted()
        self.route = {self.a: "a"}
        self.emit = sink.append
        self.keep = functools.partial(store.__setitem__, "out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.route:
            module.seen = True  # type: ignore[assignment]
            x = module(x)
        self.state.last, self.state.n = x, self.state.n + 1
        self._parent().child_out = x  # type: ignore[misc]
        self.emit(x)
        self.keep(x)
        return x


def test_state_behind_slots_weak_references_dict_keys_builtins_and_partials() -> None:
    sink: list[torch.Tensor] = []
    store: dict[str, torch.Tensor] = {}
    outer = nn.Module()
    outer.inner = Reaches(sink, store)
    outer.inner._parent = weakref.ref(outer)
    kept: list[torch.Tensor] = []

    def hook(module: nn.Module, args: Any, out: torch.Tensor, kept: list[torch.Tensor] = kept) -> None:
        kept.append(out)  # a hook whose state is a default argument

    outer.inner.a.register_forward_hook(hook)
    x = torch.randn(2, 4)
    before = state(outer, x, sink, store, kept)
    report = rooflens.analyze(outer.inner, x)
    assert_same_state(before, state(outer, x, sink, store, kept))
    assert fakes(outer, sink, store, kept) == [] and sink == [] and store == {} and kept == []
    assert report.modules["a"].calls == 1  # the dict's key is the copy of `a`: its call is attributed


class Aliased(nn.Module):
    """One module under two names, and a plain attribute that is a view of a weight."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 4, bias=False)
        self.dec = self.enc
        self.w_t = self.enc.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.enc(x)
        if self.dec is not self.enc:  # identity holds in the copy: one copy per module
            y = self.dec(y)
        return y @ self.w_t


def test_identity_and_views_of_weights_survive_the_copy() -> None:
    report = rooflens.analyze(Aliased(), input_size=(2, 4), weight_bits=4)
    # enc once (2 x 4 x 4 = 32 MACs) and y @ w_t (32 MACs): not a second call through `dec`
    assert report.total().macs == 64 and len(report.records) == 2
    mm = report.records[-1]  # y @ w_t (enc's own product is the first record, also an aten.mm)
    assert mm.op == "aten.mm" and [t.kind.value for t in mm.inputs] == ["activation", "parameter"]
    # bytes: activation 2 x 4 x 4 B + weight 16 x 4 bits + output 2 x 4 x 4 B = 32 + 8 + 32
    assert mm.cost.bytes == 72


def test_overlapping_real_runs_leave_the_generator_as_it_was() -> None:
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    models = [DataDependentRotary() for _ in range(3)]  # built before: building draws from the generator
    torch.manual_seed(7)
    barrier = threading.Barrier(3)

    def work(model: nn.Module) -> None:
        barrier.wait()
        rooflens.analyze(model, input_size=(2, 5, 8))  # real runs (a value-dependent op)

    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(torch.rand(4), expected)
