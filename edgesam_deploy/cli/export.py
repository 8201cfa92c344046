"""``edgesam-deploy export``: write encoder and decoder graphs per target and precision, gate with parity."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import DeployError
from ..export import resolve_targets, run_export
from ..exportdir import check_output_dir
from ..exporters import ExportOptions, get_exporter
from ..parity.report import print_table
from .options import CheckpointOpt, RandomWeightsOpt, VariantOpt, model_from_options, out_console
from .progress import progress_reporter


def _split_precisions(text: Optional[str], targets: list[str]) -> dict[str, list[str] | None]:
    """Comma list -> per-target subsets; a precision no chosen target knows is an error."""
    if not text:
        return {t: None for t in targets}
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    known = {t: get_exporter(t).precisions for t in targets}
    unknown = [p for p in wanted if not any(p in k for k in known.values())]
    if unknown:
        choices = sorted({p for k in known.values() for p in k})
        raise DeployError(f"unknown precision {', '.join(unknown)} for {', '.join(targets)}; choose from {', '.join(choices)}")
    return {t: [p for p in wanted if p in known[t]] for t in targets}


def export(
    target: str = typer.Option(..., "--target", help="coreml, onnx, tflite, a comma list, or all."),
    out: Path = typer.Option(..., "--out", help="Export directory (manifest.json is written there)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Comma list, e.g. fp32,fp16,int8-static (default: each target's defaults)."),
    scores: str = typer.Option("iou", "--scores", help="Decoder 'scores' output: iou (IoU head) or stability."),
    calibration_dir: Optional[Path] = typer.Option(None, "--calibration-dir", help="Your own images for int8 calibration (default: scikit-image photos)."),
    calibration_size: int = typer.Option(8, "--calibration-size", help="Number of calibration images."),
    num_points: int = typer.Option(16, "--num-points", help="TFLite: the decoder gets one signature per point count N = 1..this (points + box corners or padding point)."),
    max_points: int = typer.Option(16, "--max-points", help="Core ML: upper bound of the flexible point count."),
    min_ios: int = typer.Option(17, "--min-ios", help="Core ML: minimum deployment target (16, 17, 18)."),
    compute_units: str = typer.Option("ALL", "--compute-units", help="Core ML: ALL, CPU_AND_NE, CPU_AND_GPU or CPU_ONLY (recorded in the metadata)."),
    no_parity: bool = typer.Option(False, "--no-parity", help="Skip the parity check after export."),
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: Optional[int] = RandomWeightsOpt,
    variant: str = VariantOpt,
) -> None:
    """Export EdgeSAM's encoder and decoder for each target, record a manifest, and run the parity gate."""
    if scores not in ("iou", "stability"):
        raise DeployError("--scores must be iou or stability")
    if min_ios not in (16, 17, 18):
        raise DeployError("--min-ios must be 16, 17 or 18")
    if compute_units not in ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY"):
        raise DeployError("--compute-units must be ALL, CPU_AND_NE, CPU_AND_GPU or CPU_ONLY")
    if calibration_size < 1:
        raise DeployError("--calibration-size must be at least 1")
    if not 1 <= num_points <= 64 or not 1 <= max_points <= 64:
        raise DeployError("--num-points and --max-points must be between 1 and 64")
    targets = resolve_targets(target)
    per_target = _split_precisions(precision, targets)
    targets = [t for t in targets if per_target[t] != []]
    for t in targets:
        get_exporter(t).check_dependencies()
    check_output_dir(out)
    model, source = model_from_options(variant, checkpoint, random_weights)
    console = out_console()
    results = []
    with progress_reporter("export") as report:
        for t in targets:
            options = ExportOptions(
                precisions=per_target[t], scores=scores,  # type: ignore[arg-type]
                calibration_dir=calibration_dir, calibration_size=calibration_size, num_points=num_points,
                max_points=max_points, min_ios=min_ios, compute_units=compute_units,
            )
            manifest, res = run_export(model, source, [t], out, options, run_parity=not no_parity, progress=report)
            results.extend(res)
    console.print(f"wrote {len(manifest.artifacts)} artifact(s) and {out / 'manifest.json'}")
    if results:
        print_table(results, console)
        if not all(r.passed for r in results):
            console.print("[red]parity gate failed for at least one artifact (see above)[/red]")
            raise typer.Exit(1)
