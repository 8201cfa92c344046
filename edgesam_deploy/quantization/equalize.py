"""Residual-stream equalization of the re-parameterized RepViT encoder before int8 quantization.

An int8 graph quantizes each activation tensor with one scale, so a residual stream whose channels
differ in range wastes its 256 levels on the few widest channels (measured on real photos: in the
last blocks of the 192-channel stage the widest channel reaches 19-26x the median one). Within a
stage the stream passes only through per-channel ops (depthwise convs, squeeze-excite gating,
residual adds) between 1x1 convs, so dividing stream channel ``c`` by ``s[c]`` everywhere in the
stage and multiplying the input columns of every 1x1 conv that reads the stream by ``s[c]`` leaves
the function unchanged (float32 rounding only) while evening out the channel ranges
(cross-layer equalization; the balance between activation and weight ranges follows SmoothQuant).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import torch
from torch import nn

from ..modeling.image_encoder import RepViTEncoder, SqueezeExcite, STAGE2_INDEX


# equalization strengths tried for each int8 encoder; the one whose int8 graph stays closest to the
# float encoder on the calibration images wins (ExportContext.best_equalized). Measured with ONNX
# Runtime on the seeded weights, embedding cosine moves unevenly with alpha (docs/onnx.md)
ALPHA_CANDIDATES = (0.4, 0.5, 0.6, 0.7)
T = TypeVar("T")


@dataclass
class Segment:
    """Consecutive blocks of ``features`` that share one residual stream of ``channels`` channels."""

    channels: int
    blocks: list[int] = field(default_factory=list)  # indices into ``features``


def segments(encoder: RepViTEncoder) -> list[Segment]:
    """The residual streams: the stem's output stage, then one per downsampling block."""
    out = [Segment(encoder.features[0][-1].out_channels)]
    for i, block in enumerate(encoder.features[1:], start=1):
        if len(block.token_mixer) == 3:  # stride-2 block: dw s2, SE, 1x1 conv to a new width
            out.append(Segment(block.token_mixer[2].out_channels))
        out[-1].blocks.append(i)
    return out


@torch.no_grad()
def stream_peaks(encoder: RepViTEncoder, images: Iterable[np.ndarray]) -> list[torch.Tensor]:
    """Per segment, max |x| per channel over every stream tensor (block inputs and token-mixer outputs).

    ``images``: 1 x 3 x 1024 x 1024 float32 arrays. Returns one C-vector per segment.
    """
    segs = segments(encoder)
    owner = {b: k for k, seg in enumerate(segs) for b in seg.blocks}
    peaks = [torch.zeros(seg.channels) for seg in segs]

    def record(k: int, t: torch.Tensor) -> None:
        peaks[k] = torch.maximum(peaks[k], t.abs().amax(dim=(0, 2, 3)))

    hooks = []
    for i, block in enumerate(encoder.features[1:], start=1):
        k = owner[i]
        if len(block.token_mixer) != 3:  # a stride-2 block's input belongs to the previous stream
            hooks.append(block.register_forward_pre_hook(lambda m, a, k=k: record(k, a[0])))
        hooks.append(block.token_mixer.register_forward_hook(lambda m, a, o, k=k: record(k, o)))
        hooks.append(block.register_forward_hook(lambda m, a, o, k=k: record(k, o)))
    try:
        for image in images:
            encoder(torch.from_numpy(image))
    finally:
        for h in hooks:
            h.remove()
    return peaks


def _scale_out(conv: nn.Conv2d, s: torch.Tensor) -> None:
    """Output channel c of ``conv`` divided by s[c] (weights and bias)."""
    conv.weight.div_(s.view(-1, 1, 1, 1))
    if conv.bias is not None:
        conv.bias.div_(s)


def _scale_in(conv: nn.Conv2d, s: torch.Tensor) -> None:
    """Input channel c of a dense ``conv`` multiplied by s[c]: same output for an input divided by s."""
    conv.weight.mul_(s.view(1, -1, 1, 1))


