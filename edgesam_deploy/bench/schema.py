"""The one benchmark result schema (dataclasses <-> JSON) every runner fills, local or remote.

Times are milliseconds, memory MiB, sizes bytes. A value that was not measured is ``None``, and
a whole artifact that was not measured says why in ``reason``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

# latency keys of ArtifactResult.latency
ENCODER = "encoder"
DECODER_1 = "decoder_1_click"
DECODER_16 = "decoder_16_points"


@dataclass
class Stats:
    """Latency statistics over timed runs (after warm-up), in ms; ``p90`` is None where a device
    tool does not report it."""

    p50: float
    p90: float | None
    min: float
    mean: float
    runs: int
    std: float | None = None
    max: float | None = None

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> "Stats":
        """Nearest-rank percentiles of the samples."""
        if not samples_ms:
            raise ValueError("no samples")
        ordered = sorted(samples_ms)

        def pct(q: float) -> float:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        std = statistics.pstdev(ordered) if len(ordered) > 1 else 0.0
        return cls(pct(0.5), pct(0.9), ordered[0], statistics.fmean(ordered), len(ordered), std, ordered[-1])


@dataclass
class ParitySummary:
    """The parity verdict of the same artifact (bits checked by SHA-256) against PyTorch fp32."""

    passed: bool
    metrics: dict[str, float]
    failures: list[str]
    evaluated_with: str  # runtime that produced the compared outputs
    source: str  # "computed" now, or "manifest" (recorded at export)
    measured_on: str = "host"  # where those outputs were computed: host | device | emulated


PARITY_NOT_MEASURED = "not measured"


@dataclass
class ArtifactResult:
    """One artifact (or the PyTorch reference) on one device."""

    file: str
    target: str  # onnx | tflite | coreml | pytorch
    role: str  # encoder | decoder
    precision: str
    size_bytes: int | None
    runtime: str = ""
    runtime_details: dict[str, Any] = field(default_factory=dict)
    measured: bool = False
    reason: str = ""  # why it was not measured
    load_ms: float | None = None
    peak_rss_mib: float | None = None  # process high-water mark (includes the interpreter)
    rss_delta_mib: float | None = None  # high-water mark minus that before loading
    latency: dict[str, Stats] = field(default_factory=dict)
    clicks_per_s: float | None = None  # decoder: one click after another on a cached embedding
    extra: dict[str, Any] = field(default_factory=dict)  # tool-specific facts (delegated nodes ...)
    parity: ParitySummary | None = None  # judged from the outputs of this row's device
    parity_measured_on: str = PARITY_NOT_MEASURED  # host | device | emulated | not measured
    parity_reason: str = ""  # why parity was not measured on this row's device
    host_parity: ParitySummary | None = None  # the same artifact on the host, beside the device's


@dataclass
class PipelineResult:
    """An encoder and a decoder together, as an app runs them."""

    encoder: str
    decoder: str
    label: str  # e.g. "onnx fp32"
    measured: bool = False
    reason: str = ""
    fps: float | None = None  # encoder + one decode per frame (the paper's measure), from p50
    end_to_end: Stats | None = None
    time_to_first_mask_ms: float | None = None  # cold: load both + first encode + first decode


@dataclass
class DeviceInfo:
    """Where it ran."""

    name: str
    runner: str
    description: str = ""
    system: str = ""
    machine: str = ""
    hostname: str = ""
    cpu_count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchReport:
    """A whole benchmark: device, settings, tool and runtime versions, per-artifact and pipeline results."""

    device: DeviceInfo
    settings: dict[str, Any]
    versions: dict[str, str]
    model: dict[str, Any]
    artifacts: list[ArtifactResult] = field(default_factory=list)
    pipelines: list[PipelineResult] = field(default_factory=list)
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchReport":
        """Rebuild a report read back from JSON (e.g. from a remote runner)."""
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"benchmark schema version {data.get('schema_version')} is not {SCHEMA_VERSION}")
        return cls(
            device=_build(DeviceInfo, data["device"]),
            settings=data["settings"], versions=data["versions"], model=data["model"],
            artifacts=[artifact_from_dict(a) for a in data["artifacts"]],
            pipelines=[pipeline_from_dict(p) for p in data["pipelines"]],
            created=data.get("created", ""),
        )


def _build(cls: type, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def artifact_from_dict(data: dict[str, Any]) -> ArtifactResult:
    result = _build(ArtifactResult, data)
    result.latency = {k: _build(Stats, v) for k, v in data.get("latency", {}).items()}
    result.parity = _build(ParitySummary, data["parity"]) if data.get("parity") else None
    host = data.get("host_parity")
    result.host_parity = _build(ParitySummary, host) if host else None
    return result


def pipeline_from_dict(data: dict[str, Any]) -> PipelineResult:
    result = _build(PipelineResult, data)
    result.end_to_end = _build(Stats, data["end_to_end"]) if data.get("end_to_end") else None
    return result
