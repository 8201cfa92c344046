"""This machine's fp32 GEMM throughput: the floor a graph's GFLOP/s is reported against.

A model cannot run faster than its FLOPs at the best matrix-multiply rate the CPU sustains with the
same thread count, so ``GFLOP/s of a graph / floor`` is the fraction of the machine a runtime uses.
The shapes are those of the model's largest 1x1 convolutions and token projections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .metrics import timed_interleaved

# (M, K, N): M pixels or tokens x K input channels -> N output channels
GEMM_SHAPES: tuple[tuple[int, int, int], ...] = (
    (4096, 256, 256),  # decoder token projections, encoder stage-4 1x1 convs at 64 x 64
    (16384, 128, 256),  # encoder stage-3 1x1 convs at 128 x 128
    (65536, 48, 96),  # encoder stage-1 1x1 convs at 256 x 256
)


@dataclass(frozen=True)
class GemmFloor:
    """Median GFLOP/s per GEMM shape and the best of them (the floor), with the thread count."""

    threads: int
    per_shape: dict[str, float]

    @property
    def gflops(self) -> float:
        return max(self.per_shape.values())

    def fraction(self, gflop: float, ms: float) -> float:
        """The share of the floor a graph of ``gflop`` GFLOP running in ``ms`` ms achieves."""
        return gflop / (ms / 1e3) / self.gflops

    def as_dict(self) -> dict[str, object]:
        return {
            "threads": self.threads,
            "gflops": round(self.gflops, 1),
            "per_shape": self.per_shape,
        }


def gemm_workload(m: int, k: int, n: int) -> tuple[Callable[[], object], float]:
    """A zero-argument (m x k) @ (k x n) fp32 torch matmul (torch's current thread setting) and
    its GFLOP, for timing beside the graphs it is the floor of."""
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.standard_normal((m, k), dtype=np.float32))
    b = torch.from_numpy(rng.standard_normal((k, n), dtype=np.float32))
    out = torch.empty(m, n)
    return (lambda: torch.mm(a, b, out=out)), 2 * m * k * n / 1e9


def gemm_runs() -> dict[str, tuple[Callable[[], object], float]]:
    """``gemm_workload`` of every ``GEMM_SHAPES`` entry, keyed ``gemm MxKxN``."""
    return {f"gemm {m}x{k}x{n}": gemm_workload(m, k, n) for m, k, n in GEMM_SHAPES}


def floor_from_medians(threads: int, medians_ms: dict[str, float]) -> GemmFloor:
    """The floor from the median ms of each ``gemm_runs`` key (timed by the caller)."""
    per_shape = {
        key.removeprefix("gemm "): round(gflop / (medians_ms[key] / 1e3), 1)
        for key, (_, gflop) in gemm_runs().items()
    }
    return GemmFloor(threads, per_shape)


def measure_floor(threads: int, runs: int = 9) -> GemmFloor:
    """The GEMM floor with ``threads`` threads, timed alone (torch's setting is restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fns = {key: fn for key, (fn, _) in gemm_runs().items()}
        samples = timed_interleaved(fns, runs, warmup=1)
    finally:
        torch.set_num_threads(previous)
    return floor_from_medians(threads, {k: float(np.median(v)) for k, v in samples.items()})
