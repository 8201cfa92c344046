"""The ``Runner`` interface: reach a device, measure the chosen artifacts there, return results."""

from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ...devices import DeviceProfile
from ...errors import DeviceError
from ...manifest import ArtifactRecord, Manifest
from ...vocabulary import Precision, ProgressFn, Role
from ..schema import DECODER_1, ENCODER, ArtifactResult, DeviceInfo, PipelineResult


@dataclass
class RunnerOptions:
    """Connection settings from the command line; each overrides the profile's hint."""

    ssh_host: str | None = None
    ssh_config: Path | None = None
    remote_python: str | None = None
    remote_dir: str | None = None
    remote_command: str | None = None
    adb_serial: str | None = None
    benchmark_model: Path | None = None
    xcode_device: str | None = None
    xcode_team: str | None = None
    timeout_s: float = 1800.0


@dataclass
class BenchRequest:
    """What to measure: artifacts of one export directory, with the run settings."""

    export_dir: Path
    manifest: Manifest
    artifacts: list[ArtifactRecord]
    runs: int
    warmup: int
    threads: int | None = None
    reference_state: Path | None = (
        None  # PyTorch reference weights (state_dict file), local runs only
    )
    progress: ProgressFn = lambda msg: None


@dataclass
class RunOutcome:
    """What a runner brings back."""

    device: DeviceInfo
    artifacts: list[ArtifactResult]
    pipelines: list[PipelineResult] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


class Runner(ABC):
    """Reaches one kind of device (this machine, ssh, adb, Xcode).

    Device parity (docs/device-parity.md): ``parity_unsupported`` says which artifacts cannot send
    their outputs back; ``run_parity`` runs a bundle there and leaves ``results.json`` and the
    output tensors in a local folder, which the host judges. ``measured_on`` labels those figures.
    """

    kind: ClassVar[str]
    measured_on: ClassVar[str] = "device"

    def __init__(self, profile: DeviceProfile, options: RunnerOptions | None = None) -> None:
        self.profile = profile
        self.options = options or RunnerOptions()

    @abstractmethod
    def probe(self) -> str:
        """One line describing the reachable device; DeviceError if it cannot be reached."""

    @abstractmethod
    def run(self, request: BenchRequest) -> RunOutcome:
        """Measure ``request.artifacts`` on the device."""

    def parity_unsupported(self, record: ArtifactRecord) -> str | None:
        """None if this runner can bring back the outputs of ``record``, else why not."""
        return f"the {self.kind} runner does not run the device-parity protocol"

    def run_parity(self, bundle: Path, outputs: Path, request: BenchRequest) -> None:
        """Run the bundle at ``bundle`` on the device; results.json and outputs go to ``outputs``."""
        raise DeviceError(
            f"device '{self.profile.name}': "
            f"the {self.kind} runner does not run the device-parity protocol"
        )

    def tool(self, name: str, explicit: str | Path | None = None, hint: str = "") -> str:
        """Path of a host program (explicit path or on PATH), or DeviceError saying what is missing."""
        found = shutil.which(str(explicit or name))
        if found is None:
            raise DeviceError(
                f"device '{self.profile.name}': '{explicit or name}' not "
                f"found{'; ' + hint if hint else ''}"
            )
        return found

    def execute(
        self, argv: list[str], what: str, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a host command; DeviceError with its last stderr line if it fails or times out."""
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout or self.options.timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(
                f"device '{self.profile.name}': {what} timed out after {exc.timeout:.0f} s"
            ) from exc
        if proc.returncode != 0:
            raise DeviceError(
                f"device '{self.profile.name}': {what} failed (exit {proc.returncode}): "
                f"{last_line(proc.stderr or proc.stdout)}"
            )
        return proc


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output (for one-line errors)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def blank_result(record: ArtifactRecord, reason: str = "") -> ArtifactResult:
    """An unmeasured result for ``record`` (``reason`` says why)."""
    return ArtifactResult(
        record.file, record.target, record.role, record.precision, record.size_bytes, reason=reason
    )


def pairs(records: list[ArtifactRecord]) -> list[tuple[ArtifactRecord, ArtifactRecord]]:
    """(encoder, decoder) pipelines: each encoder with the decoder of its target and precision, else
    its target's fp32 decoder, else its target's first decoder."""
    out = []
    for enc in (r for r in records if r.role == Role.ENCODER):
        decoders = [r for r in records if r.role == Role.DECODER and r.target == enc.target]
        ranked = sorted(
            decoders, key=lambda d: (d.precision != enc.precision, d.precision != Precision.FP32)
        )
        if ranked:
            out.append((enc, ranked[0]))
    return out


def pipeline_label(encoder: ArtifactRecord, decoder: ArtifactRecord) -> str:
    """E.g. 'onnx fp16' or 'tflite int8-dynamic + fp32 decoder'."""
    label = f"{encoder.target} {encoder.precision}"
    return (
        label
        if decoder.precision == encoder.precision
        else f"{label} + {decoder.precision} decoder"
    )


def summed_pipelines(
    results: list[ArtifactResult], records: list[ArtifactRecord], how: str
) -> list[PipelineResult]:
    """Pipelines of tools that time each graph alone: FPS from the sum of the p50 latencies."""
    by_file = {r.file: r for r in results}
    out = []
    for enc, dec in pairs(records):
        e, d = by_file[enc.file], by_file[dec.file]
        pipe = PipelineResult(enc.file, dec.file, pipeline_label(enc, dec) + f" ({how})")
        if e.measured and d.measured and ENCODER in e.latency and DECODER_1 in d.latency:
            pipe.measured = True
            pipe.fps = 1e3 / (e.latency[ENCODER].p50 + d.latency[DECODER_1].p50)
        else:
            pipe.reason = "encoder or decoder not measured"
        out.append(pipe)
    return out
