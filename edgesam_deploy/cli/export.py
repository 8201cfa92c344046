"""``edgesam-deploy export``: write encoder and decoder graphs per target and precision, gate with parity."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import api
from ..bench.host import adds_int8_pairs_in_16_bits, cpu_details
from ..errors import DeployError
from ..exporters.onnx.options import Int8Weights
from ..fileio import check_outputs
from ..manifest import MANIFEST_NAME
from ..parity.report import print_table
from ..vocabulary import ComputeUnit, ScoreKind
from .options import (
    CalibrationDirOpt,
    CalibrationSizeOpt,
    CheckpointOpt,
    Int8WeightsOpt,
    RandomWeightsOpt,
    SearchImagesOpt,
    SearchMarginOpt,
    VariantOpt,
    err_console,
    model_from_options,
    out_console,
    path_option,
)
from .progress import progress_reporter

NO_VNNI_NOTE = (
    "8-bit int8 weights on an x86 CPU without VNNI: ONNX Runtime can saturate them on this host, "
    "so its parity figures understate a VNNI or ARM device's; --int8-weights 7-bit runs right here"
)


def _weight_bits(details: dict) -> int | None:
    """An artifact record's int8 weight width, if it has int8 weights."""
    return details.get("int8_weights", {}).get("bits")


def export(
    target: str = typer.Option(
        ..., "--target", help="coreml, onnx, tflite, executorch, a comma list, or all."
    ),
    out: Path = path_option(
        ..., "--out", help="Export directory (manifest.json is written there)."
    ),
    precision: Optional[str] = typer.Option(
        None,
        "--precision",
        help="Comma list, e.g. fp32,fp16,int8 (int8: each target's recommended int8 variant) "
        "or exact names such as int8-static (default: each target's defaults).",
    ),
    scores: ScoreKind = typer.Option(
        ScoreKind.IOU,
        "--scores",
        help="Decoder 'scores' output: the IoU head or the stability score.",
    ),
    calibration_dir: Optional[Path] = CalibrationDirOpt,
    calibration_size: int = CalibrationSizeOpt,
    num_points: int = typer.Option(
        16,
        "--num-points",
        help="TFLite: one decoder signature per point count N = 1..this (2..64).",
    ),
    max_points: int = typer.Option(
        16, "--max-points", help="Core ML, ExecuTorch: upper bound of the dynamic point count."
    ),
    min_ios: int = typer.Option(
        17, "--min-ios", help="Core ML: minimum deployment target (16, 17, 18)."
    ),
    compute_units: ComputeUnit = typer.Option(
        ComputeUnit.ALL, "--compute-units", help="Core ML: compute units recorded in the metadata."
    ),
    mask_input: bool = typer.Option(
        False,
        "--mask-input",
        help="Decoder that also takes a previous mask (SAM's mask_input, has_mask_input) "
        "for click-by-click refinement, written as decoder-mask-input.<precision>; default: the "
        "official decoder.",
    ),
    min_iou: Optional[float] = typer.Option(
        None,
        "--min-iou",
        help="ONNX int8-static, TFLite int8-full, ExecuTorch int8-static: keep the fewest encoder "
        "blocks float that reach this mean mask IoU, in (0, 1], on held-out photos (default: the "
        "hand-picked float blocks for ONNX; every block int8 for the others); ONNX: the "
        "decoder's too, kept fp32 unless an int8 one reaches it and runs faster.",
    ),
    search_margin: Optional[float] = SearchMarginOpt,
    search_images: Optional[int] = SearchImagesOpt,
    int8_weights: Optional[Int8Weights] = Int8WeightsOpt,
    no_parity: bool = typer.Option(
        False, "--no-parity", help="Skip the parity check after export."
    ),
    json_out: Optional[Path] = path_option(
        None,
        "--json",
        help="Write the parity results as JSON (as `parity --json`).",
        dir_okay=False,
    ),
    junit: Optional[Path] = path_option(
        None, "--junit", help="Write the parity results as JUnit XML.", dir_okay=False
    ),
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: Optional[int] = RandomWeightsOpt,
    variant: str = VariantOpt,
) -> None:
    """Export EdgeSAM's encoder and decoder for each target, record a manifest, and run the parity gate."""
    if no_parity and (json_out or junit):
        raise DeployError("--json and --junit report the parity gate: drop --no-parity")
    check_outputs(
        {"--json": json_out, "--junit": junit, f"--out's {MANIFEST_NAME}": out / MANIFEST_NAME},
        {"--out": out},
    )
    with progress_reporter("export") as report:
        result = api.export(
            out,
            target,
            precision=precision,
            scores=scores,
            calibration_dir=calibration_dir,
            calibration_size=calibration_size,
            num_points=num_points,
            max_points=max_points,
            min_ios=min_ios,
            compute_units=compute_units,
            mask_input=mask_input,
            min_iou=min_iou,
            search_margin=search_margin,
            search_images=search_images,
            int8_weights=int8_weights,
            parity=not no_parity,
            model=lambda: model_from_options(variant, checkpoint, random_weights),
            progress=report,
        )
    console = out_console()
    console.print(f"wrote {len(result.manifest.artifacts)} artifact(s) and {out / 'manifest.json'}")
    for record in result.manifest.artifacts:
        if note := record.details.get("mixed_precision", {}).get("slower_than_fp32"):
            err_console.print(f"note: {record.file}: {note}", markup=False, highlight=False)
    eight_bit = [r.file for r in result.manifest.artifacts if _weight_bits(r.details) == 8]
    if eight_bit and adds_int8_pairs_in_16_bits(cpu_details()):
        err_console.print(
            f"note: {', '.join(eight_bit)}: {NO_VNNI_NOTE}", markup=False, highlight=False
        )
    if result.parity is not None:
        print_table(result.parity.artifacts, console)
        if json_out:
            result.parity.write_json(json_out)
        if junit:
            result.parity.write_junit(junit)
    if not result.passed:
        console.print("[red]parity gate failed for at least one artifact (see above)[/red]")
        raise typer.Exit(1)
