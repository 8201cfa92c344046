"""``bench --device NAME --emulate``: the device's emulated ARM64 twin (docs/emulation.md).

The profile's artifacts run with its runtime and CPU delegate on real aarch64 builds of ONNX
Runtime and LiteRT under QEMU user-mode emulation, with the profile's ``emulate_cpu`` model.
Parity comes back through the device-parity protocol (``python -m edgesam_deploy.device`` in the
twin) and is labelled ``emulated``; so are the timings (``bench.twin_timing``), which are the
emulator's and never the device's: no FPS, no clicks per second. A GPU delegate, NNAPI, TensorRT
or Core ML cannot be emulated: their rows say so.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ...device.protocol import Bundle, Case, Settings, write_tensor
from ...device.run import ARTIFACTS_DIR
from ...devices import EMULATED
from ...errors import DeviceError
from ...manifest import ArtifactRecord
from ...parity.bundle import bundle_artifact
from ...vocabulary import Role, Target
from ..emulation import QEMU, Twin, check_cpu_model, ensure_twin, host_tool
from ..metrics import Inputs, embeddings_placeholder
from ..schema import DECODER_1, DECODER_16, ENCODER, ArtifactResult, DeviceInfo, Stats
from .base import BenchRequest, Runner, RunOutcome, blank_result, last_line

# the reduced parity set of the twin (one photo: 1 encoder case, 5 decoder prompts); a full-size
# encoder takes minutes per case under emulation. --parity-photos chooses others.
DEFAULT_PHOTOS = ("coffee",)
# timed runs per input under emulation (at most): one run of an fp16 encoder takes minutes
MAX_RUNS, MAX_WARMUP = 1, 0
LABEL = "emulated"
_NOT_EMULATED = {  # profile delegate or runtime -> why its rows cannot be emulated
    "gpu": "a GPU delegate cannot be emulated (QEMU emulates the CPU only)",
    "nnapi": "NNAPI cannot be emulated (it runs on the phone's NPU/GPU drivers)",
    "tensorrt": "TensorRT cannot be emulated (it needs the Jetson's GPU)",
}


class EmulatedRunner(Runner):
    kind = EMULATED
    measured_on = LABEL

    @property
    def cpu(self) -> str:
        if not self.profile.emulate_cpu:
            raise DeviceError(f"device '{self.profile.name}' has no emulate_cpu: no ARM64 twin")
        return self.profile.emulate_cpu

    def probe(self) -> str:
        host_tool(QEMU, "qemu-user-static")
        check_cpu_model(self.cpu)
        return (
            f"emulated ARM64 twin of '{self.profile.name}': {QEMU} -cpu {self.cpu} "
            "(parity and timings are emulated, not the device's)"
        )

    def not_emulated(self, record: ArtifactRecord) -> str | None:
        """None if the twin runs ``record`` as the device would, else why it cannot."""
        if record.target == Target.COREML:
            return "Core ML cannot be emulated (it runs on Apple devices only)"
        for key in (self.profile.runtime, self.profile.delegate):
            if key in _NOT_EMULATED:
                return _NOT_EMULATED[key]
        return None

    def parity_unsupported(self, record: ArtifactRecord) -> str | None:
        return self.not_emulated(record)

    def settings(self, request: BenchRequest) -> Settings:
        return Settings(
            threads=request.threads,
            runtime=self.profile.runtime,
            delegate=self.profile.delegate,
            compute_units=self.profile.compute_units,
        )

    def run(self, request: BenchRequest) -> RunOutcome:
        chosen = [r for r in request.artifacts if not self.not_emulated(r)]
        twin = ensure_twin(request.progress) if chosen else None
        timings = self._time(twin, chosen, request) if twin else {}
        results = [
            self._result(r, timings[r.file])
            if r.file in timings
            else blank_result(r, self.not_emulated(r) or "")
            for r in request.artifacts
        ]
        details = twin.describe(self.cpu) if twin else {"cpu_model": self.cpu}
        versions = {"emulator": details.get("emulator", QEMU), **details.get("wheels", {})}
        return RunOutcome(self._device(details), results, [], versions)

    def run_parity(self, bundle: Path, outputs: Path, request: BenchRequest) -> None:
        """The device side of the parity protocol, in the twin."""
        twin = ensure_twin(request.progress)
        request.progress(f"{self.profile.name} ({LABEL}, -cpu {self.cpu}): the parity cases")
        with tempfile.TemporaryDirectory(prefix="edgesam-twin-") as tmp:
            argv = ["-m", "edgesam_deploy.device", str(bundle.resolve()), str(outputs.resolve())]
            self._python(twin, argv, Path(tmp), "the device side of the parity protocol")

    def _python(self, twin: Twin, argv: list[str], workdir: Path, what: str) -> None:
        proc = twin.run_python(argv, self.cpu, self.options.timeout_s, workdir)
        if proc.returncode != 0:
            raise DeviceError(
                f"{self.profile.name} ({LABEL}): {what} failed (exit "
                f"{proc.returncode}): {last_line(proc.stderr or proc.stdout)}"
            )

    def _time(
        self, twin: Twin, records: list[ArtifactRecord], request: BenchRequest
    ) -> dict[str, Any]:
        """Times of each artifact in the twin: {file: {load_ms, runtime, details, samples_ms}}."""
        runs, warmup = min(request.runs, MAX_RUNS), min(request.warmup, MAX_WARMUP)
        request.progress(
            f"{self.profile.name} ({LABEL}, -cpu {self.cpu}): timing {len(records)} "
            f"artifact(s), {runs} run(s) per input"
        )
        with tempfile.TemporaryDirectory(prefix="edgesam-twin-") as tmp:
            bundle, out = Path(tmp) / "timing", Path(tmp) / "timing.json"
            write_timing_bundle(bundle, records, request.export_dir, self.settings(request))
            argv = ["-m", "edgesam_deploy.bench.twin_timing", str(bundle), str(out)]
            self._python(twin, argv + [str(runs), str(warmup)], Path(tmp), "timing")
            return json.loads(out.read_text())

    def _result(self, record: ArtifactRecord, timing: dict[str, Any]) -> ArtifactResult:
        if "error" in timing:
            return blank_result(record, f"did not run in the emulated twin: {timing['error']}")
        result = blank_result(record)
        result.measured = True
        result.runtime = f"{timing['runtime']} [{LABEL}, -cpu {self.cpu}]"
        result.runtime_details = {**timing["details"], "measured_on": LABEL}
        result.load_ms = timing["load_ms"]
        result.latency = {key: Stats.from_samples(s) for key, s in timing["samples_ms"].items()}
        result.extra = {"timings_measured_on": LABEL}
        return result

    def _device(self, details: dict[str, Any]) -> DeviceInfo:
        return DeviceInfo(
            name=f"{self.profile.name} ({LABEL})",
            runner=self.kind,
            description=f"emulated ARM64 twin of: {self.profile.description}. QEMU user mode, -cpu "
            f"{self.cpu}; every time here is the emulator's, not the device's",
            system="Linux (QEMU user mode)",
            machine=f"aarch64 ({LABEL})",
            details=details,
        )


def write_timing_bundle(
    directory: Path, records: list[ArtifactRecord], export_dir: Path, settings: Settings
) -> Bundle:
    """A bundle whose cases are the benchmark inputs, one per latency key; artifacts are links."""
    inputs = Inputs()
    emb = embeddings_placeholder()
    feeds = {ENCODER: inputs.image, **{k: inputs.prompt(k, emb) for k in (DECODER_1, DECODER_16)}}
    cases = []
    for key, arrays in feeds.items():
        files = {n: write_tensor(directory, f"feeds/{key}/{n}.bin", a) for n, a in arrays.items()}
        cases.append(Case(key, Role.ENCODER if key == ENCODER else Role.DECODER, files))
    for record in records:
        link = directory / ARTIFACTS_DIR / record.file
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((Path(export_dir) / record.file).resolve())
    bundle = Bundle(cases, [bundle_artifact(r, cases) for r in records], settings)
    bundle.save(directory)
    return bundle
