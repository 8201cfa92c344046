"""Mixed precision chosen by measurement: which encoder blocks stay float in an int8 graph.

The scan quantizes one block at a time (everything else float) and ranks the blocks by how much
that alone costs; the greedy search starts from every block int8 and keeps the next most sensitive
block float until the combined graph, measured each time, meets the target. The target uses the
int8 parity gate's statistics, its min-IoU floor raised by a margin (``search_target``), on
held-out scoring photos: not the images that calibrated the activation ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeployError
from ..parity.thresholds import Threshold
from .onnx_quant import Int8Policy
from .sensitivity import (
    SUMMARY_KEYS,
    Block,
    Evaluator,
    Measurement,
    latency_ms,
    profile_by_block,
    sensitivity_order,
)

Progress = Callable[[str], None]


def single_block_rows(
    ev: Evaluator, blocks: list[Block], progress: Progress = lambda m: None
) -> dict[str, Measurement]:
    """Block name -> the encoder with only that block int8, judged on the scoring photos."""
    out = {}
    for i, block in enumerate(blocks, 1):
        progress(f"scan: {block.name} alone int8 ({i}/{len(blocks)})")
        out[block.name] = ev.only(block)
    return out


def greedy(
    ev: Evaluator, order: list[Block], progress: Progress = lambda m: None
) -> list[Measurement]:
    """Steps k = 0, 1, ...: the ``k`` first blocks of ``order`` kept float, the rest int8, each
    combined graph measured; stops at the first step that meets ``ev.target``, or after every
    block of ``order`` is float (the last step then does not meet it)."""
    steps = []
    for k in range(len(order) + 1):
        progress(f"search: {k} block(s) float")
        steps.append(ev.measure(order[:k], f"{k} float"))
        if steps[-1].meets:
            break
    return steps


@dataclass
class Scan:
    """A sensitivity scan: each block alone int8, the greedy path to the target, the hand-picked
    policy for comparison, ONNX Runtime's profile per block and whole-graph latencies."""

    blocks: list[Block]
    single: dict[str, Measurement]
    order: list[str]
    path: list[Measurement]
    hand_picked: Measurement
    target: dict[str, Threshold]
    profile_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # fp32 | int8 -> block
    latency_ms: dict[str, float] = field(default_factory=dict)  # fp32 | candidate label -> ms
    facts: dict[str, Any] = field(default_factory=dict)  # images, alpha, runs, seconds

    @property
    def chosen(self) -> Measurement:
        return self.path[-1]


def run_scan(
    ev: Evaluator,
    blocks: list[Block],
    hand_picked: Int8Policy,
    runs: int,
    progress: Progress = lambda m: None,
) -> Scan:
    """Scan ``blocks``, search over them (the other blocks stay int8), measure the hand-picked
    policy, profile fp32 vs all-int8 per block, and time fp32 and every candidate interleaved."""
    single, path = scan_path(ev, blocks, progress)
    order = sensitivity_order(single)
    progress("scan: the hand-picked policy")
    hand = ev.measure_policy(hand_picked, "hand-picked")
    feed = ev.feeds[0]
    progress("scan: ONNX Runtime profiles, fp32 and all-int8")
    profile = {
        "fp32": profile_by_block(ev.source, feed, ev.blocks, runs),
        "int8": profile_by_block(path[0].model, feed, ev.blocks, runs),
    }
    progress("scan: whole-graph latency of every candidate, interleaved with fp32")
    models = {"fp32": ev.source, hand.label: hand.model, **{m.label: m.model for m in path}}
    return Scan(
        blocks,
        single,
        order,
        path,
        hand,
        ev.target,
        profile,
        latency_ms(models, feed, runs),
    )


def scan_path(
    ev: Any, blocks: list[Block], progress: Progress = lambda m: None
) -> tuple[dict[str, Measurement], list[Measurement]]:
    """Each of ``blocks`` alone int8, then the greedy path over them, most sensitive first.
    ``ev``: a runtime's evaluator (ONNX, TFLite, ExecuTorch: ``only``, ``measure``, ``target``)."""
    single = single_block_rows(ev, blocks, progress)
    by_name = {b.name: b for b in blocks}
    return single, greedy(ev, [by_name[n] for n in sensitivity_order(single)], progress)


