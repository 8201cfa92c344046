"""The TFLite int8-full encoder's mixed-precision search and sensitivity scan on an export's
context (docs/tflite.md, "Mixed precision chosen by measurement")."""

from __future__ import annotations

import time
from typing import Any

from ...quantization.mixed import Scan
from ...quantization.search_target import search_target
from ...quantization.sensitivity import calibration_reference, select_blocks
from ...quantization.tflite_mixed import run_tflite_scan, tflite_search
from ...quantization.tflite_sensitivity import TfliteEvaluator
from ...vocabulary import Precision
from ..base import ExportContext

SEARCH_LATENCY_RUNS = 5


def int8_full_evaluator(ctx: ExportContext, source: bytes, min_iou: float) -> TfliteEvaluator:
    """A ``TfliteEvaluator`` of the fp32 flatbuffer ``source`` on ``ctx``'s calibration images,
    aiming at the int8-full gate with its mean mask IoU set to ``min_iou``."""
    opts = ctx.options
    reference = calibration_reference(ctx.model, opts.calibration_dir, opts.calibration_size)
    feeds = [{"image": x} for x in ctx.calibration_images]
    target = search_target(min_iou, precision=Precision.INT8_FULL)
    return TfliteEvaluator(source, feeds, reference, target)


def searched_int8_full_encoder(
    ctx: ExportContext, source: bytes, min_iou: float
) -> tuple[bytes, dict[str, Any]]:
    """The int8-full encoder of ``source`` whose fewest float blocks reach ``min_iou`` (and the
    int8 gate's other floors) on the calibration images -> (flatbuffer, the record's
    ``quantization.recipe`` and ``mixed_precision``)."""
    ev = int8_full_evaluator(ctx, source, min_iou)
    ctx.progress(f"tflite: mixed-precision search for mean mask IoU {min_iou:g}")
    chosen, record = tflite_search(ev, SEARCH_LATENCY_RUNS, ctx.progress)
    return chosen.model, {"recipe": chosen.details["recipe"], "mixed_precision": record}


def scan_int8_full_encoder(
    ctx: ExportContext,
    blocks: list[str] | None,
    min_iou: float,
    alphas: tuple[float, ...] | None = None,
    runs: int = SEARCH_LATENCY_RUNS,
) -> Scan:
    """The sensitivity scan (``quantization.mixed.Scan``) of the int8-full encoder's ``blocks``
    (None: all) on ``ctx``'s calibration images, with the greedy path to ``min_iou``; the source
    is the equalized encoder the export would quantize (strength chosen among ``alphas``)."""
    from .convert import TfliteExporter  # convert imports this module

    start = time.perf_counter()
    converted: dict[float, bytes] = {}
    _, equalization = TfliteExporter.equalized_int8_encoder(
        ctx, Precision.INT8_FULL, converted, alphas
    )
    ev = int8_full_evaluator(ctx, converted[equalization["alpha"]], min_iou)
    chosen = select_blocks(ev.blocks, blocks) if blocks else ev.blocks
    scan = run_tflite_scan(ev, chosen, runs, ctx.progress)
    scan.facts = {
        "calibration_images": len(ctx.calibration_images),
        "calibration": ctx.calibration_source().get("photos", ctx.calibration_source()["source"]),
        "equalization_alpha": equalization["alpha"],
        "latency_runs": runs,
        "threads": ev.threads,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return scan
