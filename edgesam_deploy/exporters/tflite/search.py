"""The TFLite int8-full encoder's mixed-precision search and sensitivity scan on an export's
context (docs/tflite.md, "Mixed precision chosen by measurement")."""

from __future__ import annotations

import time
from typing import Any

from ...quantization.mixed import Scan
from ...quantization.search_target import search_target
from ...quantization.sensitivity import scoring_reference, select_blocks
from ...quantization.tflite_mixed import run_tflite_scan, tflite_search
from ...quantization.tflite_sensitivity import TfliteEvaluator
from ...vocabulary import Precision
from ..base import ExportContext
from ..search_options import SearchableOptions, calibrated_on

SEARCH_LATENCY_RUNS = 5


def int8_full_evaluator(
    ctx: ExportContext, source: bytes, search: SearchableOptions
) -> TfliteEvaluator:
    """A ``TfliteEvaluator`` of the fp32 flatbuffer ``source``: activation ranges from ``ctx``'s
    calibration images, judged on ``search.scoring_images`` held-out photos against the int8-full
    gate with its mean mask IoU set to ``search.min_iou`` and its min-IoU floor raised by
    ``search.margin``."""
    assert search.min_iou is not None  # the search's options, not an export's without --min-iou
    reference = scoring_reference(ctx.model, search.scoring_images)
    feeds = [{"image": x} for x in ctx.calibration_images]
    target = search_target(search.min_iou, search.margin, Precision.INT8_FULL)
    return TfliteEvaluator(source, feeds, reference, target, calibrated_on(ctx))


def searched_int8_full_encoder(
    ctx: ExportContext, source: bytes, search: SearchableOptions
) -> tuple[bytes, dict[str, Any]]:
    """The int8-full encoder of ``source`` whose fewest float blocks reach ``search``'s target on
    its held-out photos (``int8_full_evaluator``) -> (flatbuffer, the record's
    ``quantization.recipe`` and ``mixed_precision``)."""
    ev = int8_full_evaluator(ctx, source, search)
    ctx.progress(
        f"tflite: mixed-precision search for mean mask IoU {search.min_iou:g}, min-IoU margin "
        f"{search.margin:g}, on {', '.join(ev.reference.photo_names)}"
    )
    chosen, record = tflite_search(ev, SEARCH_LATENCY_RUNS, ctx.progress)
    record["search_margin"] = search.margin
    return chosen.model, {"recipe": chosen.details["recipe"], "mixed_precision": record}


def scan_int8_full_encoder(
    ctx: ExportContext,
    blocks: list[str] | None,
    search: SearchableOptions,
    alphas: tuple[float, ...] | None = None,
    runs: int = SEARCH_LATENCY_RUNS,
) -> Scan:
    """The sensitivity scan (``quantization.mixed.Scan``) of the int8-full encoder's ``blocks``
    (None: all) judged on ``search``'s held-out photos, with the greedy path to its target; the source
    is the equalized encoder the export would quantize (strength chosen among ``alphas``)."""
    from .convert import TfliteExporter  # convert imports this module

    start = time.perf_counter()
    converted: dict[float, bytes] = {}
    _, equalization = TfliteExporter.equalized_int8_encoder(
        ctx, Precision.INT8_FULL, converted, alphas
    )
    ev = int8_full_evaluator(ctx, converted[equalization["alpha"]], search)
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
