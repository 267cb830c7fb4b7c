"""A small Mamba-style language model whose selective scan loops over the sequence in Python.

Written like the naive reference implementations people profile and share (mamba-minimal, the RWKV
"simple" reference): the recurrence ``h_t = exp(dt_t A) * h_{t-1} + dt_t B_t x_t``, ``y_t = h_t C_t``
runs as a Python ``for`` loop with a few small elementwise operators and one matrix product per step,
so a 512-token forward records thousands of tiny aten operators. The per-step work is what makes such
models slow to analyse: the operator count, not the arithmetic, dominates.

Defaults (``mamba_loop()``): vocabulary 256 (bytes), 4 layers, d_model 64, expand 2 (d_inner 128),
d_state 16, dt_rank 4, a depthwise causal convolution of width 4; input ``(1, 512)`` token ids.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class MambaBlock(nn.Module):
    """One selective-state-space block (Gu & Dao 2023), the scan written as a sequential loop."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4) -> None:
        super().__init__()
        d_inner = expand * d_model
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        xz = self.in_proj(x)
        u, z = xz.split(self.d_inner, dim=-1)
        u = F.silu(self.conv1d(u.transpose(1, 2))[..., :t].transpose(1, 2))
        dt, B, C = self.x_proj(u).split((self.dt_rank, self.d_state, self.d_state), dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (b, t, d_inner)
        return self.out_proj(self.scan(u, dt, B, C) * F.silu(z))

    def scan(self, u: torch.Tensor, dt: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        A = -torch.exp(self.A_log)  # (d_inner, d_state)
        b, t, _ = u.shape
        h = u.new_zeros(b, self.d_inner, self.d_state)
        ys = []
        for i in range(t):
            dt_i = dt[:, i].unsqueeze(-1)  # (b, d_inner, 1)
            decay = torch.exp(dt_i * A)
            h = decay * h + (dt_i * B[:, i].unsqueeze(1)) * u[:, i].unsqueeze(-1)
            ys.append(torch.matmul(h, C[:, i].unsqueeze(-1)).squeeze(-1))  # (b, d_inner)
        y = torch.stack(ys, dim=1)
        return y + u * self.D


class ResidualBlock(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.mixer = MambaBlock(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class MambaLoopLM(nn.Module):
    def __init__(self, vocab: int = 256, d_model: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(ResidualBlock(d_model) for _ in range(layers))
        self.norm_f = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm_f(x))


def mamba_loop(layers: int = 4, d_model: int = 64) -> MambaLoopLM:
    return MambaLoopLM(d_model=d_model, layers=layers)
