"""Generated networks for in-context latency samples: random stacks of the blocks real networks are made of.

Each network is a stem convolution, a stack of blocks of one **template** at decreasing resolution, and a
classifier head (global average pool, linear), or for the transformer template a patch embedding, encoder
blocks and a head. Channels, resolutions, kernels, strides, groups, expansion ratios and activations are
drawn at random from the values real networks use. Every operator in such a network reads what the
previous one wrote, and every block has its own weights, so an operator is timed as it runs inside a model
(not the same cache-hot tensors again and again).

Templates (``TEMPLATES``), and the model families each imitates (for leave-one-family-out validation: a
predictor judged on a family is trained without the networks built to imitate it):

==============  =====================================================  ==============================
template        block                                                  imitates
==============  =====================================================  ==============================
``conv``        k x k convolution (random kernel, stride; dense,       (none: generic)
                depthwise or grouped), batch norm, activation,
                sometimes squeeze-excitation, sometimes residual
``basic``       two 3x3 convolutions with batch norm, residual add     resnet
``bottleneck``  1x1 reduce, 3x3 (groups 1 or of 8-64 channels), 1x1    resnet, regnet
                expand, batch norms, residual add, optional SE
``mbconv``      1x1 expand (ratio 1-6), depthwise k x k, optional      mobilenet, mnasnet, efficientnet
                squeeze-excitation, 1x1 project, residual add
``dense``       batch norm, ReLU, 1x1, batch norm, ReLU, 3x3, concat    densenet
``convnext``    depthwise 7x7, layer norm, linear 4x, GELU, linear,     convnext
                layer scale, residual add; channels-last activations
                (channel norms after the stem and at each change
                of stage, as in torchvision)
``transformer`` layer norm, multi-head attention, residual, layer       vit, bert
                norm, MLP with GELU, residual
``fire``        1x1 squeeze, parallel 1x1 and 3x3 expand, concat        squeezenet
``shuffle``     channel split, 1x1, depthwise 3x3, 1x1, concat,         shufflenet
                channel shuffle
``inception``   parallel 1x1, 3x3, 5x5 and pooled branches, concat      inception
``plain``       3x3 convolution, ReLU, max pool                         vgg
==============  =====================================================  ==============================
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

TEMPLATES: dict[str, tuple[str, ...]] = {
    "conv": (),
    "basic": ("resnet",),
    "bottleneck": ("resnet", "regnet"),
    "mbconv": ("mobilenet", "mnasnet", "efficientnet"),
    "dense": ("densenet",),
    "convnext": ("convnext",),
    "transformer": ("vit", "bert"),
    "fire": ("squeezenet",),
    "shuffle": ("shufflenet",),
    "inception": ("inception",),
    "plain": ("vgg",),
}
_ACTS: tuple[Callable[[], nn.Module], ...] = (
    lambda: nn.ReLU(inplace=True), lambda: nn.ReLU6(inplace=True), lambda: nn.SiLU(inplace=True),
    lambda: nn.Hardswish(), lambda: nn.GELU(),
)


@dataclass(frozen=True)
class Generated:
    """A generated network: the module, its input shape, its template and the families it imitates."""

    name: str
    template: str
    imitates: tuple[str, ...]
    model: nn.Module
    input_size: tuple[int, ...]


GENERIC_SHARE = 3  # generic networks per network of another template (see ``schedule``)


def schedule(per_template: int) -> list[tuple[str, int]]:
    """(template, seed) of the networks to sample: ``per_template`` of every template, ``GENERIC_SHARE`` times
    as many of the generic ``conv``, which imitates no family and so is in every leave-one-family-out
    training set (its gated and depthwise blocks cover what a held-out family's own template would have).
    Ordered round by round, so that a time budget cuts every template evenly."""
    jobs = []
    for round_ in range(per_template):
        for template, imitates in TEMPLATES.items():
            share = 1 if imitates else GENERIC_SHARE
            jobs += [(template, share * round_ + i) for i in range(share)]
    return jobs


def generate(template: str, *, seed: int, batch: int = 1) -> Generated:
    """A random network of ``template`` (see the module docstring), reproducible from ``seed``."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown block template {template!r}; known: {', '.join(TEMPLATES)}")
    rng = random.Random(f"{template}:{seed}")
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's random state is left as it was
        torch.manual_seed(seed)
        if template == "transformer":
            model, size = _transformer(rng, batch)
        else:
            model, size = _cnn(rng, template, batch)
    model.eval()
    return Generated(f"{template}-{seed}-b{batch}", template, TEMPLATES[template], model, size)


