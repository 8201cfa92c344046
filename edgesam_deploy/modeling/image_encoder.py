"""RepViT-M1 image encoder with EdgeSAM's multi-scale fusion neck.

Input 1 x 3 x 1024 x 1024 (normalized, padded); output 1 x 256 x 64 x 64.
Module names follow the official checkpoint (``features.*``, ``fuse_stage2``,
``fuse_stage3.op_list.0``, ``neck.*``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d

UpsampleMode = Literal["bilinear", "bicubic"]

# (out channels, stride, squeeze-excite) for features[1..26]
REPVIT_M1_BLOCKS: list[tuple[int, int, bool]] = (
    [(48, 1, True), (48, 1, False), (48, 1, False)]
    + [(96, 2, False), (96, 1, True), (96, 1, False), (96, 1, False)]
    + [(192, 2, False)]
    + [(192, 1, i % 2 == 0 and i < 13) for i in range(15)]
    + [(384, 2, False), (384, 1, True), (384, 1, False)]
)
STAGE2_INDEX = 23  # features[23]: 192 x 64 x 64
STAGE3_INDEX = 26  # features[26]: 384 x 32 x 32


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to a multiple of ``divisor`` without going below 90% of it (timm rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2d_BN(nn.Sequential):
    """Conv2d without bias (``c``) followed by BatchNorm2d (``bn``)."""

    def __init__(
        self, cin: int, cout: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean_hw(x))))), reduction C -> make_divisible(C / 4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = make_divisible(channels * 0.25, 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(torch.relu(self.fc1(s)))
        return x * torch.sigmoid(s)


class RepVGGDW(nn.Module):
    """dw3x3_BN(x) + dw1x1_BN(x) + x; B x C x H x W -> same shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2d_BN(channels, channels, 3, 1, 1, groups=channels)
        self.conv1 = Conv2d_BN(channels, channels, 1, 1, 0, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x


class Residual(nn.Module):
    """x + m(x)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class RepViTBlock(nn.Module):
    """Token mixer (spatial) then channel mixer (1x1 FFN with expansion 2, residual)."""

    def __init__(self, cin: int, cout: int, stride: int, use_se: bool) -> None:
        super().__init__()
        se: nn.Module = SqueezeExcite(cin) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(
                Conv2d_BN(cin, cin, 3, 2, 1, groups=cin), se, Conv2d_BN(cin, cout, 1)
            )
        else:
            assert cin == cout
            self.token_mixer = nn.Sequential(RepVGGDW(cin), se)
        self.channel_mixer = Residual(
            nn.Sequential(Conv2d_BN(cout, 2 * cout, 1), nn.GELU(), Conv2d_BN(2 * cout, cout, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


class UpSample2x(nn.Module):
    """2x interpolation (align_corners=False) in ``bilinear`` or ``bicubic`` mode."""

    def __init__(self, mode: UpsampleMode) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=False)


class OpSequential(nn.Module):
    """A Sequential whose children live under ``op_list`` (the checkpoint's naming)."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class RepViTEncoder(nn.Module):
    """EdgeSAM image encoder: B x 3 x 1024 x 1024 -> B x 256 x 64 x 64."""

    def __init__(self, upsample_mode: UpsampleMode = "bicubic", embed_dim: int = 256) -> None:
        super().__init__()
        stem = nn.Sequential(Conv2d_BN(3, 24, 3, 2, 1), nn.GELU(), Conv2d_BN(24, 48, 3, 2, 1))
        layers: list[nn.Module] = [stem]
        cin = 48
        for cout, stride, use_se in REPVIT_M1_BLOCKS:
            layers.append(RepViTBlock(cin, cout, stride, use_se))
            cin = cout
        self.features = nn.ModuleList(layers)
        self.fuse_stage2 = nn.Conv2d(192, embed_dim, 1, bias=False)
        self.fuse_stage3 = OpSequential(
            [nn.Conv2d(384, embed_dim, 1, bias=False), UpSample2x(upsample_mode)]
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, embed_dim, 1, bias=False),
            LayerNorm2d(embed_dim),
            nn.Conv2d(embed_dim, embed_dim, 3, padding=1, bias=False),
            LayerNorm2d(embed_dim),
        )

    def set_upsample_mode(self, mode: UpsampleMode) -> None:
        """Switch the stage-3 upsampling (same weights for both modes)."""
        self.fuse_stage3.op_list[1].mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stage2 = None
        for i, f in enumerate(self.features):
            x = f(x)
            if i == STAGE2_INDEX:
                stage2 = x
        assert stage2 is not None
        x = self.fuse_stage2(stage2) + self.fuse_stage3(x)
        return self.neck(x)
