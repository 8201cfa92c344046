"""``edgesam-deploy export``: write encoder and decoder graphs per target and precision, gate with parity."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import DeployError
from ..exportdir import check_output_dir
from ..exporters import ExportOptions, TargetOptions, get_exporter
from ..exporters.coreml.options import CoremlOptions
from ..exporters.executorch.options import ExecutorchOptions
from ..exporters.onnx.options import OnnxOptions
from ..exporters.pipeline import resolve_targets, run_export
from ..exporters.tflite.options import TfliteOptions
from ..parity.report import print_table
from ..vocabulary import ComputeUnit, ScoreKind, Target
from .options import CheckpointOpt, RandomWeightsOpt, VariantOpt, model_from_options, out_console
from .progress import progress_reporter


def split_precisions(
    text: Optional[str], targets: list[Target]
) -> dict[Target, tuple[str, ...] | None]:
    """Comma list -> per-target subsets (None: the target's defaults). A name may be a precision
    or an alias such as ``int8`` (each target's recommended variant); one that no chosen target
    knows is an error."""
    if not text:
        return {t: None for t in targets}
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    exporters = {t: get_exporter(t) for t in targets}
    unknown = [p for p in wanted if not any(e.knows(p) for e in exporters.values())]
    if unknown:
        choices = sorted({str(p) for e in exporters.values() for p in (*e.precisions, *e.aliases)})
        raise DeployError(
            f"unknown precision {', '.join(unknown)} for {', '.join(targets)}; choose from "
            f"{', '.join(choices)}"
        )
    return {t: tuple(p for p in wanted if e.knows(p)) for t, e in exporters.items()}


def export(
    target: str = typer.Option(
        ..., "--target", help="coreml, onnx, tflite, executorch, a comma list, or all."
    ),
    out: Path = typer.Option(
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
    calibration_dir: Optional[Path] = typer.Option(
        None,
        "--calibration-dir",
        help="Your own images for int8 calibration (default: scikit-image photos).",
    ),
    calibration_size: int = typer.Option(
        8, "--calibration-size", min=1, help="Number of calibration images."
    ),
    num_points: int = typer.Option(
        16,
        "--num-points",
        help="TFLite: one decoder signature per point count N = 1..this (1..64).",
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
        help="ONNX int8-static: keep the fewest encoder blocks float that reach this mean mask "
        "IoU, in (0, 1], on the calibration images (default: the hand-picked float blocks).",
    ),
    no_parity: bool = typer.Option(
        False, "--no-parity", help="Skip the parity check after export."
    ),
    checkpoint: Optional[Path] = CheckpointOpt,
    random_weights: Optional[int] = RandomWeightsOpt,
    variant: str = VariantOpt,
) -> None:
    """Export EdgeSAM's encoder and decoder for each target, record a manifest, and run the parity gate."""
    targets = resolve_targets(target)
    per_target = split_precisions(precision, targets)
    targets = [t for t in targets if per_target[t] != ()]
    builders: dict[Target, TargetOptions] = {
        Target.ONNX: OnnxOptions(per_target.get(Target.ONNX), min_iou),
        Target.TFLITE: TfliteOptions(
            per_target.get(Target.TFLITE), tuple(range(1, num_points + 1))
        ),
        Target.COREML: CoremlOptions(
            per_target.get(Target.COREML), min_ios, compute_units, max_points
        ),
        Target.EXECUTORCH: ExecutorchOptions(per_target.get(Target.EXECUTORCH), max_points),
    }
    options = ExportOptions(
        scores=scores,
        calibration_dir=calibration_dir,
        calibration_size=calibration_size,
        mask_input=mask_input,
        targets={t: builders[t] for t in targets},
    )
    check_output_dir(out)
    model, source = model_from_options(variant, checkpoint, random_weights)
    with progress_reporter("export") as report:
        manifest, results = run_export(
            model, source, targets, out, options, run_parity=not no_parity, progress=report
        )
    console = out_console()
    console.print(f"wrote {len(manifest.artifacts)} artifact(s) and {out / 'manifest.json'}")
    if results:
        print_table(results, console)
        if not all(r.passed for r in results):
            console.print("[red]parity gate failed for at least one artifact (see above)[/red]")
            raise typer.Exit(1)
