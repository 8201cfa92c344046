"""The per-click mask decoder rewritten for CPU runtimes: the function of
``MaskDecoder.predict_masks`` with its dense positional encoding fixed (as in ``graphs.DecoderGraph``),
computed with fewer, larger GEMMs and no NCHW round trip. Measurements: docs/decoder-speed.md.

- The image stays token-major (HW x C) from the one permute of the input to the logits.
- With few prompt tokens the image-side attention runs in the image's input space (``AttentionForm``):
  the projections are folded into the tokens' side, and the 4096-row products have heads x tokens
  columns instead of the internal dim.
- The final token-to-image attention is computed for the output tokens only (the others are not
  read after it).
- The upscaling is sub-pixel: a stride-2 2x2 ConvTranspose is a per-pixel linear map to 4x the
  channels followed by depth-to-space. Both ConvTransposes run at 64 x 64 in token layout
  (LayerNorm2d over one sub-pixel's channels is a last-axis LayerNorm), the hypernetwork product
  is taken per sub-pixel, and one transpose puts the B x 4 x 256 x 256 logits in place.
- Products of two activations are batches of one with an untransposed right operand, so that
  LiteRT's XNNPACK delegate takes them (``_mm``).
"""

from __future__ import annotations

from enum import StrEnum

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


def _heads_t(x: torch.Tensor, heads: int) -> torch.Tensor:
    """N x (heads * d) -> heads x d x N."""
    n, c = x.shape
    return x.reshape(n, heads, c // heads).permute(1, 2, 0)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b of two activations (M x K, K x N) as a batch of one, reshaped back (an index would be
    a copying Gather in ONNX). LiteRT lowers a 2-D product of activations, and any product whose
    right operand is a transposed activation, to FULLY_CONNECTED with a non-constant weight, which
    its XNNPACK delegate does not take: callers build ``b`` in K x N layout."""
    return (a[None] @ b[None]).reshape(a.shape[0], -1)


def _columns(w: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """Per head ``W_h^T x_h`` as C x (heads * T) columns, head-major: ``w`` the heads x d x C rows
    of a projection's weight, ``x_t`` heads x d x T (``_heads_t``). Built untransposed for LiteRT
    (``_mm``)."""
    h, _, c = w.shape
    return (w.transpose(1, 2) @ x_t).permute(1, 0, 2).reshape(c, -1)


def _scale(attn: Attention) -> float:
    """SAM's attention scale 1/sqrt(head dim)."""
    return float(attn.q_proj.out_features // attn.num_heads) ** -0.5


class AttentionForm(StrEnum):
    """How the rewrite computes the image-side attention (docs/decoder-speed.md).

    ``auto``: in the image's input space where that is fewer FLOPs (heads x tokens < internal dim,
    i.e. fewer than 16 tokens: up to 10 points), else through the projections; decided when the
    graph is traced, so for a runtime with one graph per N (LiteRT's signatures).
    ``input-space``: always in the input space (one graph for every N, e.g. ONNX's dynamic N:
    at 16 points it costs more FLOPs than the projections, in large GEMMs).
    ``projected``: always through the projections (the reference's order of products).
    """

    AUTO = "auto"
    INPUT_SPACE = "input-space"
    PROJECTED = "projected"


def _input_space(attn: Attention, tokens: int, form: AttentionForm) -> bool:
    """Whether attention with ``tokens`` prompt-side tokens runs in the image's input space
    (heads x tokens columns) rather than through the image-side projections (internal dim)."""
    if form == AttentionForm.AUTO:
        return attn.num_heads * tokens < attn.q_proj.out_features
    return form == AttentionForm.INPUT_SPACE


def token_to_image(
    attn: Attention,
    queries: torch.Tensor,
    image_pe: torch.Tensor,
    image: torch.Tensor,
    form: AttentionForm,
) -> torch.Tensor:
    """``attn(queries, image_pe, image)``: T x C tokens attending to HW x C image tokens (keys
    ``image_pe`` = image + PE, values ``image``) -> T x C.

    With few tokens the keys and values are never projected: q_h . (Wk_h y + bk_h) = (q_h Wk_h) . y
    plus a term constant along the softmax axis, and P (Y Wv^T + bv) = (P Y) Wv^T + bv.
    """
    h, c = attn.num_heads, image.shape[1]
    if not _input_space(attn, queries.shape[0], form):
        q = _heads(attn.q_proj(queries), h) * _scale(attn)  # h x T x d
        k, v = _heads(attn.k_proj(image_pe), h), _heads(attn.v_proj(image), h)
        return attn.out_proj(_merge(_attend(q, k, v)))
    q_t = _heads_t(attn.q_proj(queries), h) * _scale(attn)  # h x d x T
    qk_t = _columns(attn.k_proj.weight.reshape(h, -1, c), q_t)  # C x hT
    p = torch.softmax(_mm(image_pe, qk_t).T, dim=-1)  # hT x HW
    py = _mm(p, image).reshape(h, -1, c)  # h x T x C
    out = py @ attn.v_proj.weight.reshape(h, -1, c).transpose(1, 2)  # h x T x d
    return attn.out_proj(_merge(out + attn.v_proj.bias.reshape(h, 1, -1)))


def image_to_token(
    attn: Attention,
    image_pe: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    form: AttentionForm,
) -> torch.Tensor:
    """``attn(image_pe, keys, values)``: HW x C image tokens attending to T x C tokens -> HW x C.

    With few tokens the image queries are never projected, (y Wq^T + bq) . k_h = y . (Wq_h^T k_h)
    + bq_h . k_h, and the output projection is folded into the values: sum_h P_h (v_h Wo_h^T).
    """
    h, (n, c) = attn.num_heads, image_pe.shape
    if not _input_space(attn, keys.shape[0], form):
        q = _heads(attn.q_proj(image_pe), h)
        k = _heads(attn.k_proj(keys), h) * _scale(attn)
        return attn.out_proj(_merge(_attend(q, k, _heads(attn.v_proj(values), h))))
    k_t = _heads_t(attn.k_proj(keys), h) * _scale(attn)  # h x d x T
    a_t = _columns(attn.q_proj.weight.reshape(h, -1, c), k_t)  # C x hT
    bias = (attn.q_proj.bias.reshape(h, 1, -1) @ k_t).reshape(-1)  # hT
    p = torch.softmax((_mm(image_pe, a_t) + bias).reshape(n, h, -1), dim=-1)  # HW x h x T
    v = _heads(attn.v_proj(values), h)  # h x T x d
    vo = v @ attn.out_proj.weight.T.reshape(h, -1, c)  # h x T x C
    return _mm(p.reshape(n, -1), vo.reshape(-1, c)) + attn.out_proj.bias


def two_way_block(
    layer: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
    form: AttentionForm,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``layer`` on 2-D token matrices: queries, query_pe T x C; keys, key_pe HW x C."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(queries[None], queries[None], queries[None])[0]
    else:
        q = (queries + query_pe)[None]
        queries = queries + layer.self_attn(q, q, queries[None])[0]
    queries = layer.norm1(queries)
    keys_pe = keys + key_pe
    t2i = token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys_pe, keys, form)
    queries = layer.norm2(queries + t2i)
    queries = layer.norm3(queries + layer.mlp(queries))
    i2t = image_to_token(
        layer.cross_attn_image_to_token, keys_pe, queries + query_pe, queries, form
    )
    return queries, layer.norm4(keys + i2t)


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

    def forward(self, tokens: torch.Tensor, hyper_t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """tokens HW x C (row-major H x W), hyper_t C/8 x M -> logits M x 4H x 4W."""
        n = tokens.shape[0]
        x = torch.addmm(self.b1, tokens, self.w1).reshape(n * 4, self.channels)
        x = F.gelu(F.layer_norm(x, (self.channels,), self.norm_weight, self.norm_bias, self.eps))
        x = F.gelu(torch.addmm(self.b2, x, self.w2).reshape(n * 16, -1))
        masks = _mm(x, hyper_t).T  # M x (y, x, a1, b1, a2, b2); 6-D at most (XNNPACK)
        masks = masks.reshape(-1, w, 2, 2, 2, 2).permute(0, 2, 4, 1, 3, 5)
        return masks.reshape(hyper_t.shape[1], 4 * h, 4 * w)


class FastMaskDecoder(nn.Module):
    """``MaskDecoder.predict_masks`` with ``image_pe`` (1 x C x H x W) fixed, for batch 1 (the graph
    contract): (image 1 x C x H x W, sparse 1 x N x C, dense 1 x C x H x W or 1 x C x 1 x 1) ->
    (logits 1 x 4 x 4H x 4W, IoU 1 x 4). Tokens are 2-D matrices (ONNX Runtime fuses a 3-D
    Add + LayerNormalization into a SkipLayerNormalization that is slow at 4096 x 256)."""

    def __init__(
        self, decoder: MaskDecoder, image_pe: torch.Tensor, form: AttentionForm = AttentionForm.AUTO
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.form = AttentionForm(form)
        self.register_buffer("key_pe", image_pe.flatten(2)[0].T.contiguous())  # HW x C
        self.upscaling = SubPixelUpscaling(decoder.output_upscaling)

    def forward(
        self, image_embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dec = self.decoder
        _, c, h, w = image_embeddings.shape
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens, sparse[0]], dim=0)
        # NCHW -> HW x C as a 4-D permute: LiteRT's converter folds a 2-D transpose of the image
        # into the first P @ Y product, making it a FULLY_CONNECTED that XNNPACK does not take
        if dense.shape[-1] == 1:  # one embedding for every pixel: added after the transpose
            keys = image_embeddings.permute(0, 2, 3, 1).reshape(h * w, c) + dense.reshape(1, c)
        else:
            keys = (image_embeddings + dense).permute(0, 2, 3, 1).reshape(h * w, c)
        queries = tokens
        for layer in dec.transformer.layers:
            queries, keys = two_way_block(layer, queries, keys, tokens, self.key_pe, self.form)
        # only the output tokens are read after the final attention: the others are not computed
        n_out = out_tokens.shape[0]
        final = dec.transformer.final_attn_token_to_image
        attn = token_to_image(
            final, (queries + tokens)[:n_out], keys + self.key_pe, keys, self.form
        )
        queries = dec.transformer.norm_final_attn(queries[:n_out] + attn)
        # C/8 x M, built in the layout the product takes: LiteRT makes a product with a
        # transposed activation a FULLY_CONNECTED op that its XNNPACK delegate does not take
        hyper_t = torch.stack(
            [mlp(queries[1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
        )
        masks = self.upscaling(keys, hyper_t, h, w)
        return masks[None], dec.iou_prediction_head(
            queries[0][None]
        )  # static 1 x C (a slice is not)
