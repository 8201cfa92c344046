"""This machine: every artifact whose runtime is here (ONNX Runtime, LiteRT, Core ML on macOS)
and the PyTorch reference, each measured in its own child process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...manifest import ArtifactRecord, tool_versions
from ...vocabulary import Target
from ..host import cpu_details
from ..schema import ArtifactResult, DeviceInfo, PipelineResult, Stats
from ..sessions import why_not_here
from .base import BenchRequest, Runner, RunOutcome, blank_result, last_line, pairs, pipeline_label

REFERENCE = "pytorch"


def run_child(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; ``{"error": ...}`` if it fails."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edgesam_deploy.bench.child"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"measurement timed out after {timeout:.0f} s"}
    sys.stderr.write(proc.stderr)  # the runtimes' logs: captured, shown with --verbose
    if proc.returncode != 0:
        return {"error": f"measurement process failed: {last_line(proc.stderr)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _reference_records(request: BenchRequest) -> list[ArtifactRecord]:
    size = request.reference_state.stat().st_size if request.reference_state else 0
    return [
        ArtifactRecord(
            f"{REFERENCE}:{role}",
            REFERENCE,
            role,
            "fp32",
            [],
            [],
            size,
            "",
            {"note": "PyTorch eager, unfolded"},
        )
        for role in ("encoder", "decoder")
    ]


class LocalRunner(Runner):
    kind = "local"
    measured_on = "host"

    def parity_unsupported(self, record: ArtifactRecord) -> str | None:
        if record.target == Target.COREML:
            return "Core ML outputs come from the iPhone app (here: ONNX Runtime and LiteRT)"
        return why_not_here(record.target)

    def run_parity(self, bundle: Path, outputs: Path, request: BenchRequest) -> None:
        """The device side in a fresh interpreter of this machine, as on any other device."""
        argv = [sys.executable, "-m", "edgesam_deploy.device", str(bundle), str(outputs)]
        self.execute(argv, "the device side of the parity protocol")

    def probe(self) -> str:
        return f"this machine: {platform.node()} ({platform.system()} {platform.machine()}, {os.cpu_count()} CPUs)"

    def _spec(self, record: ArtifactRecord, request: BenchRequest) -> dict[str, Any]:
        if record.target == REFERENCE:
            return {"reference": record.role, "state_dict": str(request.reference_state)}
        return asdict(record)

    def _job(self, request: BenchRequest, **fields: Any) -> dict[str, Any]:
        return {
            "root": str(request.export_dir),
            "runs": request.runs,
            "warmup": request.warmup,
            "threads": request.threads,
            **fields,
        }

    def _measure(self, record: ArtifactRecord, request: BenchRequest) -> ArtifactResult:
        reason = None if record.target == REFERENCE else why_not_here(record.target)
        if reason:
            return blank_result(record, reason)
        request.progress(f"{record.file}: measuring")
        out = run_child(
            self._job(request, kind="artifact", spec=self._spec(record, request)),
            self.options.timeout_s,
        )
        if "error" in out:
            return blank_result(record, out["error"])
        result = blank_result(record)
        result.measured = True
        result.runtime = out["runtime"]
        result.runtime_details = out["runtime_details"]
        result.load_ms = out["load_ms"]
        result.peak_rss_mib = out["peak_rss_mib"]
        result.rss_delta_mib = out["rss_delta_mib"]
        result.latency = {k: Stats(**v) for k, v in out["latency"].items()}
        result.clicks_per_s = out.get("clicks_per_s")
        result.extra = out.get("extra", {})
        return result

    def _pipeline(
        self, enc: ArtifactRecord, dec: ArtifactRecord, request: BenchRequest
    ) -> PipelineResult:
        result = PipelineResult(enc.file, dec.file, pipeline_label(enc, dec))
        request.progress(f"{result.label}: encoder + decoder")
        out = run_child(
            self._job(
                request,
                kind="pipeline",
                encoder=self._spec(enc, request),
                decoder=self._spec(dec, request),
            ),
            self.options.timeout_s,
        )
        if "error" in out:
            result.reason = out["error"]
            return result
        result.measured = True
        result.end_to_end = Stats(**out["end_to_end"])
        result.fps = out["fps"]
        result.time_to_first_mask_ms = out["time_to_first_mask_ms"]
        return result

    def run(self, request: BenchRequest) -> RunOutcome:
        records = list(request.artifacts) + (
            _reference_records(request) if request.reference_state else []
        )
        artifacts = [self._measure(r, request) for r in records]
        measured = {a.file for a in artifacts if a.measured}
        pipelines = [
            self._pipeline(enc, dec, request)
            for enc, dec in pairs(records)
            if enc.file in measured and dec.file in measured
        ]
        return RunOutcome(self.device_info(), artifacts, pipelines, tool_versions())

    def device_info(self) -> DeviceInfo:
        return DeviceInfo(
            name=self.profile.name,
            runner=self.kind,
            description=self.profile.description,
            system=f"{platform.system()} {platform.release()}",
            machine=platform.machine(),
            hostname=platform.node(),
            cpu_count=os.cpu_count(),
            details={**cpu_details(), "python": platform.python_version()},
        )
