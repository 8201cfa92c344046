"""Deployment re-parameterization: fold Conv+BN and RepVGGDW branches into single convs.

The folded encoder computes the same function (within ~1e-5) with fewer ops; module names change,
so it is for export, never for loading checkpoints.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .image_encoder import Conv2d_BN, RepVGGDW, RepViTEncoder


@torch.no_grad()
def fold_conv_bn(m: Conv2d_BN) -> nn.Conv2d:
    """Conv(no bias) + BN -> one Conv2d with bias (eval-mode BN statistics)."""
    c, bn = m.c, m.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv = nn.Conv2d(
        c.in_channels,
        c.out_channels,
        c.kernel_size,
        c.stride,
        c.padding,
        groups=c.groups,
        bias=True,
    )
    conv.weight.copy_(c.weight * scale[:, None, None, None])
    conv.bias.copy_(bn.bias - bn.running_mean * scale)
    return conv


@torch.no_grad()
def fold_repvggdw(m: RepVGGDW) -> nn.Conv2d:
    """dw3x3_BN + dw1x1_BN + identity -> one depthwise 3x3 conv with bias."""
    k3 = fold_conv_bn(m.conv)
    k1 = fold_conv_bn(m.conv1)
    identity = torch.zeros_like(k1.weight)
    identity[:, 0, 0, 0] = 1.0
    k3.weight.add_(F.pad(k1.weight + identity, [1, 1, 1, 1]))
    k3.bias.add_(k1.bias)
    return k3


def _fold_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, RepVGGDW):
            setattr(module, name, fold_repvggdw(child))
        elif isinstance(child, Conv2d_BN):
            setattr(module, name, fold_conv_bn(child))
        else:
            _fold_children(child)


def reparameterize_encoder(encoder: RepViTEncoder) -> RepViTEncoder:
    """Return a folded copy of ``encoder`` (eval mode); the original is left untouched."""
    folded = copy.deepcopy(encoder).eval()
    _fold_children(folded)
    return folded
