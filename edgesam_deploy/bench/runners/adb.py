"""An Android phone or emulator over adb: push the .tflite files and LiteRT's ``benchmark_model``,
run it with the profile's delegate, parse its statistics. Parity: the same binary runs every parity
case from the protocol's feed files and writes its outputs (see ``benchmark_model_parity``)."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

from ...device.protocol import (
    STATUS_ERROR,
    ArtifactOutputs,
    Bundle,
    ProtocolError,
    Results,
    write_tensor,
)
from ...errors import DeviceError
from ...manifest import ArtifactRecord
from ...vocabulary import Role, Target
from ..parsers import adb_devices, benchmark_model
from ..parsers.adb_devices import AdbDevice
from ..schema import DECODER_1, DECODER_16, ENCODER, ArtifactResult, DeviceInfo, Stats
from .base import BenchRequest, Runner, RunOutcome, blank_result, summed_pipelines
from .benchmark_model_parity import parity_command, signature_for, signature_io, split_outputs

DEVICE_DIR = "/data/local/tmp/edgesam"
BINARY = f"{DEVICE_DIR}/benchmark_model"
PARITY_DIR = f"{DEVICE_DIR}/parity"
NOT_RUN = {
    "executorch": "not measured: a .pte needs ExecuTorch's executor_runner built for Android "
    "arm64 with the XNNPACK backend (the executorch wheel ships no benchmark binary)",
}
DELEGATE_FLAGS = {
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
    "xnnpack": ["--use_xnnpack=true"],
    "cpu": ["--use_xnnpack=false"],
}


def benchmark_command(
    binary: str, graph: str, runs: int, warmup: int, threads: int | None, delegate: str | None
) -> list[str]:
    """benchmark_model argv on the phone."""
    argv = [
        binary,
        f"--graph={graph}",
        f"--num_runs={runs}",
        f"--warmup_runs={warmup}",
        "--min_secs=0",
        "--warmup_min_secs=0",
    ]
    if threads:
        argv.append(f"--num_threads={threads}")
    return argv + delegate_flags(delegate)


def delegate_flags(delegate: str | None) -> list[str]:
    """benchmark_model flags of a delegate (default XNNPACK)."""
    if delegate and delegate not in DELEGATE_FLAGS:
        raise DeviceError(
            f"unknown LiteRT delegate '{delegate}'; choose from {', '.join(DELEGATE_FLAGS)}"
        )
    return DELEGATE_FLAGS[delegate or "xnnpack"]


def device_graph(file: str) -> str:
    """Where an artifact lies on the phone."""
    return f"{DEVICE_DIR}/{file.replace('/', '_')}"


def stats_from(run: benchmark_model.RunStats) -> Stats:
    """benchmark_model's steady-state line as Stats (p50 is the median where the tool prints one, else the mean)."""
    v = run.values
    return Stats(
        p50=run.ms("median") or v["avg"] / 1e3,
        p90=None,
        min=v["min"] / 1e3,
        mean=v["avg"] / 1e3,
        runs=run.count,
        std=run.ms("std"),
        max=run.ms("max"),
    )


def result_from(
    record: ArtifactRecord, parsed: benchmark_model.BenchmarkModelResult, delegate: str
) -> ArtifactResult:
    """An ArtifactResult from one benchmark_model run of ``record``."""
    result = blank_result(record)
    if not parsed.complete:
        result.reason = "benchmark_model reported no steady-state statistics"
        return result
    stats = stats_from(parsed.steady)
    keys = (
        [ENCODER] if record.role == Role.ENCODER else [DECODER_1, DECODER_16]
    )  # fixed slots: every click costs the same
    result.measured = True
    result.runtime, result.runtime_details = (
        "litert benchmark_model",
        {"runtime": "litert", "delegate": delegate},
    )
    result.latency = {k: stats for k in keys}
    result.load_ms = parsed.init_ms
    result.rss_delta_mib = parsed.memory_overall_mb
    if record.role == Role.DECODER:
        result.clicks_per_s = 1e3 / stats.mean
    result.extra = {
        "first_inference_ms": parsed.first_inference_ms,
        "warmup_avg_ms": parsed.warmup_avg_ms,
        "memory_init_mb": parsed.memory_init_mb,
        "median_reported": "median" in parsed.steady.values,
        "delegations": [vars(d) for d in parsed.delegations],
    }
    return result


