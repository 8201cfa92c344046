"""Mixed precision of the TFLite int8-full encoder chosen by measurement: the ONNX scan's blocks,
single-block rows, sensitivity order and greedy path (``quantization.mixed``), measured by
``tflite_sensitivity.TfliteEvaluator`` and timed in the LiteRT interpreter.

The export's default int8-full recipe is step 0 of the greedy path (every block int8, the
``FloatKept`` op types float), so it needs no separate comparison: if it meets the target the
search returns it unchanged.
"""

from __future__ import annotations

from typing import Any

from ..errors import DeployError
from .mixed import Progress, Scan, greedy, single_block_rows
from .sensitivity import Block, Measurement, sensitivity_order
from .tflite_sensitivity import TfliteEvaluator, latency_ms

# step 0 of every greedy path
DEFAULT_RECIPE = "the export's default int8-full recipe: every block int8, FloatKept op types float"
_KEYS = ("emb_cosine_min", "mask_iou_mean", "mask_iou_min")


def _path(
    ev: TfliteEvaluator, blocks: list[Block], progress: Progress
) -> tuple[dict[str, Measurement], list[Measurement]]:
    """Each of ``blocks`` alone int8, then the greedy path over them, most sensitive first
    (``mixed``'s functions call only ``ev.only``, ``ev.measure`` and ``ev.target``)."""
    single = single_block_rows(ev, blocks, progress)
    by_name = {b.name: b for b in blocks}
    order = [by_name[n] for n in sensitivity_order(single)]
    return single, greedy(ev, order, progress)


def _latencies(ev: TfliteEvaluator, path: list[Measurement], runs: int) -> dict[str, float]:
    """Median ms of fp32 and of every step of ``path``, interleaved, on the first feed."""
    models = {"fp32": ev.source, **{m.label: m.model for m in path}}
    return latency_ms(models, ev.feeds[0], runs, ev.threads)


def run_tflite_scan(
    ev: TfliteEvaluator, blocks: list[Block], runs: int, progress: Progress = lambda m: None
) -> Scan:
    """Scan ``blocks`` (the others stay int8), search over them, and time fp32 and every step of
    the greedy path interleaved. ``Scan.hand_picked`` is step 0: the default recipe."""
    single, path = _path(ev, blocks, progress)
    progress("scan: whole-encoder latency of every step, interleaved with fp32 (LiteRT)")
    ms = _latencies(ev, path, runs)
    order = sensitivity_order(single)
    return Scan(blocks, single, order, path, path[0], ev.target, latency_ms=ms)


def tflite_search(
    ev: TfliteEvaluator,
    runs: int,
    progress: Progress = lambda m: None,
    blocks: list[Block] | None = None,
) -> tuple[Measurement, dict[str, Any]]:
    """The int8-full encoder to export for ``ev.target``: the greedy result over ``blocks``
    (default every block; the others stay int8). A target that every block float does not meet
    is a DeployError. Returns the chosen measurement and ``details.mixed_precision``."""
    single, path = _path(ev, ev.blocks if blocks is None else blocks, progress)
    found = path[-1]
    if not found.meets:
        raise DeployError(
            f"--min-iou: the target is not met on the calibration images even with "
            f"{', '.join(found.floated)} float ({'; '.join(found.failures)})"
        )
    progress("search: latency of every step, interleaved with fp32 (LiteRT)")
    ms = _latencies(ev, path, runs)
    details = {
        "target": {k: list(v) for k, v in ev.target.items()},
        "measured_on": f"{len(ev.reference.cases)} calibration images x standard prompts",
        "runtime": "litert (XNNPACK)",
        "threads": ev.threads,
        "sensitivity_order": sensitivity_order(single),
        "block_alone_int8": {name: [m.summary()[k] for k in _KEYS] for name, m in single.items()},
        "blocks_kept_float": list(found.floated),
        "float_scopes": found.details["float_blocks"],
        "steps": [m.summary() for m in path],
        "default_recipe": f"step 0 ({path[0].label}) is {DEFAULT_RECIPE}",
        "latency_ms_median": {k: round(v, 1) for k, v in ms.items()},
        "runs": runs,
    }
    return found, details
