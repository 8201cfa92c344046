"""Options shared by several commands, and the model-source resolution behind them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from ..checkpoints import REGISTRY, ModelSource, load_model
from ..manifest_schema import MAX_SEED
from ..modeling import EdgeSam
from ..quantization.search_target import SEARCH_IMAGES, SEARCH_MARGIN, default_margin
from ..samples import SEARCH_PHOTOS
from ..terminal import current
from ..vocabulary import Precision


class _Notes:
    """Our side lines on stderr (rich markup): the current terminal's notes, hidden by --quiet."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        current().note(*objects, **kwargs)


err_console = _Notes()


def out_console() -> Console:
    """Console for tables on stdout: the terminal's width, or 200 columns in logs and pipes (CI)."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def _path(value: str | None) -> Path | None:
    """A path parameter's text as a Path; an empty one (it would mean the current directory) is
    refused in one line."""
    if value is None:
        return None
    if not value:
        raise typer.BadParameter("an empty path; give a file or directory name")
    return Path(value)


def path_option(default: Any, *names: str, **kwargs: Any) -> Any:
    """``typer.Option`` for a path (``typer.Option``'s path checks kept) that refuses ``''``."""
    return typer.Option(default, *names, path_type=str, callback=_path, **kwargs)


def path_argument(default: Any, **kwargs: Any) -> Any:
    """``typer.Argument`` for a path (``typer.Argument``'s path checks kept) that refuses ``''``."""
    return typer.Argument(default, path_type=str, callback=_path, **kwargs)


CheckpointOpt = path_option(
    None,
    "--checkpoint",
    help="Local checkpoint (.pth: flat state_dict or {'model': ...}).",
    dir_okay=False,
)
RandomWeightsOpt = typer.Option(
    None,
    "--random-weights",
    metavar="SEED",
    min=0,
    max=MAX_SEED,
    help="Seeded random weights of realistic scale: the embedded default for machines without a checkpoint.",
)
CalibrationDirOpt = path_option(
    None,
    "--calibration-dir",
    help="Your own images for int8 calibration (default: scikit-image photos, never the parity "
    "photos).",
)
CalibrationSizeOpt = typer.Option(
    8, "--calibration-size", min=1, help="Number of calibration images."
)
SearchMarginOpt = typer.Option(
    None,
    "--search-margin",
    help="Mixed-precision search: raise the gate's min mask IoU floor by this much in the "
    f"search's target (default {SEARCH_MARGIN:g}; fp16 scan: {default_margin(Precision.FP16):g}; "
    "the parity gate itself is unchanged).",
)
SearchImagesOpt = typer.Option(
    None,
    "--search-images",
    help="Mixed-precision search: how many held-out scikit-image photos (neither calibration nor "
    f"parity photos) judge its candidates, 1-{len(SEARCH_PHOTOS)} (default {SEARCH_IMAGES}).",
)
Int8WeightsOpt = typer.Option(
    None,
    "--int8-weights",
    help="ONNX int8 graphs: 7-bit weights (default) run right on every CPU; 8-bit keep one more "
    "bit, for x86 CPUs with VNNI and ARM CPUs (an x86 CPU without VNNI can saturate them).",
)
VariantOpt = typer.Option("edgesam", "--variant", help=f"Model variant: {', '.join(REGISTRY)}.")


def model_from_options(
    variant: str,
    checkpoint: Optional[Path],
    random_weights: Optional[int],
    upsample_mode: str = "bilinear",
) -> tuple[EdgeSam, ModelSource]:
    """Load the model and tell the user, on stderr, which weights are in use."""
    model, source = load_model(
        variant, checkpoint=checkpoint, random_seed=random_weights, upsample_mode=upsample_mode
    )  # type: ignore[arg-type]
    style = "bold yellow" if source.kind == "random" else "dim"
    err_console.print(f"[{style}]model: {source.label}[/{style}]")
    return model, source
