"""Measurements on loaded sessions: latency statistics, clicks per second, end-to-end FPS, memory.

Every timed loop runs ``warmup`` untimed calls first. Inputs are a real photo and the standard
prompts: a single click (one point plus the padding point) and 16 decoder points (15 + padding).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable

import numpy as np

from ..processing import decoder_inputs, preprocess
from ..runtimes.base import GraphSession
from ..samples import load_photo, standard_prompts
from ..vocabulary import DECODER, GraphSpec
from .schema import DECODER_1, DECODER_16, ENCODER, Stats

BENCH_PHOTO = "coffee"
# idle pause before each turn of an interleaved run: ONNX Runtime's worker threads spin after a
# run and took the cores from the next session (measured: docs/decoder-speed.md)
SETTLE_S = 0.1
_PROMPTS = {DECODER_1: "one_point", DECODER_16: "many_points"}


def timed(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; wall time of each run in ms."""
    return timed_interleaved({"fn": fn}, runs, warmup)["fn"]


def timed_interleaved(
    fns: dict[str, Callable[[], object]],
    runs: int,
    warmup: int,
    settle_s: float = 0.0,
    burst: int = 1,
) -> dict[str, list[float]]:
    """Like ``timed`` for several functions whose runs are interleaved, so that load on a shared
    machine falls on each alike and ratios between them stay meaningful. ms per run, by key.

    ``settle_s`` > 0: each function's turn starts after that idle pause, so that the worker threads
    a runtime leaves spinning after its run (ONNX Runtime's do) do not take the cores from the
    next one. ``burst`` > 1: a turn is ``burst`` calls back to back and only the last ``burst - 1``
    are kept (warm caches, as for the next click on the same image).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            if settle_s:
                time.sleep(settle_s)
            for i in range(burst):
                start = time.perf_counter()
                fn()
                if i or burst == 1:
                    samples[key].append((time.perf_counter() - start) * 1e3)
    return samples


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Inputs:
    """The benchmark photo, preprocessed once, and the standard prompts on it."""

    def __init__(self) -> None:
        self._pre = preprocess(load_photo(BENCH_PHOTO))
        self.image = {"image": self._pre.tensor}

    def prompt(
        self, key: str, embeddings: np.ndarray, graph: GraphSpec = DECODER
    ) -> dict[str, np.ndarray]:
        """Decoder feeds of prompt ``key`` (DECODER_1 / DECODER_16). A ``graph`` that takes a
        previous mask gets one (has_mask_input 1): its clicks are refinement clicks."""
        pre = self._pre
        prompt = standard_prompts(*pre.original_size)[_PROMPTS[key]]
        coords, labels = decoder_inputs(prompt, pre.original_size, pre.input_size)
        feeds = {"image_embeddings": embeddings, "point_coords": coords, "point_labels": labels}
        if "mask_input" in graph.input_names:
            previous = np.random.default_rng(1).standard_normal((1, 1, 256, 256)) * 8
            feeds.update(
                mask_input=previous.astype(np.float32), has_mask_input=np.ones(1, np.float32)
            )
        return feeds


def embeddings_placeholder() -> np.ndarray:
    """Deterministic embeddings of realistic scale, for timing a decoder without its encoder."""
    return np.random.default_rng(0).standard_normal((1, 256, 64, 64)).astype(np.float32)


def measure_encoder(
    session: GraphSession, inputs: Inputs, runs: int, warmup: int
) -> dict[str, Stats]:
    feeds = inputs.image
    return {ENCODER: Stats.from_samples(timed(lambda: session.run(feeds), runs, warmup))}


def measure_decoder(
    session: GraphSession, inputs: Inputs, runs: int, warmup: int
) -> tuple[dict[str, Stats], float | None, dict[str, str]]:
    """Latency per click with 1 and 16 points, clicks per second (1 point, cached embedding), and
    the prompt sizes the decoder has no input for."""
    emb = embeddings_placeholder()
    out: dict[str, Stats] = {}
    skipped: dict[str, str] = {}
    clicks = None
    for key in (DECODER_1, DECODER_16):
        feeds = inputs.prompt(key, emb, session.graph)
        n = feeds["point_labels"].shape[1]
        if not session.accepts_points(n):
            skipped[key] = (
                f"the decoder has no input for {n} points (export with more --num-points)"
            )
            continue
        samples = timed(lambda feeds=feeds: session.run(feeds), runs, warmup)
        out[key] = Stats.from_samples(samples)
        if key == DECODER_1:
            clicks = len(samples) / (sum(samples) / 1e3)
    return out, clicks, skipped


def measure_pipeline(
    encoder: GraphSession, decoder: GraphSession, inputs: Inputs, runs: int, warmup: int
) -> Stats:
    """Encoder + one single-click decode per frame."""

    def frame() -> None:
        emb = encoder.run(inputs.image)["image_embeddings"]
        decoder.run(inputs.prompt(DECODER_1, emb, decoder.graph))

    return Stats.from_samples(timed(frame, runs, warmup))