def _act(rng: random.Random) -> nn.Module:
    return rng.choice(_ACTS)()


def _channels(rng: random.Random, lo: int, hi: int, step: int = 8) -> int:
    """A channel count in about [lo, hi], log-uniform, a multiple of ``step`` or (a third of the time, as
    ResNets, VGGs and transformers have them) a power of two."""
    c = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if rng.random() < 1 / 3:
        return max(step, 1 << round(math.log2(c)))
    return max(step, round(c / step) * step)


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: nn.Module | None = None):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act)
        super().__init__(*layers)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None, act: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.shortcut, self.act = body, shortcut, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x) + (self.shortcut(x) if self.shortcut is not None else x)
        out: torch.Tensor = self.act(y) if self.act is not None else y
        return out


class _SE(nn.Module):
    """Squeeze-excitation: a channel gate from the global average (a mean, or adaptive average pooling as
    torchvision's blocks have it), a sigmoid or (as MobileNetV3's) a hard sigmoid."""

    def __init__(self, c: int, reduced: int, rng: random.Random) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1) if rng.random() < 0.5 else None
        self.fc1, self.fc2 = nn.Conv2d(c, reduced, 1), nn.Conv2d(reduced, c, 1)
        self.act = nn.ReLU(inplace=True) if rng.random() < 0.5 else nn.SiLU(inplace=True)
        self.gate = nn.Sigmoid() if rng.random() < 0.6 else nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x) if self.pool is not None else x.mean((2, 3), keepdim=True)
        out: torch.Tensor = x * self.gate(self.fc2(self.act(self.fc1(s))))
        return out


class _Concat(nn.Module):
    def __init__(self, *branches: nn.Module, keep_input: bool = False) -> None:
        super().__init__()
        self.branches, self.keep_input = nn.ModuleList(branches), keep_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        return torch.cat([x, *outs] if self.keep_input else outs, 1)


