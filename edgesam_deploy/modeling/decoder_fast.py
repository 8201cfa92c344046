"""The per-click mask decoder rewritten for CPU runtimes: the function of
``MaskDecoder.predict_masks`` with its dense positional encoding fixed (as in ``graphs.DecoderGraph``),
computed with fewer, larger GEMMs and no NCHW round trip. Measurements: docs/decoder-speed.md.

- The image stays token-major (B x HW x C) from the one transpose of the input to the logits.
- Per two-way block, the image-side projections that read the same keys (token->image k and v,
  image->token q) are one GEMM C -> 3C/2. Its bias absorbs the constant PE term,
  (x + pe) W + b = x W + (pe W + b), and the image queries' 1/sqrt(d) = 1/4 (a power of two: exact).
  The final token->image attention's k and v are one GEMM the same way.
- The upscaling is sub-pixel: a stride-2 2x2 ConvTranspose is a per-pixel linear map to 4x the
  channels followed by depth-to-space. Both ConvTransposes run at 64 x 64 in token layout
  (LayerNorm2d over one sub-pixel's channels is a last-axis LayerNorm), the hypernetwork product
  is taken per sub-pixel, and one transpose puts the B x 4 x 256 x 256 logits in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mask_decoder import MaskDecoder
from .transformer import Attention, TwoWayAttentionBlock


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """N x (heads * d) -> heads x N x d."""
    n, c = x.shape
    return x.reshape(n, heads, c // heads).transpose(0, 1)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """heads x N x d -> N x (heads * d)."""
    h, n, d = x.shape
    return x.transpose(0, 1).reshape(n, h * d)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per head softmax(q k^T) v with q already scaled: h x Nq x d, h x Nk x d -> h x Nq x d."""
    return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v


