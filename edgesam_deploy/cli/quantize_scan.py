"""``edgesam-deploy quantize-scan``: int8 sensitivity per encoder block, and the greedy path to a
mean-IoU target, measured on held-out photos (docs/mixed-precision.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..exporters import ExportOptions
from ..exporters.base import ExportContext
from ..exporters.onnx.options import OnnxOptions
from ..parity.thresholds import thresholds_for
from ..quantization.sensitivity import check_block_names
from ..vocabulary import Precision, Role
from .options import (
    CalibrationDirOpt,
    CalibrationSizeOpt,
    CheckpointOpt,
    RandomWeightsOpt,
    SearchImagesOpt,
    SearchMarginOpt,
    VariantOpt,
    model_from_options,
    out_console,
)
from .progress import progress_reporter


def quantize_scan(
    out: Path = typer.Option(..., "--out", help="Folder for scan.json, scan.md and scan.png."),
    blocks: Optional[str] = typer.Option(
        None,
        "--blocks",
        help="Comma list of blocks to scan (stem, block1..block26, fuse2, fuse3, neck); "
        "the others stay int8. Default: every block.",
    ),
    min_iou: Optional[float] = typer.Option(
        None,
        "--min-iou",
        help="Mean mask IoU the greedy path aims at, in (0, 1] (default: the int8 gate's).",
    ),
    search_margin: Optional[float] = SearchMarginOpt,
    search_images: Optional[int] = SearchImagesOpt,
    calibration_dir: Optional[Path] = CalibrationDirOpt,
    calibration_size: int = CalibrationSizeOpt,
    alpha: Optional[float] = typer.Option(
        None,
        "--alpha",
        min=0.0,
        max=1.0,
        help="Equalization strength (default: the export's own choice among its candidates).",
    ),
    runs: int = typer.Option(5, "--runs", min=1, help="Timed runs per graph."),
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: Optional[int] = RandomWeightsOpt,
    variant: str = VariantOpt,
) -> None:
    """Scan which encoder blocks lose accuracy in int8 (ONNX Runtime, int8-static QDQ)."""
    from ..exporters.onnx.convert import scan_int8_encoder
    from ..quantization.scan_report import write_scan

    names = check_block_names(b.strip() for b in blocks.split(",") if b.strip()) if blocks else None
    gate = thresholds_for(Precision.INT8_STATIC, Role.ENCODER)["mask_iou_mean"][1]
    search = OnnxOptions(
        (Precision.INT8_STATIC,),
        gate if min_iou is None else min_iou,
        search_margin,
        search_images,
    )
    model, source = model_from_options(variant, checkpoint, random_weights)
    options = ExportOptions(calibration_dir=calibration_dir, calibration_size=calibration_size)
    with progress_reporter("quantize-scan") as report:
        ctx = ExportContext(model, source, out, options, progress=report)
        alphas = None if alpha is None else (alpha,)
        scan = scan_int8_encoder(ctx, names, search, alphas, runs)
        paths = write_scan(scan, out)
    reached = "meets" if scan.chosen.meets else "does not meet"
    out_console().print(
        f"{len(scan.blocks)} block(s) scanned; {scan.chosen.label} {reached} the target; "
        f"wrote {', '.join(str(p) for p in paths)}"
    )
