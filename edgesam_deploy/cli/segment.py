"""``edgesam-deploy segment``: run the PyTorch reference on one image and write the overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..api_segment import segment as segment_photo
from ..fileio import check_outputs
from ..photos import DEFAULT_MAX_MEGAPIXELS
from ..processing import PromptError
from .options import (
    CheckpointOpt,
    RandomWeightsOpt,
    VariantOpt,
    model_from_options,
    path_argument,
    path_option,
)


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
    raise PromptError(
        f"--point {text!r}: expected X,Y or X,Y,LABEL (label 1 foreground, 0 background)"
    )


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X1,Y1,X2,Y2' -> box."""
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise PromptError(f"--box {text!r}: expected X1,Y1,X2,Y2") from None
    return x1, y1, x2, y2


def segment(
    image: Path = path_argument(
        ..., help="Input image (any format PIL reads; RGB, RGBA, gray or 16-bit)."
    ),
    point: list[str] = typer.Option(
        [], "--point", help="X,Y[,LABEL] in image pixels; repeatable. LABEL 1 fg (default), 0 bg."
    ),
    box: Optional[str] = typer.Option(None, "--box", help="X1,Y1,X2,Y2 in image pixels."),
    out: Path = path_option(..., "--out", help="Overlay image to write (.png, .jpg)."),
    mask_out: Optional[Path] = path_option(
        None, "--mask-out", help="Also write the binary mask (8-bit, 255 inside)."
    ),
    num_masks: int = typer.Option(
        1, "--num-masks", help="1 (token 0, what the paper evaluates), 3 or 4 candidates."
    ),
    upsample: str = typer.Option(
        "bicubic",
        "--upsample",
        help="Stage-3 upsampling: bicubic (PyTorch default) or bilinear (as exported).",
    ),
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: Optional[int] = RandomWeightsOpt,
    variant: str = VariantOpt,
    logits_out: Optional[Path] = path_option(
        None,
        "--logits-out",
        help="Also write the chosen mask's low-res logits ([1, 256, 256] float32 .npy): "
        "the --mask-input of your next click.",
    ),
    mask_input: Optional[Path] = path_option(
        None,
        "--mask-input",
        help="Refine a previous answer: low-res logits from --logits-out ([1, 256, 256] "
        "or [256, 256] float .npy), fed to the decoder with this click's prompt.",
    ),
    max_megapixels: float = typer.Option(
        DEFAULT_MAX_MEGAPIXELS,
        "--max-megapixels",
        min=0.01,
        help="Refuse larger images before decoding them (decompression-bomb guard).",
    ),
) -> None:
    """Segment IMAGE from point and box prompts with the PyTorch reference; write a mask overlay.

    With several candidates (--num-masks 3/4) the one with the highest stability score is kept
    (EdgeSAM's IoU head was not distilled and is unreliable).
    """
    check_outputs(
        {"--out": out, "--mask-out": mask_out, "--logits-out": logits_out},
        inputs={"IMAGE": image},
    )
    result = segment_photo(
        image,
        [parse_point(p) for p in point],
        parse_box(box) if box else None,
        num_masks=num_masks,
        upsample=upsample,  # type: ignore[arg-type]
        mask_input=mask_input,
        out=out,
        mask_out=mask_out,
        logits_out=logits_out,
        max_megapixels=max_megapixels,
        model=lambda: model_from_options(variant, checkpoint, random_weights, upsample),
    )
    Console().print(
        f"mask {result.index} of {num_masks}: {result.area:.1%} of the image, stability "
        f"{result.stability:.3f}, "
        f"IoU head {result.iou:.3f} -> {out}"
        + (f", {mask_out}" if mask_out else "")
        + f" (frame: {result.frame})"
    )
