"""The Python API's ``segment``: the PyTorch reference on one photo, its mask, overlay and logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .api import ModelArg, resolve_model
from .checkpoints import ModelSource
from .errors import DeployError
from .fileio import atomic_output, check_output_file
from .modeling.image_encoder import UpsampleMode
from .photos import DEFAULT_MAX_MEGAPIXELS, read_photo
from .processing import (
    Prompt,
    decoder_inputs,
    load_mask_input,
    masks_from_logits,
    postprocess_logits,
    preprocess,
)
from .visualize import mask_image, overlay

UPSAMPLE_MODES = ("bicubic", "bilinear")
NUM_MASKS = (1, 3, 4)


@dataclass
class SegmentResult:
    """The chosen mask of one prompt: ``mask`` H x W bool in the displayed frame, ``logits``
    1 x 256 x 256 float32 (the next click's ``mask_input``), its index among ``num_masks``
    candidates with its stability and IoU-head scores, and the files written."""

    mask: np.ndarray = field(repr=False)
    logits: np.ndarray = field(repr=False)
    index: int
    num_masks: int
    stability: float
    iou: float
    frame: str
    source: ModelSource
    written: list[Path] = field(default_factory=list)

    @property
    def area(self) -> float:
        """Fraction of the image inside the mask."""
        return float(np.mean(self.mask))

    def to_dict(self) -> dict:
        return {
            "mask_index": self.index,
            "num_masks": self.num_masks,
            "area": self.area,
            "stability": self.stability,
            "iou": self.iou,
            "frame": self.frame,
            "model": self.source.as_dict(),
            "written": [str(p) for p in self.written],
        }


def image_format(path: Path) -> str:
    """PIL format name for an output path, from its extension."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DeployError(f"{path}: unknown image format '{path.suffix}' (use .png or .jpg)")
    return fmt


def _save(im: Image.Image, path: Path, frame: str) -> None:
    """Write ``im`` atomically; a PNG also states the frame its pixels are in."""
    fmt = image_format(path)
    info = PngImagePlugin.PngInfo() if fmt == "PNG" else None
    if info is not None:
        info.add_text("edgesam-deploy:frame", frame)
    with atomic_output(path) as tmp:
        im.save(tmp, format=fmt, **({"pnginfo": info} if info is not None else {}))


def _previous(mask_input: Path | str | np.ndarray | None) -> torch.Tensor | None:
    """A previous answer's low-res logits (a .npy path or an array) as the decoder takes them."""
    if mask_input is None:
        return None
    if isinstance(mask_input, np.ndarray):
        return torch.from_numpy(mask_input.astype(np.float32).reshape(1, 1, 256, 256))
    return torch.from_numpy(load_mask_input(Path(mask_input)))


def segment(
    image: Path | str,
    points: Sequence[tuple[float, float] | tuple[float, float, int]] = (),
    box: tuple[float, float, float, float] | None = None,
    *,
    num_masks: int = 1,
    upsample: UpsampleMode = "bicubic",
    mask_input: Path | str | np.ndarray | None = None,
    out: Path | str | None = None,
    mask_out: Path | str | None = None,
    logits_out: Path | str | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    model: ModelArg = None,
    variant: str = "edgesam",
    checkpoint: Path | str | None = None,
    random_weights: int | None = None,
) -> SegmentResult:
    """Segment ``image`` from points ((x, y) or (x, y, label): 1 fg, 0 bg) and a box (x1, y1,
    x2, y2), in the photo's displayed pixels, with the PyTorch reference. With several candidates
    the most stable one is kept. Writes the overlay (``out``), the binary mask (``mask_out``) and
    the logits (``logits_out``, .npy) when given; ``mask_input`` refines a previous answer.
    ``upsample`` is the stage-3 mode of a model loaded here (a given ``model`` keeps its own)."""
    if num_masks not in NUM_MASKS:
        raise DeployError("--num-masks must be 1, 3 or 4")
    if upsample not in UPSAMPLE_MODES:
        raise DeployError("--upsample must be bicubic or bilinear")
    images = [Path(p) for p in (out, mask_out) if p is not None]
    for path in images:
        image_format(path)
        check_output_file(path)
    if logits_out is not None:
        check_output_file(Path(logits_out))
    previous = _previous(mask_input)
    photo = read_photo(Path(image), max_megapixels)
    rgb = photo.rgb
    full_points = [(p[0], p[1], p[2] if len(p) > 2 else 1) for p in points]
    prompt = Prompt([(x, y) for x, y, _ in full_points], [lab for _, _, lab in full_points], box)
    prompt.validate(rgb.shape[:2])
    net, source = resolve_model(model, variant, checkpoint, random_weights, upsample)
    pre = preprocess(rgb)
    coords, labels = decoder_inputs(prompt, pre.original_size, pre.input_size)
    with torch.no_grad():
        emb = net.encode(torch.from_numpy(pre.tensor))
        logits, iou, stability = net.decode(
            emb,
            torch.from_numpy(coords),
            torch.from_numpy(labels),
            num_masks=num_masks,
            mask_input=previous,
        )
    best = int(torch.argmax(stability[0]))
    full = postprocess_logits(logits[0, best].numpy(), pre.input_size, pre.original_size)
    result = SegmentResult(
        mask=masks_from_logits(full),
        logits=logits[0, best : best + 1].numpy().astype(np.float32),
        index=best,
        num_masks=num_masks,
        stability=float(stability[0, best]),
        iou=float(iou[0, best]),
        frame=photo.describe(),
        source=source,
    )
    caption = (
        f"RANDOM WEIGHTS (seed {source.seed}): not a trained model"
        if source.kind == "random"
        else None
    )
    if out is not None:
        _save(overlay(rgb, result.mask, prompt, caption), Path(out), result.frame)
        result.written.append(Path(out))
    if mask_out is not None:
        _save(mask_image(result.mask), Path(mask_out), result.frame)
        result.written.append(Path(mask_out))
    if logits_out is not None:
        with atomic_output(Path(logits_out)) as tmp, open(tmp, "wb") as f:
            np.save(f, result.logits)
        result.written.append(Path(logits_out))
    return result
