"""``edgesam-deploy segment``: run the PyTorch reference on one image and write the overlay."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import typer
from PIL import Image, PngImagePlugin
from rich.console import Console

from ..errors import DeployError
from ..fileio import atomic_output, check_output_file
from ..photos import DEFAULT_MAX_MEGAPIXELS, read_photo
from ..processing import (
    Prompt,
    PromptError,
    decoder_inputs,
    load_mask_input,
    masks_from_logits,
    postprocess_logits,
    preprocess,
)
from ..visualize import mask_image, overlay
from .options import CheckpointOpt, RandomWeightsOpt, VariantOpt, model_from_options


def parse_point(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y,LABEL' -> (x, y, label); label 1 (foreground) by default."""
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return float(parts[0]), float(parts[1]), 1
        if len(parts) == 3:
            return float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise PromptError(f"--point {text!r}: expected X,Y or X,Y,LABEL (label 1 foreground, 0 background)")


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X1,Y1,X2,Y2' -> box."""
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise PromptError(f"--box {text!r}: expected X1,Y1,X2,Y2") from None
    return x1, y1, x2, y2


def _image_format(path: Path) -> str:
    """PIL format name for an output path, from its extension."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise DeployError(f"{path}: unknown image format '{path.suffix}' (use .png or .jpg)")
    return fmt


def _save(im: Image.Image, path: Path, frame: str) -> None:
    """Write ``im`` atomically; a PNG also states the frame its pixels are in."""
    fmt = _image_format(path)
    info = PngImagePlugin.PngInfo() if fmt == "PNG" else None
    if info is not None:
        info.add_text("edgesam-deploy:frame", frame)
    with atomic_output(path) as tmp:
        im.save(tmp, format=fmt, **({"pnginfo": info} if info is not None else {}))


def segment(
    image: Path = typer.Argument(..., help="Input image (any format PIL reads; RGB, RGBA, gray or 16-bit)."),
    point: List[str] = typer.Option([], "--point", help="X,Y[,LABEL] in image pixels; repeatable. LABEL 1 fg (default), 0 bg."),
    box: Optional[str] = typer.Option(None, "--box", help="X1,Y1,X2,Y2 in image pixels."),
    out: Path = typer.Option(..., "--out", help="Overlay image to write (.png, .jpg)."),
    mask_out: Optional[Path] = typer.Option(None, "--mask-out", help="Also write the binary mask (8-bit, 255 inside)."),
    num_masks: int = typer.Option(1, "--num-masks", help="1 (token 0, what the paper evaluates), 3 or 4 candidates."),
    upsample: str = typer.Option("bicubic", "--upsample", help="Stage-3 upsampling: bicubic (PyTorch default) or bilinear (as exported)."),
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: Optional[int] = RandomWeightsOpt,
    variant: str = VariantOpt,
    logits_out: Optional[Path] = typer.Option(
        None, "--logits-out", help="Also write the chosen mask's low-res logits ([1, 256, 256] float32 .npy): "
        "the --mask-input of your next click."),
    mask_input: Optional[Path] = typer.Option(
        None, "--mask-input", help="Refine a previous answer: low-res logits from --logits-out ([1, 256, 256] "
        "or [256, 256] float .npy), fed to the decoder with this click's prompt."),
    max_megapixels: float = typer.Option(
        DEFAULT_MAX_MEGAPIXELS, "--max-megapixels", min=0.01,
        help="Refuse larger images before decoding them (decompression-bomb guard)."),
) -> None:
    """Segment IMAGE from point and box prompts with the PyTorch reference; write a mask overlay.

    With several candidates (--num-masks 3/4) the one with the highest stability score is kept
    (EdgeSAM's IoU head was not distilled and is unreliable).
    """
    if num_masks not in (1, 3, 4):
        raise DeployError("--num-masks must be 1, 3 or 4")
    if upsample not in ("bicubic", "bilinear"):
        raise DeployError("--upsample must be bicubic or bilinear")
    for path in (out, mask_out):
        if path is not None:
            _image_format(path)
            check_output_file(path)
    if logits_out is not None:
        check_output_file(logits_out)
    previous = None if mask_input is None else torch.from_numpy(load_mask_input(mask_input))
    photo = read_photo(image, max_megapixels)
    rgb = photo.rgb
    pts = [parse_point(p) for p in point]
    prompt = Prompt([(x, y) for x, y, _ in pts], [lab for _, _, lab in pts], parse_box(box) if box else None)
    prompt.validate(rgb.shape[:2])
    model, source = model_from_options(variant, checkpoint, random_weights, upsample)
    pre = preprocess(rgb)
    coords, labels = decoder_inputs(prompt, pre.original_size, pre.input_size)
    emb = model.encode(torch.from_numpy(pre.tensor))
    logits, iou, stability = model.decode(
        emb, torch.from_numpy(coords), torch.from_numpy(labels), num_masks=num_masks, mask_input=previous
    )
    best = int(torch.argmax(stability[0]))
    full = postprocess_logits(logits[0, best].numpy(), pre.input_size, pre.original_size)
    mask = masks_from_logits(full)
    caption = f"RANDOM WEIGHTS (seed {source.seed}): not a trained model" if source.kind == "random" else None
    _save(overlay(rgb, mask, prompt, caption), out, photo.describe())
    if mask_out is not None:
        _save(mask_image(mask), mask_out, photo.describe())
    if logits_out is not None:
        with atomic_output(logits_out) as tmp, open(tmp, "wb") as f:
            np.save(f, logits[0, best : best + 1].numpy().astype(np.float32))
    area = float(np.mean(mask))
    Console().print(
        f"mask {best} of {num_masks}: {area:.1%} of the image, stability {float(stability[0, best]):.3f}, "
        f"IoU head {float(iou[0, best]):.3f} -> {out}" + (f", {mask_out}" if mask_out else "")
        + f" (frame: {photo.describe()})"
    )
