"""The files exchanged with the iOS benchmark app (apps/ios, docs/ios.md): the job and result packs,
job.json, done.json and bench.json, whose rows become the bench schema's results."""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import DeviceError
from ...manifest import ArtifactRecord
from ...vocabulary import ComputeUnit
from ..schema import DECODER_1, DECODER_16, ENCODER, ArtifactResult, PipelineResult, Stats

MAGIC = b"ESPACK01"
JOB_FORMAT = "edgesam-ios-job"
BENCH_FORMAT = "edgesam-ios-bench"
VERSION = 1
TIMING, PARITY = "timing", "parity"
LATENCY_KEYS = (ENCODER, DECODER_1, DECODER_16)
_MEASURED = ("load_ms", "peak_rss_mib", "rss_delta_mib", "clicks_per_s")


class AppResultError(DeviceError):
    """What the app wrote back is unreadable or belongs to another run."""


def _members(name: str, local: Path) -> list[tuple[str, Path]]:
    if not local.is_dir():
        return [(name, local)]
    return [
        (f"{name}/{p.relative_to(local).as_posix()}", p)
        for p in sorted(local.rglob("*"))
        if p.is_file()
    ]


def write_pack(archive: Path, members: dict[str, Path]) -> None:
    """Files and folders in one file (the format of apps/ios Files.swift): ``members`` maps a path
    in the pack to a local file or folder."""
    files = sorted(f for name, local in members.items() for f in _members(name, Path(local)))
    header = json.dumps(
        {"files": [{"path": n, "size": p.stat().st_size} for n, p in files]}
    ).encode()
    with open(archive, "wb") as out:
        out.write(MAGIC + struct.pack("<Q", len(header)) + header)
        for _, path in files:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, out)


def _safe(directory: Path, path: str) -> Path:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts:
        raise AppResultError(f"pack entry '{path}' leaves its folder")
    return Path(directory, *parts)


