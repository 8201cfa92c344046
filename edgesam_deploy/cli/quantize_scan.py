"""``edgesam-deploy quantize-scan``: int8 sensitivity per encoder block, and the greedy path to a
mean-IoU target, measured on held-out photos: ONNX int8-static (docs/mixed-precision.md),
TFLite int8-full (docs/tflite.md) or ExecuTorch int8-static (docs/executorch.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import DeployError
from ..exporters import ExportOptions
from ..exporters.base import ExportContext
from ..exporters.executorch.options import ExecutorchOptions
from ..exporters.onnx.options import OnnxOptions
from ..exporters.search_options import SearchableOptions
from ..exporters.tflite.options import TfliteOptions
from ..parity.thresholds import thresholds_for
from ..quantization.sensitivity import check_block_names
from ..vocabulary import Precision, Role, Target
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

SCANNED = {
    Target.ONNX: Precision.INT8_STATIC,
    Target.TFLITE: Precision.INT8_FULL,
    Target.EXECUTORCH: Precision.INT8_STATIC,
}
OPTIONS: dict[Target, type[SearchableOptions]] = {
    Target.ONNX: OnnxOptions,
    Target.TFLITE: TfliteOptions,
    Target.EXECUTORCH: ExecutorchOptions,
}


def quantize_scan(
    out: Path = typer.Option(..., "--out", help="Folder for scan.json, scan.md and scan.png."),
    target: str = typer.Option(
        "onnx",
        "--target",
        help="onnx (int8-static, ONNX Runtime), tflite (int8-full, LiteRT) or executorch "
        "(int8-static, XNNPACK).",
    ),
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
    """Scan which encoder blocks lose accuracy in int8 (ONNX, TFLite or ExecuTorch)."""
    if target not in SCANNED:
        raise DeployError(f"--target {target}: quantize-scan takes onnx, tflite or executorch")
    kind, precision = Target(target), SCANNED[Target(target)]
    names = check_block_names(b.strip() for b in blocks.split(",") if b.strip()) if blocks else None
    gate = thresholds_for(precision, Role.ENCODER)["mask_iou_mean"][1]
    search = OPTIONS[kind](
        (precision,),
        min_iou=gate if min_iou is None else min_iou,
        search_margin=search_margin,
        search_images=search_images,
    )
    model, source = model_from_options(variant, checkpoint, random_weights)
    options = ExportOptions(calibration_dir=calibration_dir, calibration_size=calibration_size)
    with progress_reporter("quantize-scan") as report:
        ctx = ExportContext(model, source, out, options, progress=report)
        alphas = None if alpha is None else (alpha,)
        scan, write = _scanner(kind)
        scan = scan(ctx, names, search, alphas, runs)
        paths = write(scan, out)
    reached = "meets" if scan.chosen.meets else "does not meet"
    out_console().print(
        f"{len(scan.blocks)} block(s) scanned; {scan.chosen.label} {reached} the target; "
        f"wrote {', '.join(str(p) for p in paths)}"
    )


def _scanner(target: Target) -> tuple[Any, Any]:
    """(scan function, report writer) of ``target``'s int8 encoder."""
    if target == Target.ONNX:
        from ..exporters.onnx.convert import scan_int8_encoder
        from ..quantization.scan_report import write_scan

        return scan_int8_encoder, write_scan
    if target == Target.EXECUTORCH:
        from ..exporters.executorch.search import scan_int8_encoder as scan_executorch
        from ..exporters.executorch.search import write_scan as write_executorch_scan

        return scan_executorch, write_executorch_scan
    from ..exporters.tflite.search import scan_int8_full_encoder
    from ..quantization.tflite_scan_report import write_scan as write_tflite_scan

    return scan_int8_full_encoder, write_tflite_scan