class _Shuffle(nn.Module):
    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        half = c // 2
        self.stride = stride
        if stride == 1:
            self.branch = nn.Sequential(_ConvBN(half, half, 1, act=nn.ReLU(inplace=True)),
                                        _ConvBN(half, half, 3, 1, groups=half),
                                        _ConvBN(half, half, 1, act=nn.ReLU(inplace=True)))
        else:
            self.left = nn.Sequential(_ConvBN(c, c, 3, 2, groups=c), _ConvBN(c, half, 1, act=nn.ReLU(inplace=True)))
            self.branch = nn.Sequential(_ConvBN(c, half, 1, act=nn.ReLU(inplace=True)),
                                        _ConvBN(half, half, 3, 2, groups=half),
                                        _ConvBN(half, half, 1, act=nn.ReLU(inplace=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch(b)), 1)
        else:
            out = torch.cat((self.left(x), self.branch(x)), 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class _LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an NCHW tensor, as torchvision's ConvNeXt has it (permute, norm, permute
    back): its output keeps the channels-last strides, so the convolutions after it write channels-last and
    the blocks' permuted tensors are contiguous (their layer norms do not copy first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXt(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1, self.act, self.fc2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(self.act(self.fc1(self.norm(y)))) * self.gamma
        out: torch.Tensor = x + y.permute(0, 3, 1, 2)
        return out


def _block(rng: random.Random, template: str, cin: int, cout: int, stride: int) -> tuple[nn.Module, int]:
    """One block of ``template`` from ``cin`` channels; returns (block, its output channels)."""
    if template == "conv":  # generic: any convolution, sometimes gated (squeeze-excitation), sometimes residual
        k = rng.choice((1, 3, 3, 5, 7))
        sort = rng.choice(("dense", "dense", "depthwise", "depthwise", "grouped"))
        groups = 1
        if sort == "depthwise":
            cout, groups = cin, cin
        elif sort == "grouped" and cin % 16 == 0 and cin > 16:  # 16 channels per group (as RegNet's and ResNeXt's)
            groups = cin // 16
            cout = max(groups, cout - cout % groups)
        layers: list[nn.Module] = [_ConvBN(cin, cout, k, stride, groups, _act(rng))]
        if rng.random() < 0.3:
            layers.append(_SE(cout, max(8, cin // 4), rng))
        body = nn.Sequential(*layers)
        return (_Residual(body, None) if stride == 1 and cin == cout and rng.random() < 0.5 else body), cout
    if template == "basic":
        short = None if stride == 1 and cin == cout else _ConvBN(cin, cout, 1, stride)
        body = nn.Sequential(_ConvBN(cin, cout, 3, stride, act=nn.ReLU(inplace=True)), _ConvBN(cout, cout, 3))
        return _Residual(body, short, nn.ReLU(inplace=True)), cout
    if template == "bottleneck":
        width = _channels(rng, max(8, cout // 4), max(16, cout), 8)
        gw = rng.choice((0, 8, 16, 32, 64))
        groups = width // gw if gw and width % gw == 0 and width > gw else 1
        layers = [_ConvBN(cin, width, 1, act=nn.ReLU(inplace=True)),
                  _ConvBN(width, width, 3, stride, groups, nn.ReLU(inplace=True))]
        if rng.random() < 0.4:
            layers.append(_SE(width, max(8, cin // 4), rng))
        layers.append(_ConvBN(width, cout, 1))
        short = None if stride == 1 and cin == cout else _ConvBN(cin, cout, 1, stride)
        return _Residual(nn.Sequential(*layers), short, nn.ReLU(inplace=True)), cout
    if template == "mbconv":
        ratio = rng.choice((1, 3, 4, 6, 6))
        k = rng.choice((3, 3, 5))
        hidden = cin * ratio
        act = _act(rng)
        layers = [_ConvBN(cin, hidden, 1, act=act)] if ratio > 1 else []
        layers.append(_ConvBN(hidden, hidden, k, stride, hidden, _act(rng)))
        if rng.random() < 0.5:
            layers.append(_SE(hidden, max(8, cin // 4), rng))
        layers.append(_ConvBN(hidden, cout, 1))
        body = nn.Sequential(*layers)
        return (_Residual(body, None) if stride == 1 and cin == cout else body), cout
    if template == "dense":
        growth = rng.choice((12, 24, 32, 48))
        layers = []
        c = cin
        for _ in range(rng.randint(2, 6)):
            layers.append(_Concat(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                                nn.Conv2d(c, 4 * growth, 1, bias=False), nn.BatchNorm2d(4 * growth),
                                                nn.ReLU(inplace=True), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)),
                                  keep_input=True))
            c += growth
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, cout, 1, bias=False)]
        if stride > 1:
            layers.append(nn.AvgPool2d(2, 2))
        return nn.Sequential(*layers), cout
    if template == "convnext":  # a change of stage: a channel norm and a convolution, as in torchvision's
        down = [nn.Conv2d(cin, cout, 2, 2)] if stride > 1 else [nn.Conv2d(cin, cout, 1)] if cin != cout else []
        norm = [_LayerNorm2d(cin)] if down else []
        return nn.Sequential(*norm, *down, *[_ConvNeXt(cout) for _ in range(rng.randint(1, 3))]), cout
    if template == "fire":
        squeeze = max(8, cout // 8)
        expand = cout // 2
        layers = [nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True),
                  _Concat(nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU(inplace=True)),
                          nn.Sequential(nn.Conv2d(squeeze, cout - expand, 3, padding=1), nn.ReLU(inplace=True)))]
        if stride > 1:
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        return nn.Sequential(*layers), cout
    if template == "shuffle":
        cout = cout - cout % 4 or 8
        pre = nn.Identity() if cin == cout or stride > 1 else _ConvBN(cin, cout, 1, act=nn.ReLU(inplace=True))
        if stride > 1:
            cmid = cin - cin % 2
            pre = _ConvBN(cin, cmid, 1) if cmid != cin else nn.Identity()
            blk: nn.Module = _Shuffle(cmid, 2)  # 2 x cmid/2 = cmid channels
            return nn.Sequential(pre, blk, _ConvBN(cmid, cout, 1, act=nn.ReLU(inplace=True))), cout
        return nn.Sequential(pre, *[_Shuffle(cout, 1) for _ in range(rng.randint(1, 3))]), cout
    if template == "inception":
        q = max(8, cout // 4)
        branches = (
            _ConvBN(cin, q, 1, act=nn.ReLU(inplace=True)),
            nn.Sequential(_ConvBN(cin, q // 2 or 8, 1, act=nn.ReLU(inplace=True)),
                          _ConvBN(q // 2 or 8, q, 3, act=nn.ReLU(inplace=True))),
            nn.Sequential(_ConvBN(cin, q // 4 or 8, 1, act=nn.ReLU(inplace=True)),
                          _ConvBN(q // 4 or 8, q, 5, act=nn.ReLU(inplace=True))),
            nn.Sequential(nn.MaxPool2d(3, 1, 1), _ConvBN(cin, cout - 3 * q, 1, act=nn.ReLU(inplace=True))),
        )
        layers = [_Concat(*branches)]
        if stride > 1:
            layers.append(nn.MaxPool2d(3, 2, 1))
        return nn.Sequential(*layers), cout
    if template == "plain":
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
        if rng.random() < 0.5:
            layers += [nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
        if stride > 1:
            layers.append(nn.MaxPool2d(2, 2))
        return nn.Sequential(*layers), cout
    raise ValueError(template)


def _cnn(rng: random.Random, template: str, batch: int) -> tuple[nn.Module, tuple[int, ...]]:
    resolution = rng.choice((32, 56, 64, 96, 112, 128, 160, 224))
    stem_out = _channels(rng, 16, 64)
    stem_stride = 2 if resolution >= 96 else 1
    layers: list[nn.Module] = [_ConvBN(3, stem_out, 3, stem_stride, act=nn.ReLU(inplace=True))]
    if template == "convnext":  # the stem's channel norm: channels-last from here on, as in torchvision
        layers.append(_LayerNorm2d(stem_out))
    c, size = stem_out, resolution // stem_stride
    stages = rng.randint(2, 4)
    for stage in range(stages):
        widest = min(1024, max(32, 7168 // max(1, size // 2 if stage else size)))  # real networks: wider as they shrink
        cout = _channels(rng, min(max(16, c), widest), widest)
        for i in range(rng.randint(1, 3)):
            stride = 2 if i == 0 and stage > 0 and size >= 8 else 1
            block, c_new = _block(rng, template, c, cout if i == 0 else c, stride)
            layers.append(block)
            c = c_new
            size = (size + stride - 1) // stride
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, rng.choice((10, 100, 1000)))]
    return nn.Sequential(*layers), (batch, 3, resolution, resolution)


class _Encoder(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        out: torch.Tensor = x + self.mlp(self.ln2(x))
        return out


class _ViT(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, depth: int, patch: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(*[_Encoder(dim, heads, mlp) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), 1)
        out: torch.Tensor = self.head(self.norm(self.blocks(x))[:, 0])
        return out


def _transformer(rng: random.Random, batch: int) -> tuple[nn.Module, tuple[int, ...]]:
    heads = rng.choice((2, 4, 6, 8, 12))
    dim = heads * rng.choice((32, 48, 64))
    patch = rng.choice((8, 16, 32))
    resolution = patch * rng.choice((4, 7, 8, 14))
    model = _ViT(dim, heads, dim * rng.choice((2, 3, 4)), rng.randint(1, 4), patch, rng.choice((10, 1000)))
    return model, (batch, 3, resolution, resolution)
