"""Mixed precision chosen by measurement: which encoder (or decoder) blocks stay float in an int8
graph.

The scan quantizes one block at a time (everything else float) and ranks the blocks by how much
that alone costs; the greedy search starts from every block int8 and keeps the next most sensitive
block float until the combined graph, measured each time, meets the target. The target uses the
int8 parity gate's statistics, its min-IoU floor raised by a margin (``search_target``), on
held-out scoring photos: not the images that calibrated the activation ranges. A decoder is only
worth int8 where it is also faster than the fp32 decoder (``search_decoder``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeployError
from ..parity.thresholds import Threshold
from ..vocabulary import Precision
from .sensitivity import (
    Block,
    Evaluator,
    Measurement,
    Policy,
    latency_ms,
    profile_by_block,
    sensitivity_order,
)

Progress = Callable[[str], None]
# an int8 decoder counts as faster when its median is at least this many times below fp32's at
# every timed point count: below that, interleaved medians on a shared CPU do not separate
# (docs/mixed-precision.md, "Decoder")
DECODER_MIN_SPEEDUP = 1.05


def single_block_rows(
    ev: Evaluator, blocks: list[Block], progress: Progress = lambda m: None
) -> dict[str, Measurement]:
    """Block name -> the encoder with only that block reduced, judged on the scoring photos."""
    out = {}
    for i, block in enumerate(blocks, 1):
        progress(f"scan: {block.name} alone reduced ({i}/{len(blocks)})")
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
    policy for comparison (None for the decoder, whose own policy is fp32), ONNX Runtime's
    profile per block and whole-graph latencies (on the first timing feed; ``latency_ms_by_feed``:
    on each, e.g. a decoder at 1 and 16 points)."""

    blocks: list[Block]
    single: dict[str, Measurement]
    order: list[str]
    path: list[Measurement]
    hand_picked: Measurement | None
    target: dict[str, Threshold]
    profile_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # fp32 | reduced -> block
    latency_ms: dict[str, float] = field(default_factory=dict)  # fp32 | candidate label -> ms
    facts: dict[str, Any] = field(default_factory=dict)  # images, alpha, runs, seconds
    reduced: str = "int8"  # the scanned precision's profile key and column name (int8 | fp16)
    latency_ms_by_feed: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def chosen(self) -> Measurement:
        return self.path[-1]


def timed(ev: Evaluator, models: dict[str, Any], runs: int) -> dict[str, dict[str, float]]:
    """Feed label -> model label -> median ms: ``models`` timed interleaved on each of
    ``ev.timing_feeds`` (one interleaved run per feed, fp32 among the models)."""
    return {label: latency_ms(models, feed, runs) for label, feed in ev.timing_feeds.items()}


