"""SAM mask decoder: IoU token + 4 mask tokens, hypernetwork MLPs, 4x upscaling to 256 x 256."""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer

NUM_MASK_TOKENS = 4


class MaskDecoder(nn.Module):
    """(image 1 x 256 x 64 x 64, pe 1 x 256 x 64 x 64, sparse B x N x 256, dense B x 256 x 64 x 64)
    -> (low-res logits B x 4 x 256 x 256, IoU predictions B x 4)."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(dim=dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(NUM_MASK_TOKENS, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(NUM_MASK_TOKENS)
        )
        self.iou_prediction_head = MLP(dim, 256, NUM_MASK_TOKENS, 3)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All four masks: B x 4 x 256 x 256 logits and B x 4 IoU predictions."""
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        src = image_embeddings.expand(b, -1, -1, -1) + dense
        pos = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1 : 1 + NUM_MASK_TOKENS, :]
        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack(
            [mlp(mask_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        _, c2, h2, w2 = up.shape
        masks = (hyper @ up.reshape(b, c2, h2 * w2)).reshape(b, NUM_MASK_TOKENS, h2, w2)
        return masks, self.iou_prediction_head(iou_out)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        num_masks: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_masks`` 1 -> token 0; 3 -> tokens 1..3; 4 -> all."""
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse, dense)
        sel = {1: slice(0, 1), 3: slice(1, None), 4: slice(0, None)}[num_masks]
        return masks[:, sel], iou[:, sel]


def stability_score(
    logits: torch.Tensor, threshold: float = 0.0, offset: float = 1.0
) -> torch.Tensor:
    """count(logits > t + o) / count(logits > t - o) over the last two axes: ... x H x W -> ...

    Counts are float32 sums (exact up to 2**24), so exported graphs need no integer ops.
    """
    inter = (logits > threshold + offset).to(torch.float32).flatten(-2).sum(-1)
    union = (logits > threshold - offset).to(torch.float32).flatten(-2).sum(-1)
    return inter / union
