"""``edgesam-deploy quantize-scan``: int8 sensitivity per encoder (or ONNX decoder) block, and the
greedy path to a mean-IoU target, measured on held-out photos: ONNX int8-static or fp16
(docs/mixed-precision.md), TFLite int8-full (docs/tflite.md) or ExecuTorch int8-static
(docs/executorch.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .. import api
from ..errors import DeployError
from ..exporters import ExportOptions
from ..exporters.base import ExportContext
from ..exporters.executorch.options import ExecutorchOptions
from ..exporters.onnx.options import Int8Weights, OnnxOptions
from ..exporters.search_options import SearchableOptions
from ..exporters.tflite.options import TfliteOptions
from ..fileio import check_outputs
from ..parity.thresholds import thresholds_for
from ..quantization.scan_report import SCAN_FILES
from ..quantization.search_target import check_margin
from ..quantization.sensitivity import BLOCK_HELP, check_block_names
from ..vocabulary import Precision, Role, Target
from .options import (
    CalibrationDirOpt,
    CalibrationSizeOpt,
    CheckpointOpt,
    Int8WeightsOpt,
    RandomWeightsOpt,
    SearchImagesOpt,
    SearchMarginOpt,
    VariantOpt,
    model_from_options,
    out_console,
    path_option,
)
from .progress import progress_reporter

SCANNED = {  # the precision each target's scan reduces to by default
    Target.ONNX: Precision.INT8_STATIC,
    Target.TFLITE: Precision.INT8_FULL,
    Target.EXECUTORCH: Precision.INT8_STATIC,
}
OPTIONS: dict[Target, type[SearchableOptions]] = {
    Target.ONNX: OnnxOptions,
    Target.TFLITE: TfliteOptions,
    Target.EXECUTORCH: ExecutorchOptions,
}
FP16_TARGETS = (Target.ONNX,)  # TFLite fp16 is weights only: nothing per block to scan at run time


def quantize_scan(
    out: Path = path_option(..., "--out", help="Folder for scan.json, scan.md and scan.png."),
    target: str = typer.Option(
        "onnx",
        "--target",
        help="onnx (int8-static, ONNX Runtime), tflite (int8-full, LiteRT) or executorch "
        "(int8-static, XNNPACK).",
    ),
    graph: str = typer.Option(
        "encoder",
        "--graph",
        help="encoder, or decoder (ONNX only: the rewritten decoder's blocks, timed at 1 and 16 "
        "points).",
    ),
    fp16: bool = typer.Option(
        False,
        "--fp16",
        help="Scan fp16 instead of int8: blocks kept float32 one at a time (onnx only).",
    ),
    blocks: Optional[str] = typer.Option(
        None,
        "--blocks",
        help="Comma list of blocks to scan (encoder: stem, block1..block26, fuse2, fuse3, neck; "
        f"decoder: {BLOCK_HELP[Role.DECODER]}); the others stay int8. Default: every block.",
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
    int8_weights: Optional[Int8Weights] = Int8WeightsOpt,
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: Optional[int] = RandomWeightsOpt,
    variant: str = VariantOpt,
) -> None:
    """Scan which encoder (or ONNX decoder) blocks lose accuracy in int8 (ONNX int8-static,
    TFLite int8-full or ExecuTorch int8-static) or which encoder blocks lose it in fp16 (ONNX,
    --fp16)."""
    if target not in SCANNED:
        raise DeployError(f"--target {target}: quantize-scan takes onnx, tflite or executorch")
    if graph not in list(Role):
        raise DeployError(f"--graph {graph}: quantize-scan takes encoder or decoder")
    kind, role = Target(target), Role(graph)
    if role == Role.DECODER and kind != Target.ONNX:
        raise DeployError(f"--graph decoder: scanned for --target onnx only, not {kind}")
    if role == Role.DECODER and (alpha is not None or fp16):
        raise DeployError(
            "--alpha and --fp16 are the encoder's scan options: not with --graph decoder"
        )
    if fp16 and kind not in FP16_TARGETS:
        raise DeployError(f"--fp16: the fp16 scan is for {', '.join(FP16_TARGETS)}")
    if fp16 and alpha is not None:
        raise DeployError("--alpha: equalization belongs to the int8 scan, not to --fp16")
    if int8_weights is not None and (kind != Target.ONNX or fp16):
        raise DeployError("--int8-weights: the ONNX int8 scan's option (--target onnx, no --fp16)")
    precision = Precision.FP16 if fp16 else SCANNED[kind]
    listed = api.comma_list("--blocks", blocks)
    names = None if listed is None else check_block_names(listed, role)
    gate = thresholds_for(precision, role)["mask_iou_mean"][1]
    search = OPTIONS[kind](
        (precision,),
        min_iou=gate if min_iou is None else min_iou,
        search_margin=search_margin,
        search_images=search_images,
        **({} if int8_weights is None else {"int8_weights": int8_weights}),
    )
    check_margin(search.margin_for(precision), precision)  # before the model loads
    check_outputs({f"--out's {name}": out / name for name in SCAN_FILES}, {"--out": out})
    model, source = model_from_options(variant, checkpoint, random_weights)
    options = ExportOptions(calibration_dir=calibration_dir, calibration_size=calibration_size)
    with progress_reporter("quantize-scan") as report:
        ctx = ExportContext(model, source, out, options, progress=report)
        if fp16:
            from ..exporters.onnx.convert import scan_fp16_encoder
            from ..quantization.scan_report import write_scan

            scan = scan_fp16_encoder(ctx, names, search, runs)
            paths = write_scan(scan, out)
        else:
            alphas = None if alpha is None else (alpha,)
            scan, write = _scanner(kind, role)
            scan = scan(ctx, names, search, alphas, runs)
            paths = write(scan, out)
    reached = "meets" if scan.chosen.meets else "does not meet"
    out_console().print(
        f"{len(scan.blocks)} block(s) scanned; {scan.chosen.label} {reached} the target; "
        f"wrote {', '.join(str(p) for p in paths)}"
    )


def _scanner(target: Target, role: Role) -> tuple[Any, Any]:
    """(scan function, report writer) of ``target``'s int8 ``role`` graph."""
    if target == Target.ONNX:
        from ..exporters.onnx.convert import scan_int8_decoder, scan_int8_encoder
        from ..quantization.scan_report import write_scan

        return (scan_int8_encoder if role == Role.ENCODER else scan_int8_decoder), write_scan
    if target == Target.EXECUTORCH:
        from ..exporters.executorch.search import scan_int8_encoder as scan_executorch
        from ..exporters.executorch.search import write_scan as write_executorch_scan

        return scan_executorch, write_executorch_scan
    from ..exporters.tflite.search import scan_int8_full_encoder
    from ..quantization.tflite_scan_report import write_scan as write_tflite_scan

    return scan_int8_full_encoder, write_tflite_scan