def run_scan(
    ev: Evaluator,
    blocks: list[Block],
    hand_picked: Policy | None,
    runs: int,
    progress: Progress = lambda m: None,
) -> Scan:
    """Scan ``blocks``, search over them (the other blocks stay reduced), measure the hand-picked
    policy (if any), profile fp32 vs all-reduced per block, and time fp32 and every candidate
    interleaved."""
    single, path = scan_path(ev, blocks, progress)
    order = sensitivity_order(single)
    hand = None
    if hand_picked is not None:
        progress("scan: the hand-picked policy")
        hand = ev.measure_policy(hand_picked, "hand-picked")
    feed = next(iter(ev.timing_feeds.values()))
    reduced = "fp16" if ev.precision == Precision.FP16 else "int8"
    progress(f"scan: ONNX Runtime profiles, fp32 and all-{reduced}")
    profile = {
        "fp32": profile_by_block(ev.source, feed, ev.blocks, runs),
        reduced: profile_by_block(path[0].model, feed, ev.blocks, runs),
    }
    progress("scan: whole-graph latency of every candidate, interleaved with fp32")
    candidates = [*path, *([hand] if hand else [])]
    by_feed = timed(ev, {"fp32": ev.source, **{m.label: m.model for m in candidates}}, runs)
    return Scan(
        blocks,
        single,
        order,
        path,
        hand,
        ev.target,
        profile,
        next(iter(by_feed.values())),
        reduced=reduced,
        latency_ms_by_feed=by_feed,
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
    ms = ev.latency_ms(path, runs)
    return path[-1], search_record(ev, single, path, ms, runs, path[-1].label)


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


def speed_record(ms: dict[str, float], chosen: str) -> dict[str, Any]:
    """The ``chosen`` graph's speed-up over fp32 in the search's own interleaved run on the
    exporting host and, where it ran slower than fp32 there, a note saying so (the device's
    kernels may differ: only a run there says whether int8 pays on it)."""
    speedup = ms["fp32"] / ms[chosen]
    record: dict[str, Any] = {"speedup_vs_fp32": round(speedup, 3), "timed_on": "exporting host"}
    if speedup < 1:
        record["slower_than_fp32"] = (
            f"the chosen int8 encoder ran {speedup:.2f}x as fast as fp32 on the exporting host "
            f"({ms[chosen]:.0f} vs {ms['fp32']:.0f} ms, medians of interleaved runs): at this "
            "target int8 does not pay there; time it on the device (bench) before shipping it"
        )
    return record


def search_record(
    ev: Any,
    single: dict[str, Measurement],
    path: list[Measurement],
    ms: dict[str, float],
    runs: int,
    chosen: str | None = None,
) -> dict[str, Any]:
    """``details.mixed_precision`` of a search: its target, photos, sensitivity, path and timing;
    with ``chosen`` (its key in ``ms``), that graph's ``speed_record``."""
    return (speed_record(ms, chosen) if chosen else {}) | {
        "target": {k: list(v) for k, v in ev.target.items()},
        "calibrated_on": list(ev.calibrated_on),
        "scored_on": list(ev.reference.photo_names),
        "measured_on": "the scoring photos x the standard prompts",
        "sensitivity_order": list(sensitivity_order(single)),
        "block_alone_int8": {name: list(m.statistics().values()) for name, m in single.items()},
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
    kept = "hand-picked" if worse else "searched"
    details = search_record(ev, single, path, ms, runs, kept) | {
        "hand_picked": hand_picked.summary(),
        "kept": kept,
    }
    if worse:
        details["note"] = (
            "the hand-picked policy also meets the target on the scoring photos and ran faster "
            f"({ms['hand-picked']:.0f} vs {ms['searched']:.0f} ms): it is kept"
        )
    return (hand_picked if worse else found), details


def search_decoder(
    ev: Evaluator, runs: int, progress: Progress = lambda m: None
) -> tuple[Measurement | None, dict[str, Any]]:
    """The int8 decoder to export for ``ev.target`` (a decoder ``Evaluator``), or None to keep the
    fp32 decoder: the greedy result over every block where it meets the target with some block
    int8 and ran ``DECODER_MIN_SPEEDUP`` times faster than fp32 at every timed point count
    (``ev.timing_feeds``, interleaved in the same run); otherwise None, and the record's
    ``note`` says which condition failed, with the figures."""
    single, path = scan_path(ev, ev.blocks, progress)
    found = path[-1]
    progress("search: latency of the searched decoder, interleaved with fp32")
    ms = timed(ev, {"fp32": ev.source, "searched": found.model}, runs)
    faster = all(v["fp32"] >= DECODER_MIN_SPEEDUP * v["searched"] for v in ms.values())
    figures = ", ".join(
        f"{feed} {v['searched']:.1f} vs {v['fp32']:.1f} ms" for feed, v in ms.items()
    )
    int8 = len(found.floated) < len(ev.blocks)
    kept = "searched" if found.meets and int8 and faster else "fp32"
    details = search_record(ev, single, path, next(iter(ms.values())), runs) | {
        "latency_ms_median_by_feed": {
            f: {k: round(v, 1) for k, v in m.items()} for f, m in ms.items()
        },
        "kept": kept,
    }
    if not found.meets:
        details["note"] = (
            f"fp32 decoder kept: no int8 decoder met the target on the scoring photos, even with "
            f"{', '.join(found.floated) or 'nothing'} float ({'; '.join(found.failures)})"
        )
    elif not int8:
        details["note"] = "fp32 decoder kept: only every block float met the target"
    elif not faster:
        details["note"] = (
            f"fp32 decoder kept: the int8 decoder that met the target ({found.label}) was not "
            f"{DECODER_MIN_SPEEDUP:g}x faster than fp32 ({figures}, searched vs fp32)"
        )
    return (found if kept == "searched" else None), details


def saved_ms(scan: Scan) -> dict[str, float]:
    """Per block (and ``OTHER``): ms in the fp32 profile minus ms in the all-reduced profile."""
    fp32, reduced = scan.profile_ms["fp32"], scan.profile_ms[scan.reduced]
    return {k: round(fp32[k] - reduced.get(k, 0.0), 2) for k in fp32}
