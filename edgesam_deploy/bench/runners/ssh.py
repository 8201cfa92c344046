"""A Jetson or any Linux board over the system OpenSSH client.

Two ways to measure: run edgesam-deploy's own local runner on the board (the default; the remote
command is a template), or, for profiles with ``runtime = "tensorrt"``, build a TensorRT engine on
the board from our ONNX with ``trtexec`` and parse its performance summary.

Parity is measured on the board through the device-parity protocol: the bundle goes over scp, the
board runs ``python -m edgesam_deploy.device`` (NumPy and the runtime only), the outputs come back
over scp. TensorRT profiles run the engine built for timing on every case with trtexec's own
``--loadInputs`` and ``--exportOutput``, so the fp16 engine is judged, not only timed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from pathlib import Path

from ...device.protocol import Bundle
from ...errors import DeviceError
from ...manifest import ArtifactRecord, Manifest
from ...vocabulary import Role, Target
from ..host import parse_cpuinfo
from ..parsers import trtexec
from ..schema import DECODER_1, DECODER_16, ENCODER, ArtifactResult, BenchReport, DeviceInfo, Stats
from .base import BenchRequest, Runner, RunOutcome, blank_result, summed_pipelines
from .trtexec_parity import EXPORTS_DIR, export_name, trtexec_parity_command, trtexec_results

DEFAULT_REMOTE_COMMAND = (
    "{python} -m edgesam_deploy bench --device host --artifacts {artifacts} --json {json} "
    "--runs {runs} --warmup {warmup} {threads_option} --no-parity --no-reference"
)
DEFAULT_REMOTE_DIR = "edgesam-bench"
PARITY_DIR = "parity"  # under the remote folder: the bundle, the outputs, trtexec's JSON files
# decoder point counts: a single click (one point + padding) and 16 slots; engines cover 1..16
_POINTS = {DECODER_1: 2, DECODER_16: 16}


def trtexec_command(
    trtexec_path: str,
    onnx: str,
    engine: str,
    role: str,
    runs: int,
    warmup_ms: int,
    fp16: bool,
    points: int | None = None,
) -> list[str]:
    """trtexec argv that builds ``engine`` from ``onnx`` (if absent) and times it; decoders get
    optimization profiles over 1..16 points and run with ``points``."""
    argv = [
        trtexec_path,
        f"--onnx={onnx}",
        f"--saveEngine={engine}",
        f"--iterations={runs}",
        f"--warmUp={warmup_ms}",
        "--duration=0",
        "--avgRuns=1",
    ]
    if fp16:
        argv.append("--fp16")
    if role == Role.DECODER:
        argv += [
            "--minShapes=point_coords:1x1x2,point_labels:1x1",
            "--optShapes=point_coords:1x2x2,point_labels:1x2",
            "--maxShapes=point_coords:1x16x2,point_labels:1x16",
            f"--shapes=point_coords:1x{points}x2,point_labels:1x{points}",
        ]
    return argv


def stats_from_trtexec(result: trtexec.TrtexecResult, runs: int) -> Stats:
    """Host-side latency (enqueue to outputs back) as Stats."""
    lat = result.sections["latency"]
    return Stats(
        p50=lat.get("median", lat["mean"]),
        p90=lat.get("p90"),
        min=lat["min"],
        mean=lat["mean"],
        runs=runs,
        max=lat.get("max"),
    )


class SshRunner(Runner):
    kind = "ssh"

    @property
    def host(self) -> str:
        host = self.options.ssh_host or self.profile.resolve("host")
        if not host:
            hint = self.profile.env_hint("host")
            raise DeviceError(
                f"device '{self.profile.name}' needs an ssh host: pass --ssh-host HOST"
                + (f" or set {hint}" if hint else "")
            )
        return host

    def _common(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        return opts + (["-F", str(self.options.ssh_config)] if self.options.ssh_config else [])

    def ssh(self, command: str, what: str, timeout: float | None = None) -> str:
        ssh = self.tool("ssh", hint="install the OpenSSH client")
        return self.execute([ssh, *self._common(), self.host, command], what, timeout).stdout

    def scp(self, sources: list[str], dest: str, what: str) -> None:
        scp = self.tool("scp", hint="install the OpenSSH client")
        self.execute([scp, "-q", "-r", *self._common(), *sources, dest], what)

    @property
    def remote_dir(self) -> str:
        return self.options.remote_dir or self.profile.resolve("remote_dir") or DEFAULT_REMOTE_DIR

    @property
    def python(self) -> str:
        return self.options.remote_python or self.profile.resolve("remote_python") or "python3"

    @property
    def tensorrt(self) -> bool:
        return self.profile.runtime == "tensorrt"

    def _engine(self, file: str) -> str:
        """The TensorRT engine trtexec builds on the board from ONNX artifact ``file``."""
        return f"{self.remote_dir}/artifacts/{file}.{self.profile.delegate or 'fp32'}.engine"

    def probe(self) -> str:
        return f"{self.host}: " + " ".join(
            self.ssh("uname -snrm", "ssh connection", timeout=30).split()
        )

    def parity_unsupported(self, record: ArtifactRecord) -> str | None:
        if self.tensorrt:
            return None if record.target == Target.ONNX else "trtexec runs ONNX artifacts only"
        return "Core ML runs on Apple devices only" if record.target == Target.COREML else None

    def run_parity(self, bundle: Path, outputs: Path, request: BenchRequest) -> None:
        """Copy the bundle to the board, run it there, fetch ``outputs``."""
        remote = f"{self.remote_dir}/{PARITY_DIR}"
        request.progress(f"{self.host}: copying the parity bundle to {remote}")
        self.ssh(
            f"rm -rf {shlex.quote(remote)} && mkdir -p {shlex.quote(remote)}",
            "preparing the remote parity folder",
        )
        self.scp([str(bundle)], f"{self.host}:{remote}/", "copying the parity bundle")
        remote_bundle = f"{remote}/{bundle.name}"
        if self.tensorrt:
            self._trtexec_parity(Bundle.load(bundle), remote_bundle, remote, outputs, request)
            return
        remote_outputs = f"{remote}/{outputs.name}"
        request.progress(f"{self.host}: running the parity cases")
        paths = f"{shlex.quote(remote_bundle)} {shlex.quote(remote_outputs)}"
        command = f"{self.python} -m edgesam_deploy.device {paths}"
        self.ssh(command, "the device side of the parity protocol")
        self.scp(
            [f"{self.host}:{remote_outputs}"], str(outputs.parent), "fetching the parity outputs"
        )

    def _trtexec_parity(
        self, bundle: Bundle, remote_bundle: str, remote: str, outputs: Path, request: BenchRequest
    ) -> None:
        """Every case through the engine built for timing; trtexec's JSON exports -> ``outputs``."""
        trt = self.profile.resolve("trtexec") or "trtexec"
        exports = f"{remote}/{EXPORTS_DIR}"
        self.ssh(f"mkdir -p {shlex.quote(exports)}", "preparing the trtexec output folder")
        failures: dict[int, str] = {}
        for index, artifact in enumerate(bundle.artifacts):
            request.progress(
                f"{self.host}: {artifact.file} on {len(artifact.cases)} parity case(s) with trtexec"
            )
            try:
                for case_id in artifact.cases:
                    case = bundle.case(case_id)
                    feeds = {
                        name: f"{remote_bundle}/{spec.file}" for name, spec in case.feeds.items()
                    }
                    points = (
                        case.feeds["point_labels"].shape[1]
                        if artifact.role == Role.DECODER
                        else None
                    )
                    export = f"{exports}/{export_name(index, case_id)}"
                    argv = trtexec_parity_command(
                        trt, self._engine(artifact.file), feeds, export, points
                    )
                    self.ssh(
                        " ".join(shlex.quote(a) for a in argv),
                        f"trtexec on {artifact.file} ({case_id})",
                    )
            except DeviceError as exc:  # this artifact fails; the others still run
                failures[index] = str(exc)
        self.scp([f"{self.host}:{exports}"], str(outputs.parent), "fetching trtexec's outputs")
        device = {"system": " ".join(self.ssh("uname -srm", "ssh connection").split()), "tool": trt}
        runtime = {
            "runtime": "tensorrt",
            "precision": self.profile.delegate or "fp32",
            "tool": "trtexec",
        }
        trtexec_results(bundle, outputs.parent / EXPORTS_DIR, outputs, failures, device, runtime)

    def _upload(self, request: BenchRequest, staging: Path) -> str:
        """Copy the chosen artifacts and a manifest listing only them; returns the remote folder."""
        local = staging / "artifacts"
        for record in request.artifacts:
            dest = local / record.file
            dest.parent.mkdir(parents=True, exist_ok=True)
            src = request.export_dir / record.file
            shutil.copytree(src, dest) if src.is_dir() else shutil.copy2(src, dest)
        Manifest(
            model=request.manifest.model,
            tools=request.manifest.tools,
            artifacts=list(request.artifacts),
        ).save(local)
        remote = f"{self.remote_dir}/artifacts"
        request.progress(f"{self.host}: copying {len(request.artifacts)} artifact(s) to {remote}")
        self.ssh(
            f"rm -rf {shlex.quote(remote)} && mkdir -p {shlex.quote(self.remote_dir)}",
            "preparing the remote folder",
        )
        self.scp([str(local)], f"{self.host}:{self.remote_dir}/", "copying artifacts")
        return remote

    def run(self, request: BenchRequest) -> RunOutcome:
        with tempfile.TemporaryDirectory(prefix="edgesam-ssh-") as tmp:
            remote = self._upload(request, Path(tmp))
            if self.tensorrt:
                return self._run_trtexec(request, remote)
            return self._run_tool(request, remote, Path(tmp))

    def _run_tool(self, request: BenchRequest, remote: str, staging: Path) -> RunOutcome:
        template = (
            self.options.remote_command
            or self.profile.resolve("remote_command")
            or DEFAULT_REMOTE_COMMAND
        )
        remote_json = f"{self.remote_dir}/result.json"
        command = template.format(
            python=self.python,
            artifacts=shlex.quote(remote),
            json=shlex.quote(remote_json),
            runs=request.runs,
            warmup=request.warmup,
            threads_option=f"--threads {request.threads}" if request.threads else "",
        )
        request.progress(f"{self.host}: {command}")
        self.ssh(command, "the remote benchmark")
        self.scp(
            [f"{self.host}:{remote_json}"], str(staging / "result.json"), "fetching the results"
        )
        try:
            report = BenchReport.from_dict(json.loads((staging / "result.json").read_text()))
        except (ValueError, KeyError) as exc:
            raise DeviceError(
                f"device '{self.profile.name}': unreadable results from the board ({exc})"
            ) from exc
        device = report.device
        device.details = {**device.details, "ssh_host": self.host, "remote_device": device.name}
        device.name, device.runner, device.description = (
            self.profile.name,
            self.kind,
            self.profile.description,
        )
        return RunOutcome(device, report.artifacts, report.pipelines, report.versions)

    def _trtexec_result(
        self, record: ArtifactRecord, request: BenchRequest, remote: str
    ) -> ArtifactResult:
        trt = self.profile.resolve("trtexec") or "trtexec"
        onnx = f"{remote}/{record.file}"
        engine = self._engine(record.file)
        fp16 = self.profile.delegate == "fp16"
        result = blank_result(record)
        keys = [ENCODER] if record.role == Role.ENCODER else list(_POINTS)
        for key in keys:
            argv = trtexec_command(
                trt,
                onnx,
                engine,
                record.role,
                request.runs,
                200 * request.warmup,
                fp16,
                _POINTS.get(key),
            )
            request.progress(f"{self.host}: {record.file} ({key}) with trtexec")
            parsed = trtexec.parse(
                self.ssh(" ".join(shlex.quote(a) for a in argv), f"trtexec on {record.file}")
            )
            if not parsed.complete:
                result.reason = "trtexec printed no performance summary"
                return result
            result.latency[key] = stats_from_trtexec(parsed, request.runs)
            result.extra[key] = {
                "throughput_qps": parsed.throughput_qps,
                "gpu_compute_ms": parsed.sections.get("gpu_compute", {}),
                "command": argv,
            }
        result.measured = True
        result.runtime, result.runtime_details = (
            "tensorrt",
            {"runtime": "tensorrt", "precision": "fp16" if fp16 else "fp32", "engine": engine},
        )
        if DECODER_1 in result.latency:
            result.clicks_per_s = 1e3 / result.latency[DECODER_1].mean
        return result

    def _run_trtexec(self, request: BenchRequest, remote: str) -> RunOutcome:
        onnx = [r for r in request.artifacts if r.target == Target.ONNX]
        results = [self._trtexec_result(r, request, remote) for r in onnx]
        results += [
            blank_result(r, "trtexec runs ONNX artifacts only")
            for r in request.artifacts
            if r.target != Target.ONNX
        ]
        system = " ".join(self.ssh("uname -srm", "ssh connection").split())
        device = DeviceInfo(
            self.profile.name,
            self.kind,
            self.profile.description,
            system=system,
            hostname=self.host,
            details=parse_cpuinfo(self.ssh("cat /proc/cpuinfo", "reading the board's CPU")),
        )
        return RunOutcome(
            device,
            results,
            summed_pipelines(results, onnx, "sum of trtexec p50s"),
            {"trtexec": self.profile.resolve("trtexec") or "trtexec"},
        )