class AdbRunner(Runner):
    kind = "adb"

    def adb(self, *args: str, what: str, serial: str | None = None) -> str:
        """stdout and stderr of an adb command (benchmark_model logs to stderr)."""
        adb = self.tool("adb", hint="install Android platform-tools (Debian: apt-get install adb)")
        proc = self.execute([adb, *(["-s", serial] if serial else []), *args], what)
        return proc.stdout + proc.stderr

    def _find(self) -> AdbDevice:
        devices = adb_devices.parse(self.adb("devices", "-l", what="adb devices -l"))
        serial = self.options.adb_serial or self.profile.resolve("serial")
        if serial:
            found = [d for d in devices if d.serial == serial]
            if not found:
                raise DeviceError(
                    f"device '{self.profile.name}': no Android device with serial {serial} (adb "
                    f"devices -l lists {', '.join(d.serial for d in devices) or 'none'})"
                )
            device = found[0]
        else:
            ready = [d for d in devices if d.ready] or devices
            if not ready:
                raise DeviceError(
                    f"device '{self.profile.name}': no Android device attached (adb devices -l "
                    "lists none); connect a phone with USB debugging on, or start an emulator"
                )
            if len(ready) > 1:
                hint = self.profile.env_hint("serial")
                raise DeviceError(
                    f"device '{self.profile.name}': several Android devices "
                    f"({', '.join(d.serial for d in ready)}); pass --adb-serial"
                    + (f" or set {hint}" if hint else "")
                )
            device = ready[0]
        if not device.ready:
            raise DeviceError(
                f"device '{self.profile.name}': {device.serial} is {device.state}; accept the USB "
                "debugging prompt on the phone"
            )
        return device

    def probe(self) -> str:
        return f"{self._find().label} over adb"

    def run(self, request: BenchRequest) -> RunOutcome:
        phone = self._find_with_binary()
        delegate = self.profile.delegate or "xnnpack"
        results = [
            self._time_artifact(record, request, phone.serial, delegate)
            for record in request.artifacts
        ]
        tflite = [r for r in request.artifacts if r.target == Target.TFLITE]
        return RunOutcome(
            self._device_info(phone),
            results,
            summed_pipelines(results, tflite, "sum of benchmark_model p50s"),
            {"benchmark_model": str(self.options.benchmark_model)},
        )

    def _find_with_binary(self) -> AdbDevice:
        """The phone, with LiteRT's benchmark_model pushed and made executable."""
        if self.options.benchmark_model is None:
            raise DeviceError(
                f"device '{self.profile.name}': pass --benchmark-model PATH (LiteRT's "
                "benchmark_model built for Android arm64)"
            )
        if not self.options.benchmark_model.is_file():
            raise DeviceError(f"{self.options.benchmark_model}: no such benchmark_model binary")
        phone = self._find()
        serial = phone.serial
        self.adb(
            "shell", f"mkdir -p {DEVICE_DIR}", what="creating the device folder", serial=serial
        )
        self.adb(
            "push",
            str(self.options.benchmark_model),
            BINARY,
            what="pushing benchmark_model",
            serial=serial,
        )
        self.adb(
            "shell", f"chmod 755 {BINARY}", what="making benchmark_model executable", serial=serial
        )
        return phone

    def _time_artifact(
        self, record: ArtifactRecord, request: BenchRequest, serial: str, delegate: str
    ) -> ArtifactResult:
        """One artifact through benchmark_model on the phone (a blank row for other targets)."""
        if record.target != Target.TFLITE:
            reason = NOT_RUN.get(record.target, "benchmark_model runs .tflite artifacts only")
            return blank_result(record, reason)
        graph = device_graph(record.file)
        request.progress(f"{serial}: {record.file} ({delegate})")
        self.adb(
            "push",
            str(request.export_dir / record.file),
            graph,
            what=f"pushing {record.file}",
            serial=serial,
        )
        argv = benchmark_command(
            BINARY, graph, request.runs, request.warmup, request.threads, delegate
        )
        output = self.adb(
            "shell",
            " ".join(shlex.quote(a) for a in argv),
            what=f"benchmark_model on {record.file}",
            serial=serial,
        )
        return result_from(record, benchmark_model.parse(output), delegate)

    def _device_info(self, phone: AdbDevice) -> DeviceInfo:
        props = phone.properties
        return DeviceInfo(
            self.profile.name,
            self.kind,
            self.profile.description,
            system="Android",
            machine=props.get("device", ""),
            hostname=phone.serial,
            details={"model": props.get("model", ""), "product": props.get("product", "")},
        )

    def parity_unsupported(self, record: ArtifactRecord) -> str | None:
        return (
            None
            if record.target == Target.TFLITE
            else "benchmark_model runs .tflite artifacts only"
        )

    def run_parity(self, bundle: Path, outputs: Path, request: BenchRequest) -> None:
        """Every case through benchmark_model (pushed by ``run``) with the profile's delegate."""
        serial = self._find().serial
        self.adb(
            "shell",
            f"rm -rf {PARITY_DIR} && mkdir -p {PARITY_DIR}",
            what="preparing the parity folder",
            serial=serial,
        )
        self.adb(
            "push",
            str(bundle / "feeds"),
            f"{PARITY_DIR}/",
            what="pushing the parity feeds",
            serial=serial,
        )
        parsed = Bundle.load(bundle)
        delegate = self.profile.delegate or "xnnpack"
        runtime = {
            "runtime": "litert benchmark_model",
            "delegate": delegate,
            "threads": request.threads,
        }
        entries = []
        with tempfile.TemporaryDirectory(prefix="edgesam-adb-") as tmp:
            for index, artifact in enumerate(parsed.artifacts):
                request.progress(
                    f"{serial}: {artifact.file}, {len(artifact.cases)} parity case(s) ({delegate})"
                )
                entry = ArtifactOutputs(artifact.file, runtime=dict(runtime))
                try:
                    self._parity_cases(
                        parsed, bundle, index, entry, outputs, Path(tmp), request.threads, serial
                    )
                except (DeviceError, ProtocolError) as exc:  # this artifact fails, others run
                    entry.status, entry.error, entry.outputs = STATUS_ERROR, str(exc), {}
                entries.append(entry)
        Results({"system": "Android", "serial": serial}, entries).save(outputs)

    def _parity_cases(
        self,
        bundle: Bundle,
        root: Path,
        index: int,
        entry: ArtifactOutputs,
        outputs: Path,
        scratch: Path,
        threads: int | None,
        serial: str,
    ) -> None:
        artifact = bundle.artifacts[index]
        signatures = signature_io(root / "artifacts" / artifact.file)
        flags = delegate_flags(self.profile.delegate)
        for case_id in artifact.cases:
            case = bundle.case(case_id)
            points = case.feeds["point_labels"].shape[1] if artifact.role == Role.DECODER else None
            signature = signature_for(signatures, artifact.role, points)
            if signature is None:
                entry.skipped[case_id] = f"no signature for {points} points"
                continue
            # feed files are bundle-relative; the bundle's feeds/ was pushed into PARITY_DIR
            feeds = {n: (f"{PARITY_DIR}/{t.file}", t.shape) for n, t in case.feeds.items()}
            remote = f"{PARITY_DIR}/out-{index}-{case_id}.bin"
            argv = parity_command(
                BINARY, device_graph(artifact.file), signature, feeds, remote, threads, flags
            )
            self.adb(
                "shell",
                " ".join(shlex.quote(a) for a in argv),
                what=f"benchmark_model on {case_id}",
                serial=serial,
            )
            local = scratch / f"{index}-{case_id}.bin"
            try:
                self.adb("pull", remote, str(local), what="fetching outputs", serial=serial)
            except DeviceError as exc:
                raise ProtocolError(
                    f"benchmark_model wrote no --output_filepath file for {case_id}: this binary "
                    f"cannot return outputs (use a LiteRT benchmark_model that has it) ({exc})"
                ) from exc
            tensors = split_outputs(local.read_bytes(), signature, artifact.role)
            entry.outputs[case_id] = {
                n: write_tensor(outputs, f"{index}/{case_id}/{n}.bin", a)
                for n, a in tensors.items()
            }
