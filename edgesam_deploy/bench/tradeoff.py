"""Latency against mask quality per pipeline: the points a user chooses a variant from, and the
Pareto frontier among them (lower latency, higher IoU)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .schema import ArtifactResult, BenchReport, PipelineResult

IOU_KEY = "mask_iou_mean"


@dataclass(frozen=True)
class TradeoffPoint:
    """One encoder + decoder pipeline of a benchmark report."""

    label: (
        str  # the pipeline's label without its target, e.g. "fp16" or "int8-static + fp32 decoder"
    )
    runtime: str  # the encoder row's runtime (one colour each)
    latency_ms: float  # encoder + one click, p50
    iou: float  # the lower of the encoder's and the decoder's mean mask IoU
    size_mb: float | None  # encoder + decoder files
    iou_measured_on: tuple[
        str, ...
    ]  # where the judged outputs were computed: host | device | emulated


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the ``(latency, iou)`` points that no other point dominates (latency <= and
    IoU >=, one of them strictly), ordered by latency; equal points are all on the front."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    for i in order:
        if not front or points[i][1] > points[front[-1]][1] or points[i] == points[front[-1]]:
            front.append(i)
    return front


def _latency(p: PipelineResult) -> float | None:
    """p50 of encoder + one click: the measured frame, else the one FPS was computed from."""
    if not p.measured:
        return None
    if p.end_to_end is not None:
        return p.end_to_end.p50
    return 1e3 / p.fps if p.fps else None


def _row(report: BenchReport, file: str, label: str) -> ArtifactResult | None:
    """The artifact row of ``file`` for this pipeline: with several rows of one file (one per
    compute-unit setting), the one whose setting the pipeline's label names."""
    rows = [r for r in report.artifacts if r.file == file]
    named = [r for r in rows if str(r.runtime_details.get("compute_units", "")) in label]
    return (named or rows or [None])[0]


def _iou(row: ArtifactResult | None) -> tuple[float, str] | None:
    """Mean mask IoU of the row's own device, else of this host, and where it was measured."""
    summary = None if row is None else (row.parity or row.host_parity)
    if summary is None or IOU_KEY not in summary.metrics:
        return None
    return summary.metrics[IOU_KEY], summary.measured_on


def _point(report: BenchReport, p: PipelineResult) -> TradeoffPoint | str:
    """The pipeline's point, or why it has none."""
    latency = _latency(p)
    enc, dec = _row(report, p.encoder, p.label), _row(report, p.decoder, p.label)
    judged = [_iou(enc), _iou(dec)]
    if latency is None:
        return f"{p.label} (latency)"
    if None in judged:
        return f"{p.label} (mask IoU)"
    sizes = [r.size_bytes if r else None for r in (enc, dec)]
    target = enc.target if enc else ""
    return TradeoffPoint(
        label=p.label.removeprefix(f"{target} "),
        runtime=(enc.runtime if enc else "") or target,
        latency_ms=latency,
        iou=min(j[0] for j in judged if j),
        size_mb=None if None in sizes else sum(s for s in sizes if s) / 1e6,
        iou_measured_on=tuple(sorted({j[1] for j in judged if j})),
    )


def tradeoff_points(report: BenchReport) -> tuple[list[TradeoffPoint], list[str]]:
    """The report's pipelines with both a latency and a mask IoU, and those without one (each
    named with what is missing)."""
    points: list[TradeoffPoint] = []
    missing: list[str] = []
    for p in report.pipelines:
        point = _point(report, p)
        if isinstance(point, str):
            missing.append(point)
        else:
            points.append(point)
    return points, missing