def _scale(attn: Attention) -> float:
    """SAM's attention scale 1/sqrt(head dim)."""
    return float(attn.q_proj.out_features // attn.num_heads) ** -0.5


class ImageProjection(nn.Module):
    """Projections of the image tokens that read the same input, as one GEMM:
    HW x C -> one heads x HW x d tensor per listed projection, each multiplied by its scale."""

    def __init__(self, parts: list[tuple[nn.Linear, float]], heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.sizes = [linear.out_features for linear, _ in parts]
        with torch.no_grad():
            weight = torch.cat([linear.weight.T * s for linear, s in parts], dim=1)
            self.register_buffer("weight", weight.contiguous())
            self.register_buffer("bias", torch.cat([linear.bias * s for linear, s in parts]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = torch.addmm(self.bias, x, self.weight)
        return [_heads(part, self.heads) for part in y.split(self.sizes, dim=1)]


class FastBlock(nn.Module):
    """One ``TwoWayAttentionBlock`` on 2-D token matrices, the image-side projections that read
    ``keys + pe`` (token->image k, image->token q) fused (``ImageProjection``)."""

    def __init__(self, layer: TwoWayAttentionBlock) -> None:
        super().__init__()
        self.layer = layer
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        self.image = ImageProjection([(t2i.k_proj, 1.0), (i2t.q_proj, _scale(i2t))], t2i.num_heads)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries, query_pe T x C; keys, key_pe HW x C -> (queries, keys)."""
        layer = self.layer
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(queries[None], queries[None], queries[None])[0]
        else:
            q = (queries + query_pe)[None]
            queries = queries + layer.self_attn(q, q, queries[None])[0]
        queries = layer.norm1(queries)
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        k_img, q_img = self.image(keys + key_pe)
        v_img = _heads(t2i.v_proj(keys), t2i.num_heads)
        q = _heads(t2i.q_proj(queries + query_pe), t2i.num_heads) * _scale(t2i)
        queries = layer.norm2(queries + t2i.out_proj(_merge(_attend(q, k_img, v_img))))
        queries = layer.norm3(queries + layer.mlp(queries))
        k = _heads(i2t.k_proj(queries + query_pe), i2t.num_heads)
        v = _heads(i2t.v_proj(queries), i2t.num_heads)
        keys = layer.norm4(keys + i2t.out_proj(_merge(_attend(q_img, k, v))))
        return queries, keys


class SubPixelUpscaling(nn.Module):
    """``output_upscaling`` (ConvT 2x2/2, LayerNorm2d, GELU, ConvT 2x2/2, GELU) and the
    hypernetwork product, on token-major input."""

    def __init__(self, upscaling: nn.Sequential) -> None:
        super().__init__()
        conv1, norm, _, conv2, _ = upscaling
        self.eps = norm.eps
        self.channels = conv1.out_channels
        with torch.no_grad():
            for name, conv in (("1", conv1), ("2", conv2)):
                # ConvTranspose weight in x out x 2 x 2 -> in x (a, b, out): sub-pixel (a, b) major
                w = conv.weight.permute(0, 2, 3, 1).reshape(conv.in_channels, -1)
                self.register_buffer(f"w{name}", w.contiguous())
                self.register_buffer(f"b{name}", conv.bias.repeat(4))
            self.register_buffer("norm_weight", norm.weight.detach().clone())
            self.register_buffer("norm_bias", norm.bias.detach().clone())

    def forward(self, tokens: torch.Tensor, hyper: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """tokens HW x C (row-major H x W), hyper M x C/8 -> logits M x 4H x 4W."""
        n = tokens.shape[0]
        x = torch.addmm(self.b1, tokens, self.w1).reshape(n * 4, self.channels)
        x = F.gelu(F.layer_norm(x, (self.channels,), self.norm_weight, self.norm_bias, self.eps))
        x = F.gelu(torch.addmm(self.b2, x, self.w2).reshape(n * 16, -1))
        masks = hyper @ x.T  # M x (y, x, a1, b1, a2, b2)
        masks = masks.reshape(-1, w, 2, 2, 2, 2).permute(0, 2, 4, 1, 3, 5)
        return masks.reshape(hyper.shape[0], 4 * h, 4 * w)


class FastMaskDecoder(nn.Module):
    """``MaskDecoder.predict_masks`` with ``image_pe`` (1 x C x H x W) fixed, for batch 1 (the graph
    contract): (image 1 x C x H x W, sparse 1 x N x C, dense 1 x C x H x W or 1 x C x 1 x 1) ->
    (logits 1 x 4 x 4H x 4W, IoU 1 x 4). Tokens are 2-D matrices (ONNX Runtime fuses a 3-D
    Add + LayerNormalization into a SkipLayerNormalization that is slow at 4096 x 256)."""

    def __init__(self, decoder: MaskDecoder, image_pe: torch.Tensor) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer("key_pe", image_pe.flatten(2)[0].T.contiguous())  # HW x C
        self.blocks = nn.ModuleList(FastBlock(layer) for layer in decoder.transformer.layers)
        self.upscaling = SubPixelUpscaling(decoder.output_upscaling)

    def forward(
        self, image_embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dec = self.decoder
        _, c, h, w = image_embeddings.shape
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens, sparse[0]], dim=0)
        keys = (image_embeddings + dense).reshape(c, h * w).T
        queries = tokens
        for block in self.blocks:
            queries, keys = block(queries, keys, tokens, self.key_pe)
        final = dec.transformer.final_attn_token_to_image
        k_img = _heads(final.k_proj(keys + self.key_pe), final.num_heads)
        v_img = _heads(final.v_proj(keys), final.num_heads)
        q = _heads(final.q_proj(queries + tokens), final.num_heads) * _scale(final)
        attn = final.out_proj(_merge(_attend(q, k_img, v_img)))
        queries = dec.transformer.norm_final_attn(queries + attn)
        hyper = torch.stack(
            [mlp(queries[1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)]
        )
        masks = self.upscaling(keys, hyper, h, w)
        return masks[None], dec.iou_prediction_head(queries[:1])
