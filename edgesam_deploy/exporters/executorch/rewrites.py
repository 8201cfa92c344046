"""Same-function rewrites of the graphs that keep more of them inside the XNNPACK delegate.

XNNPACK (executorch 1.5) has no LayerNorm, averages only over the two innermost axes of a 4-D
tensor, and rejects a reshape with a symbolic size, so a dynamic point count N cut the decoder
into dozens of partitions (docs/executorch.md has the counts before and after):

- ``ReductionLayerNorm`` / ``ReductionLayerNorm2d``: the mean and the variance as a linear layer
  (or 1x1 conv) with weights 1/C, which XNNPACK runs as one GEMM.
- ``BatchOneAttention``: attention on 3-D heads x N x c tensors with ``bmm`` and one inferred
  reshape size, instead of 4-D matmuls that ``torch.export`` decomposes into expand and reshape
  with symbolic sizes. The graphs' batch is 1 by contract.
- ``Fp32LayerNorm``: in an fp16 graph, a norm computed in fp32 (the cast around it).
- ``TanhGelu``: in an fp16 graph, GELU in its tanh form (XNNPACK rejects fp16 GELU).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...modeling.common import LayerNorm2d
from ...modeling.transformer import Attention

_TANH_GELU_SCALE = 2 * math.sqrt(2 / math.pi)


class ReductionLayerNorm(nn.Module):
    """``nn.LayerNorm`` over the last axis, [..., C] -> [..., C], reductions as linear layers."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        channels = norm.normalized_shape[-1]
        self.register_buffer("average", torch.full((1, channels), 1.0 / channels))
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - F.linear(x, self.average)
        var = F.linear(centred * centred, self.average)
        return centred / torch.sqrt(var + self.eps) * self.weight + self.bias


class ReductionLayerNorm2d(nn.Module):
    """``LayerNorm2d`` over the channels of B x C x H x W, reductions as 1x1 convolutions."""

    def __init__(self, norm: LayerNorm2d) -> None:
        super().__init__()
        channels = norm.weight.shape[0]
        self.register_buffer("average", torch.full((1, channels, 1, 1), 1.0 / channels))
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - F.conv2d(x, self.average)
        var = F.conv2d(centred * centred, self.average)
        x = centred / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class BatchOneAttention(nn.Module):
    """``Attention`` for batch 1: q [1, Nq, C], k / v [1, Nk, C] -> [1, Nq, C], heads as bmm."""

    def __init__(self, attention: Attention) -> None:
        super().__init__()
        self.heads = attention.num_heads
        self.q_proj, self.k_proj = attention.q_proj, attention.k_proj
        self.v_proj, self.out_proj = attention.v_proj, attention.out_proj

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """[1, N, C] -> [heads, N, C / heads]."""
        return x.reshape(-1, self.heads, x.shape[-1] // self.heads).transpose(0, 1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (
            self._split(self.q_proj(q)),
            self._split(self.k_proj(k)),
            self._split(self.v_proj(v)),
        )
        attn = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])
        out = torch.bmm(torch.softmax(attn, dim=-1), v)  # heads x Nq x c
        out = out.transpose(0, 1).contiguous()  # Nq x heads x c
        return self.out_proj(out.view(1, -1, self.heads * out.shape[-1]))


class TanhGelu(nn.Module):
    """GELU in its tanh form written as x * sigmoid(2 sqrt(2 / pi) (x + 0.044715 x^3)): ops XNNPACK
    runs in fp16 (its GELU is fp32 only), within 5e-4 of the exact GELU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(_TANH_GELU_SCALE * (x + 0.044715 * x * x * x))


class Fp32LayerNorm(nn.Module):
    """Runs ``norm`` in fp32 inside an fp16 graph (fp16 in, fp16 out)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


Rewrite = Callable[[nn.Module], nn.Module | None]


def _delegable(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.LayerNorm):
        return ReductionLayerNorm(module)
    if isinstance(module, LayerNorm2d):
        return ReductionLayerNorm2d(module)
    if isinstance(module, Attention):
        return BatchOneAttention(module)
    return None


def _norms_in_fp32(module: nn.Module) -> nn.Module | None:
    if isinstance(module, (ReductionLayerNorm, ReductionLayerNorm2d, nn.LayerNorm, LayerNorm2d)):
        return Fp32LayerNorm(module)
    return None


def _gelu_tanh(module: nn.Module) -> nn.Module | None:
    return TanhGelu() if isinstance(module, nn.GELU) else None


def _replace(module: nn.Module, rewrite: Rewrite) -> int:
    """Replace, in place and depth first, every child ``rewrite`` maps to a module; -> count."""
    count = 0
    for name, child in module.named_children():
        new = rewrite(child)
        if new is None:
            count += _replace(child, rewrite)
        else:
            setattr(module, name, new)
            count += 1
    return count


def delegable(graph: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``graph`` with the XNNPACK rewrites above; -> (copy, modules replaced)."""
    graph = copy.deepcopy(graph)
    return graph, _replace(graph, _delegable)


def norms_in_fp32(graph: nn.Module) -> int:
    """Make every LayerNorm of an fp16 ``graph`` compute in fp32 (in place); -> count."""
    return _replace(graph, _norms_in_fp32)


def tanh_gelu(graph: nn.Module) -> int:
    """Replace every GELU of ``graph`` by ``TanhGelu`` (in place); -> count."""
    return _replace(graph, _gelu_tanh)