def read_pack(archive: Path, directory: Path) -> None:
    """Unpack ``archive`` into ``directory``; AppResultError if it is not a complete pack."""
    with open(archive, "rb") as src:
        if src.read(len(MAGIC)) != MAGIC:
            raise AppResultError(f"{Path(archive).name}: not a pack written by the benchmark app")
        raw = src.read(8)
        if len(raw) != 8:
            raise AppResultError(f"{Path(archive).name}: truncated header")
        (length,) = struct.unpack("<Q", raw)
        try:
            entries = json.loads(src.read(length))["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AppResultError(f"{Path(archive).name}: unreadable pack header ({exc})") from exc
        for entry in entries:
            dest = _safe(directory, str(entry["path"]))
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = src.read(int(entry["size"]))
            if len(data) != int(entry["size"]):
                raise AppResultError(f"{Path(archive).name}: truncated in {entry['path']}")
            dest.write_bytes(data)


@dataclass
class JobSpec:
    """One launch of the app: what to measure and how long."""

    run_id: str
    mode: str  # TIMING | PARITY
    runs: int
    warmup: int
    compute_units: list[ComputeUnit]  # timed, in this order
    parity_compute_units: ComputeUnit
    pipelines: list[dict[str, str]] = field(default_factory=list)  # encoder, decoder, label

    def document(self) -> dict[str, Any]:
        """job.json."""
        return {
            "format": JOB_FORMAT,
            "version": VERSION,
            "run_id": self.run_id,
            "mode": self.mode,
            "runs": self.runs,
            "warmup": self.warmup,
            "compute_units": [str(u) for u in self.compute_units],
            "parity_compute_units": str(self.parity_compute_units),
            "pipelines": self.pipelines,
        }


def done_error(data: dict[str, Any], run_id: str) -> str | None:
    """None while done.json is not this run's (a stale one, or none yet); '' when the run
    succeeded; else the app's one-line error."""
    if not isinstance(data, dict) or data.get("run_id") != run_id:
        return None
    if data.get("status") == "ok":
        return ""
    return str(data.get("error") or "the app reported an error without a message")


def check_header(data: dict[str, Any], run_id: str) -> None:
    """bench.json must be this version's, of this run."""
    if data.get("format") != BENCH_FORMAT or data.get("version") != VERSION:
        raise AppResultError(
            f"bench.json is {data.get('format')!r} v{data.get('version')!r}, "
            f"expected {BENCH_FORMAT} v{VERSION}"
        )
    if data.get("run_id") != run_id:
        raise AppResultError(
            f"bench.json is of run {data.get('run_id')!r}, not of this run {run_id}"
        )


@dataclass(frozen=True)
class RowLabels:
    """How this run's rows are labelled: runtime name, the device's system, and a note on where
    it ran ('' on an iPhone; 'iOS Simulator' on a Mac)."""

    runtime: str
    system: str
    where: str = ""


def _entries(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """bench.json's list ``key``, every entry an object (extra an object too)."""
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise AppResultError(f"bench.json: '{key}' is not a list of objects")
    if not all(isinstance(e.get("extra", {}), dict) for e in entries):
        raise AppResultError(f"bench.json: an entry of '{key}' has a non-object 'extra'")
    return entries


def _stats(data: Any) -> Stats:
    try:
        values = {k: float(data[k]) for k in ("p50", "p90", "min", "mean", "std", "max")}
        return Stats(runs=int(data["runs"]), **values)
    except (KeyError, TypeError, ValueError) as exc:
        raise AppResultError(
            f"bench.json: bad latency statistics ({type(exc).__name__}: {exc})"
        ) from exc


def _number(entry: dict[str, Any], key: str) -> float | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, (int, float)):
        raise AppResultError(f"bench.json: '{key}' is {value!r}, not a number")
    return None if value is None else float(value)


def artifact_row(
    record: ArtifactRecord, entry: dict[str, Any], unit: str, labels: RowLabels
) -> ArtifactResult:
    """One result row of ``record`` under compute units ``unit`` from its bench.json entry."""
    result = ArtifactResult(
        record.file, record.target, record.role, record.precision, record.size_bytes
    )
    result.runtime = labels.runtime
    result.runtime_details = {"runtime": "coreml", "compute_units": unit, "system": labels.system}
    if labels.where:
        result.runtime_details["where"] = labels.where
    if not entry.get("measured"):
        result.reason = str(entry.get("reason") or "the app measured nothing")
        return result
    latency = entry.get("latency") or {}
    unknown = sorted(set(latency) - set(LATENCY_KEYS))
    if unknown or not latency:
        raise AppResultError(
            f"bench.json: {record.file} has latency keys {sorted(latency)}, "
            f"expected some of {LATENCY_KEYS}"
        )
    result.measured = True
    result.latency = {k: _stats(v) for k, v in latency.items()}
    result.load_ms, result.peak_rss_mib, result.rss_delta_mib, result.clicks_per_s = (
        _number(entry, k) for k in _MEASURED
    )
    result.extra = {k: _number(entry["extra"], k) for k in entry.get("extra", {})}
    return result


def artifact_rows(
    data: dict[str, Any], records: list[ArtifactRecord], units: list[str], labels: RowLabels
) -> list[ArtifactResult]:
    """A row per record and compute-unit setting, in the order of ``units``; one the app did not
    report (or could not compile) says why."""
    entries = _entries(data, "artifacts")
    by_key = {(e.get("file"), e.get("compute_units")): e for e in entries}
    failed = {e.get("file"): e for e in entries if not e.get("compute_units")}
    rows = []
    for record in records:
        for unit in units:
            missing = {
                "measured": False,
                "reason": f"the app returned no result for it with {unit}",
            }
            entry = by_key.get((record.file, unit)) or failed.get(record.file) or missing
            rows.append(artifact_row(record, entry, unit, labels))
    return rows


def pipeline_rows(data: dict[str, Any], labels: RowLabels) -> list[PipelineResult]:
    """The app's encoder + decoder frames, one per pipeline and compute-unit setting."""
    rows = []
    for entry in _entries(data, "pipelines"):
        where = ", ".join(p for p in (entry.get("compute_units"), labels.where) if p)
        row = PipelineResult(
            str(entry.get("encoder")), str(entry.get("decoder")), f"{entry.get('label')} ({where})"
        )
        row.measured = bool(entry.get("measured"))
        row.reason = str(entry.get("reason", ""))
        if row.measured:
            row.end_to_end = _stats(entry.get("end_to_end"))
            row.fps = _number(entry, "fps")
            row.time_to_first_mask_ms = _number(entry, "time_to_first_mask_ms")
        rows.append(row)
    return rows
