"""The timing loop of the benchmarks (interleaving, settle pauses, warm bursts) and the GEMM floor."""

from __future__ import annotations

import pytest

from edgesam_deploy.bench import metrics
from edgesam_deploy.bench.floor import GEMM_SHAPES, floor_from_medians, gemm_runs
from edgesam_deploy.vocabulary import Target


def test_interleaved_bursts_keep_the_warm_calls(monkeypatch):
    calls: list[str] = []
    pauses: list[float] = []
    monkeypatch.setattr(metrics.time, "sleep", pauses.append)
    fns = {k: (lambda k=k: calls.append(k)) for k in ("a", "b")}
    samples = metrics.timed_interleaved(fns, runs=2, warmup=1, settle_s=0.25, burst=3)
    assert calls == ["a", "b"] + (["a"] * 3 + ["b"] * 3) * 2  # warmup, then turns of 3 calls
    assert {k: len(v) for k, v in samples.items()} == {"a": 4, "b": 4}  # first of each turn dropped
    assert pauses == [0.25] * 4  # one pause before each turn


def test_interleaved_defaults_time_every_call(monkeypatch):
    monkeypatch.setattr(metrics.time, "sleep", lambda s: pytest.fail("no pause asked for"))
    samples = metrics.timed_interleaved({"a": lambda: None}, runs=3, warmup=0)
    assert len(samples["a"]) == 3 and all(ms >= 0 for ms in samples["a"])


def test_onnx_runtime_floor_runs_the_bound_gemm(tmp_path):
    runs = gemm_runs(Target.ONNX, 1, tmp_path)
    assert list(runs) == [f"gemm {m}x{k}x{n}" for m, k, n in GEMM_SHAPES]
    for fn, gflop in runs.values():
        fn()  # the bound input and output: no feeds, no output copy
        assert gflop > 0
    ms = {key: 1000 * gflop / 100 for key, (_, gflop) in runs.items()}  # every shape at 100 GFLOP/s
    ms["gemm 4096x256x256"] /= 2  # one shape twice as fast: the floor is the best shape
    floor = floor_from_medians(1, runs, ms)
    assert floor.gflops == pytest.approx(200, rel=1e-3)
    assert floor.fraction(0.2, 1.0) == pytest.approx(1.0, rel=1e-3)
