"""The ExecuTorch int8-static encoder's mixed-precision search and sensitivity scan on an export's
context (docs/executorch.md, "Mixed precision chosen by measurement"): the ONNX scan's blocks,
single-block rows, sensitivity order and greedy path (``quantization.mixed``), each candidate a
lowered ``.pte`` judged and timed in the ExecuTorch runtime (``sensitivity.ExecutorchEvaluator``).

The export's default int8-static encoder is step 0 of the greedy path (every block int8), so it
needs no separate comparison: if it meets the target the search returns it unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...quantization.mixed import Scan, path_search, run_path_scan
from ...quantization.scan_report import base_table, write_table
from ...quantization.search_target import search_target
from ...quantization.sensitivity import scoring_reference, select_blocks
from ...quantization.tflite_scan_report import markdown
from ...vocabulary import Role
from ..base import ExportContext
from ..search_options import calibrated_on
from .checks import Census
from .options import ExecutorchOptions
from .quantize import calibration_feeds
from .rewrites import delegable
from .sensitivity import ExecutorchEvaluator

SEARCH_LATENCY_RUNS = 5
RUNTIME = "ExecuTorch runtime, XNNPACK delegate, int8-static (pt2e XNNPACKQuantizer)"
DEFAULT_INT8 = "the export's default int8-static encoder: every block int8"


def int8_evaluator(
    ctx: ExportContext, alpha: float, search: ExecutorchOptions
) -> ExecutorchEvaluator:
    """An ``ExecutorchEvaluator`` of the encoder equalized with ``alpha`` (rewritten as the export
    quantizes it): activation ranges from ``ctx``'s calibration images, judged on
    ``search.scoring_images`` held-out photos against the int8 gate with its mean mask IoU set to
    ``search.min_iou`` and its min-IoU floor raised by ``search.margin``."""
    assert search.min_iou is not None  # the search's options, not an export's without --min-iou
    encoder, _ = ctx.equalized_encoder(alpha)
    return ExecutorchEvaluator(
        delegable(encoder)[0],
        ctx.spec(Role.ENCODER),
        calibration_feeds(ctx.calibration_images),
        scoring_reference(ctx.model, search.scoring_images),
        search_target(search.min_iou, search.margin),
        calibrated_on(ctx),
        search.max_points,
    )


def _default_note(label: str) -> str:
    return f"step 0 ({label}) is {DEFAULT_INT8}"


def searched_int8_encoder(
    ctx: ExportContext,
    opts: ExecutorchOptions,
    default: tuple[bytes, Census, dict[str, Any]],
) -> tuple[bytes, Census, dict[str, Any]]:
    """The int8-static encoder whose fewest float blocks reach ``opts``' target on its held-out
    photos, from the equalization the export chose; ``default``: the export's default int8
    encoder (``.pte`` bytes, census, record details), step 0 of the path -> (``.pte`` bytes,
    census, its ``details`` with the float modules and ``mixed_precision``)."""
    data, census, details = default
    ev = int8_evaluator(ctx, details["equalization"]["alpha"], opts)
    ev.adopt_default(data, census)
    ctx.progress(
        f"executorch: mixed-precision search for mean mask IoU {opts.min_iou:g}, min-IoU margin "
        f"{opts.margin:g}, on {', '.join(ev.reference.photo_names)}"
    )
    chosen, record = path_search(ev, SEARCH_LATENCY_RUNS, ctx.progress)
    record |= {
        "search_margin": opts.margin,
        "runtime": RUNTIME,
        "threads": ev.threads,
        "float_modules": chosen.details["float_modules"],
        "default_int8": _default_note(record["steps"][0]["label"]),
    }
    details["quantization"]["float_modules"] = chosen.details["float_modules"]
    return chosen.model, chosen.details["census"], details | {"mixed_precision": record}


def scan_int8_encoder(
    ctx: ExportContext,
    blocks: list[str] | None,
    search: ExecutorchOptions,
    alphas: tuple[float, ...] | None = None,
    runs: int = SEARCH_LATENCY_RUNS,
) -> Scan:
    """The sensitivity scan (``quantization.mixed.Scan``) of the int8-static encoder's ``blocks``
    (None: all) judged on ``search``'s held-out photos, with the greedy path to its target; the
    source is the equalized encoder the export would quantize (strength chosen among ``alphas``)."""
    from .convert import ExecutorchExporter  # convert imports this module

    start = time.perf_counter()
    data, census, details = ExecutorchExporter.int8_encoder(ctx, search, alphas)
    alpha = details["equalization"]["alpha"]
    ev = int8_evaluator(ctx, alpha, search)
    ev.adopt_default(data, census)
    chosen = select_blocks(ev.blocks, blocks) if blocks else ev.blocks
    scan = run_path_scan(ev, chosen, runs, ctx.progress)
    scan.facts = {
        "calibration_images": len(ctx.calibration_images),
        "calibration": ctx.calibration_source().get("photos", ctx.calibration_source()["source"]),
        "equalization_alpha": alpha,
        "latency_runs": runs,
        "threads": ev.threads,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return scan


def write_scan(scan: Scan, out_dir: Path) -> list[Path]:
    """The scan's ``scan.json``, ``scan.md`` and ``scan.png`` in ``out_dir`` (the TFLite report's
    layout: blocks, then the greedy path); their paths."""
    table = {"runtime": RUNTIME, **base_table(scan, scan.path)}
    table["default_recipe"] = _default_note(scan.path[0].label)
    return write_table(table, markdown(table), out_dir)