def run_path_scan(
    ev: Any, blocks: list[Block], runs: int, progress: Progress = lambda m: None
) -> Scan:
    """Scan ``blocks`` (the others stay int8), search over them, and time fp32 and every step of
    the greedy path interleaved (``ev.latency_ms(path, runs)``). ``Scan.hand_picked`` is step 0:
    the runtime's default int8 encoder, every block int8."""
    single, path = scan_path(ev, blocks, progress)
    progress("scan: whole-encoder latency of every step, interleaved with fp32")
    ms = ev.latency_ms(path, runs)
    order = sensitivity_order(single)
    return Scan(blocks, single, order, path, path[0], ev.target, latency_ms=ms)


def path_search(
    ev: Any, runs: int, progress: Progress = lambda m: None, blocks: list[Block] | None = None
) -> tuple[Measurement, dict[str, Any]]:
    """The int8 encoder to export for ``ev.target``: the greedy result over ``blocks`` (default
    every block; the others stay int8), step 0 being the runtime's default int8 encoder. A target
    that every block float does not meet is a DeployError. Returns the chosen measurement and
    ``search_record`` with fp32 and every step timed interleaved (``ev.latency_ms``)."""
    single, path = searched_path(ev, ev.blocks if blocks is None else blocks, progress)
    progress("search: latency of every step, interleaved with fp32")
    return path[-1], search_record(ev, single, path, ev.latency_ms(path, runs), runs)


def searched_path(
    ev: Any, blocks: list[Block], progress: Progress = lambda m: None
) -> tuple[dict[str, Measurement], list[Measurement]]:
    """``scan_path``; a target that every block float does not meet is a DeployError."""
    single, path = scan_path(ev, blocks, progress)
    found = path[-1]
    if not found.meets:
        raise DeployError(
            f"--min-iou: the target is not met on the scoring photos even with "
            f"{', '.join(found.floated)} float ({'; '.join(found.failures)})"
        )
    return single, path


def search_record(
    ev: Any,
    single: dict[str, Measurement],
    path: list[Measurement],
    ms: dict[str, float],
    runs: int,
) -> dict[str, Any]:
    """``details.mixed_precision`` of a search: its target, photos, sensitivity, path and timing."""
    return {
        "target": {k: list(v) for k, v in ev.target.items()},
        "calibrated_on": list(ev.calibrated_on),
        "scored_on": list(ev.reference.photo_names),
        "measured_on": "the scoring photos x the standard prompts",
        "sensitivity_order": list(sensitivity_order(single)),
        "block_alone_int8": {
            name: [m.summary()[k] for k in SUMMARY_KEYS] for name, m in single.items()
        },
        "blocks_kept_float": list(path[-1].floated),
        "steps": [m.summary() for m in path],
        "latency_ms_median": {k: round(v, 1) for k, v in ms.items()},
        "runs": runs,
    }


def search(
    ev: Evaluator,
    hand_picked: Measurement,
    runs: int,
    progress: Progress = lambda m: None,
    blocks: list[Block] | None = None,
) -> tuple[Measurement, dict[str, Any]]:
    """The int8 encoder to export for ``ev.target``: the greedy result over ``blocks`` (default
    every block; the others stay int8), unless the ``hand_picked`` encoder also meets the target
    and ran faster (then it is kept and the record says so). A target that every block float
    does not meet is a DeployError. Returns the chosen measurement and the manifest details."""
    single, path = searched_path(ev, ev.blocks if blocks is None else blocks, progress)
    found = path[-1]
    progress("search: latency of the searched and hand-picked encoders, interleaved with fp32")
    models = {"fp32": ev.source, "searched": found.model, "hand-picked": hand_picked.model}
    ms = latency_ms(models, ev.feeds[0], runs)
    worse = hand_picked.meets and ms["hand-picked"] < ms["searched"]
    details = search_record(ev, single, path, ms, runs) | {
        "hand_picked": hand_picked.summary(),
        "kept": "hand-picked" if worse else "searched",
    }
    if worse:
        details["note"] = (
            "the hand-picked policy also meets the target on the scoring photos and ran faster "
            f"({ms['hand-picked']:.0f} vs {ms['searched']:.0f} ms): it is kept"
        )
    return (hand_picked if worse else found), details


def saved_ms(scan: Scan) -> dict[str, float]:
    """Per block (and ``OTHER``): ms in the fp32 profile minus ms in the all-int8 profile."""
    fp32, int8 = scan.profile_ms["fp32"], scan.profile_ms["int8"]
    return {k: round(fp32[k] - int8.get(k, 0.0), 2) for k in fp32}
