"""SAM prompt encoder (embedding dim 256, 64 x 64 grid, 1024 x 1024 input frame)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d

NUM_POINT_EMBEDDINGS = 4  # labels 0 bg, 1 fg, 2 box top-left, 3 box bottom-right


def _one_hot(labels: torch.Tensor, value: int) -> torch.Tensor:
    """1.0 where an integer-valued ``labels`` equals ``value``, else 0.0 (same shape)."""
    return torch.relu(1 - (labels - value).abs())


class PositionEmbeddingRandom(nn.Module):
    """Random-Fourier positional encoding: coords in [0, 1] -> B x N x 256."""

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """... x 2 normalized coords -> ... x 2F (sin, cos)."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense(self, h: int, w: int) -> torch.Tensor:
        """Encoding of every cell centre of an h x w grid: 2F x h x w."""
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)
        return self.encode(grid).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Points, boxes and masks -> sparse (B x N x 256) and dense (B x 256 x 64 x 64) embeddings."""

    def __init__(
        self, embed_dim: int = 256, grid: int = 64, img_size: int = 1024, mask_in_chans: int = 16
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.grid = grid
        self.img_size = img_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(NUM_POINT_EMBEDDINGS)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """1 x 256 x 64 x 64 positional encoding of the image grid."""
        return self.pe_layer.dense(self.grid, self.grid).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """B x N x 2 coords (1024 frame, pixels) and B x N labels in {-1, 0, 1, 2, 3} -> B x N x 256.

        Label selection is arithmetic, never boolean indexing or comparisons: for integer labels
        ``relu(1 - |label - i|)`` is 1 where label == i and 0 elsewhere. Exported graphs keep static
        shapes and need no Equal/Cast ops, which GPU and NPU delegates reject.
        """
        pe = self.pe_layer.encode((coords + 0.5) / self.img_size)
        labels = labels.unsqueeze(-1).to(pe.dtype)
        is_pad = _one_hot(labels, -1)
        pe = pe * (1 - is_pad) + self.not_a_point_embed.weight * is_pad
        for i, emb in enumerate(self.point_embeddings):
            pe = pe + emb.weight * _one_hot(labels, i)
        return pe

    def forward(
        self,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Assembled prompt (B x N x 2 coords in the 1024 frame, B x N labels, box corners and padding
        point included; see ``processing.decoder_inputs``) and optional B x 1 x 256 x 256 mask ->
        sparse B x N x 256 and dense B x 256 x 64 x 64 embeddings."""
        sparse = self.embed_points(point_coords, point_labels)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                sparse.shape[0], -1, self.grid, self.grid
            )
        return sparse, dense
