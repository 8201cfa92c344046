"""The EdgeSAM model: image encoder + prompt encoder + mask decoder, official key layout."""
from __future__ import annotations

import torch
from torch import nn

from .image_encoder import RepViTEncoder, UpsampleMode
from .mask_decoder import MaskDecoder, stability_score
from .prompt_encoder import PromptEncoder

MASK_THRESHOLD = 0.0
STABILITY_OFFSET = 1.0


class EdgeSam(nn.Module):
    """State-dict compatible with ``edge_sam.pth`` (prefixes image_encoder., prompt_encoder., mask_decoder.)."""

    def __init__(self, upsample_mode: UpsampleMode = "bicubic") -> None:
        super().__init__()
        self.image_encoder = RepViTEncoder(upsample_mode)
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Normalized, padded image 1 x 3 x 1024 x 1024 -> embeddings 1 x 256 x 64 x 64."""
        return self.image_encoder(image)

    @torch.no_grad()
    def decode(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        num_masks: int = 4,
        mask_input: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assembled prompt in the 1024 frame -> (logits B x M x 256 x 256, IoU B x M, stability B x M).

        point_coords B x N x 2 and point_labels B x N follow the official decoder-graph contract:
        box corners labelled 2 / 3, a (0, 0, -1) padding point when there is no box.
        M = num_masks (1, 3 or 4). ``mask_input`` B x 1 x 256 x 256: low-res logits of a previous
        prediction (click-by-click refinement), or None.
        """
        sparse, dense = self.prompt_encoder(point_coords, point_labels, mask_input)
        logits, iou = self.mask_decoder(
            image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense, num_masks=num_masks
        )
        return logits, iou, stability_score(logits, MASK_THRESHOLD, STABILITY_OFFSET)
