"""The two deployable graphs of the official export contract, as PyTorch modules every exporter traces.

Encoder: ``image`` [1, 3, 1024, 1024] float32 -> ``image_embeddings`` [1, 256, 64, 64].
Decoder: ``image_embeddings`` [1, 256, 64, 64], ``point_coords`` [1, N, 2], ``point_labels`` [1, N]
-> ``scores`` [1, 4], ``masks`` [1, 4, 256, 256] (low-res logits).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .modeling import EdgeSam, reparameterize_encoder
from .modeling.decoder_fast import AttentionForm, FastMaskDecoder
from .modeling.mask_decoder import stability_score
from .vocabulary import Role, ScoreKind, graph_spec


def rewrite_details(form: AttentionForm) -> str:
    """The manifest detail of a decoder artifact written from the rewritten graph."""
    return (
        f"modeling/decoder_fast.py, attention {form}: 2-D tokens, sub-pixel upscaling "
        "(docs/decoder-speed.md)"
    )


class EncoderGraph(nn.Module):
    """Image encoder with bilinear stage-3 upsampling, re-parameterized unless ``fold=False``."""

    def __init__(self, model: EdgeSam, fold: bool = True) -> None:
        super().__init__()
        encoder = copy.deepcopy(model.image_encoder).eval()
        encoder.set_upsample_mode("bilinear")
        self.encoder = reparameterize_encoder(encoder) if fold else encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder; labels selected arithmetically, dense PE a constant.

    With ``mask_input`` the graph also takes ``mask_input`` [1, 1, 256, 256] (a previous answer's
    low-res logits) and ``has_mask_input`` [1] (1 uses it, 0 gives today's decoder), as SAM's export.
    With ``rewrite`` (an ``AttentionForm``) the mask decoder is ``decoder_fast.FastMaskDecoder``:
    the same function in fewer and larger GEMMs (docs/decoder-speed.md); None: the reference.
    """

    def __init__(
        self,
        model: EdgeSam,
        scores: ScoreKind = ScoreKind.IOU,
        mask_input: bool = False,
        rewrite: AttentionForm | None = None,
    ) -> None:
        super().__init__()
        self.prompt_encoder = copy.deepcopy(model.prompt_encoder).eval()
        self.mask_decoder = copy.deepcopy(model.mask_decoder).eval()
        self.scores = ScoreKind(scores)
        self.mask_input = mask_input
        with torch.no_grad():
            self.register_buffer("dense_pe", self.prompt_encoder.get_dense_pe().clone())
            self.fast = (
                None
                if rewrite is None
                else FastMaskDecoder(self.mask_decoder, self.dense_pe, rewrite)
            )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor | None = None,
        has_mask_input: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels)
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        if mask_input is not None and has_mask_input is not None:
            has = has_mask_input.reshape(1, 1, 1, 1)
            dense = has * self.prompt_encoder.mask_downscaling(mask_input) + (1 - has) * dense
        if self.fast is not None:
            masks, iou = self.fast(image_embeddings, sparse, dense)
        else:
            masks, iou = self.mask_decoder.predict_masks(
                image_embeddings, self.dense_pe, sparse, dense
            )
        scores = stability_score(masks) if self.scores == ScoreKind.STABILITY else iou
        return scores, masks


def build_graph(
    model: EdgeSam,
    role: Role,
    scores: ScoreKind = ScoreKind.IOU,
    mask_input: bool = False,
    rewrite: AttentionForm | None = None,
) -> nn.Module:
    """The deployable graph of ``role`` (folded encoder, or decoder with ``scores`` and, with
    ``mask_input``, the previous-mask inputs; ``rewrite``: the rewritten decoder), in eval mode."""
    if role == Role.ENCODER:
        return EncoderGraph(model).eval()
    return DecoderGraph(model, scores, mask_input, rewrite).eval()


def graph_outputs(
    role: Role, out: torch.Tensor | tuple[torch.Tensor, ...]
) -> dict[str, np.ndarray]:
    """A graph's forward result as NumPy arrays keyed by the official output names."""
    tensors = (out,) if isinstance(out, torch.Tensor) else out
    return {name: t.numpy() for name, t in zip(graph_spec(role).output_names, tensors)}


def example_inputs(
    role: Role, num_points: int = 2, mask_input: bool = False
) -> tuple[torch.Tensor, ...]:
    """Deterministic example inputs of ``role``'s graph for tracing: encoder (image,), decoder
    (embeddings [1, 256, 64, 64], coords [1, N, 2], labels [1, N] with a padding point last, and
    with ``mask_input`` a mask [1, 1, 256, 256] and has_mask_input [1] = 1)."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 1024, 1024, generator=g)
    if role == Role.ENCODER:
        return (image,)
    emb = torch.randn(1, 256, 64, 64, generator=g)
    coords = torch.rand(1, num_points, 2, generator=g) * 1024
    labels = torch.ones(1, num_points)
    labels[0, -1] = -1
    if mask_input:
        return emb, coords, labels, torch.randn(1, 1, 256, 256, generator=g) * 4, torch.ones(1)
    return emb, coords, labels
