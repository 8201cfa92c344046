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
from .mixed import Progress, Scan, scan_path, search_record, searched_path
from .sensitivity import Block, Measurement, sensitivity_order
from .tflite_sensitivity import TfliteEvaluator, latency_ms

# step 0 of every greedy path
DEFAULT_RECIPE = "the export's default int8-full recipe: every block int8, FloatKept op types float"


def _latencies(ev: TfliteEvaluator, path: list[Measurement], runs: int) -> dict[str, float]:
    """Median ms of fp32 and of every step of ``path``, interleaved, on the first feed."""
    models = {"fp32": ev.source, **{m.label: m.model for m in path}}
    return latency_ms(models, ev.feeds[0], runs, ev.threads)


def run_tflite_scan(
    ev: TfliteEvaluator, blocks: list[Block], runs: int, progress: Progress = lambda m: None
) -> Scan:
    """Scan ``blocks`` (the others stay int8), search over them, and time fp32 and every step of
    the greedy path interleaved. ``Scan.hand_picked`` is step 0: the default recipe."""
    single, path = scan_path(ev, blocks, progress)
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
    is a DeployError, and so is one met only with every block float: that step is the fp32
    encoder (``TfliteEvaluator.measure``), not an int8-full one. Returns the chosen measurement
    and ``details.mixed_precision``."""
    single, path = searched_path(ev, ev.blocks if blocks is None else blocks, progress)
    found = path[-1]
    if found.details["recipe"] is None:
        raise DeployError(
            "--min-iou: on the scoring photos the target is met only with every op float, which "
            f"is the fp32 encoder ({path[-2].label} missed it: {'; '.join(path[-2].failures)}); "
            "export --precision fp32, or lower --min-iou or --search-margin"
        )
    progress("search: latency of every step, interleaved with fp32 (LiteRT)")
    ms = _latencies(ev, path, runs)
    details = search_record(ev, single, path, ms, runs, found.label) | {
        "runtime": "litert (XNNPACK)",
        "threads": ev.threads,
        "float_scopes": found.details["float_blocks"],
        "default_recipe": f"step 0 ({path[0].label}) is {DEFAULT_RECIPE}",
    }
    return found, details