def _through_token_mixer(mixer: nn.Sequential, s: torch.Tensor) -> None:
    """A stream divided by s enters the depthwise conv (+ SE): its output is divided by s too."""
    dw = mixer[0]
    if dw.bias is not None:
        dw.bias.div_(s)  # depthwise: weights act per channel, only the bias carries the scale
    se = mixer[1]
    if isinstance(se, SqueezeExcite):
        _scale_in(se.fc1, s)  # the gate sees the unscaled mean; it multiplies the scaled stream


@torch.no_grad()
def equalize_(encoder: RepViTEncoder, peaks: list[torch.Tensor], alpha: float) -> dict[str, Any]:
    """Divide every residual stream of the folded ``encoder`` (in place) by s = (peak / mean peak) ** alpha.

    ``peaks``: from :func:`stream_peaks`. ``alpha`` 0 changes nothing; 1 gives every channel the same
    range and moves the whole spread into the weights that read the stream. Returns what to record:
    alpha and, per stream, the widest channel's peak over the median peak before and after.
    """
    segs = segments(encoder)
    ratios = []
    for k, (seg, peak) in enumerate(zip(segs, peaks)):
        p = peak.clamp_min(float(peak.mean()) * 1e-3)
        s = (p / p.mean()) ** alpha
        if k == 0:
            _scale_out(encoder.features[0][-1], s)  # the stem's last conv starts stream 0
        else:
            _scale_out(encoder.features[seg.blocks[0]].token_mixer[2], s)  # the stride-2 block's 1x1 conv
        for i in seg.blocks:
            block = encoder.features[i]
            if len(block.token_mixer) != 3:
                _through_token_mixer(block.token_mixer, s)
            _scale_in(block.channel_mixer.m[0], s)
            _scale_out(block.channel_mixer.m[2], s)
        nxt = seg.blocks[-1] + 1
        if nxt < len(encoder.features):  # the next stride-2 block reads this stream
            mixer = encoder.features[nxt].token_mixer
            _through_token_mixer(mixer, s)
            _scale_in(mixer[2], s)
        else:
            _scale_in(encoder.fuse_stage3.op_list[0], s)
        if seg.blocks[-1] == STAGE2_INDEX:
            _scale_in(encoder.fuse_stage2, s)
        after = p / s
        ratios.append({"channels": seg.channels, "peak_over_median_before": round(float(p.max() / p.median()), 2),
                       "peak_over_median_after": round(float(after.max() / after.median()), 2)})
    return {"alpha": alpha, "streams": ratios}


def search_equalization(
    equalized: Callable[[float], tuple[Any, dict[str, Any]]],
    build: Callable[[Any, float], T],
    embed: Callable[[T, list[np.ndarray]], list[np.ndarray]],
    images: list[np.ndarray],
    reference: list[np.ndarray],
    alphas: tuple[float, ...] = ALPHA_CANDIDATES,
) -> tuple[T, dict[str, Any]]:
    """Build an int8 encoder from the encoder equalized with each of ``alphas`` and keep
    the one whose embeddings of the calibration ``images`` are closest to the float encoder's
    ``reference`` embeddings (highest lowest cosine). ``equalized(alpha)`` gives (graph, record);
    ``embed(artifact, images)`` runs an artifact. Returns the best artifact and its record."""
    from ..parity.metrics import cosine

    best: tuple[float, T, dict[str, Any]] | None = None
    trials = {}
    for alpha in alphas:
        graph, record = equalized(alpha)
        artifact = build(graph, alpha)
        outputs = embed(artifact, images)
        score = min(cosine(ref, out) for ref, out in zip(reference, outputs))
        trials[str(alpha)] = round(score, 6)
        if best is None or score > best[0]:
            best = (score, artifact, record)
    if best is None:
        raise ValueError("no equalization strength to try")
    return best[1], {**best[2], "images": len(images), "calibration_cosine_by_alpha": trials}
