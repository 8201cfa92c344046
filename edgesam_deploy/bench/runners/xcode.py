"""An iPhone (``xcrun devicectl``) or the iOS Simulator (``xcrun simctl``, runners/simulator.py)
from a Mac with Xcode 15 or later, through the benchmark app of apps/ios (docs/ios.md).

Each launch: build the app (``xcodebuild``; signed with the profile's team for a phone), install
it, copy one job pack into its Documents, launch it with the run's id, wait for its done.json and
copy its result pack back. Timing and device parity are two launches: ``run`` times every Core ML
artifact with each compute-unit setting, ``run_parity`` runs the device-parity bundle and leaves
the outputs for the host's judge. Elsewhere than macOS the runner refuses in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from ...checkpoints import cache_dir
from ...device.protocol import Bundle, BundleArtifact, Case, Settings, write_tensor
from ...device.run import ARTIFACTS_DIR
from ...errors import DeviceError
from ...manifest import ArtifactRecord
from ...vocabulary import ComputeUnit, Role, Target, graph_spec
from ..metrics import Inputs, embeddings_placeholder
from ..parsers import devicectl, xcodebuild
from ..parsers.xcode_app import (
    PARITY,
    TIMING,
    JobSpec,
    RowLabels,
    artifact_rows,
    check_header,
    done_error,
    pipeline_rows,
    read_pack,
    write_pack,
)
from ..schema import DECODER_1, DECODER_16, DeviceInfo
from .base import BenchRequest, Runner, RunOutcome, blank_result, last_line, pairs, pipeline_label

APP_DIR_ENV = "EDGESAM_IOS_APP_DIR"
DEFAULT_BUNDLE_ID = "dev.edgesam-deploy.bench"
POLL_S = 3.0


def app_files(run_id: str) -> tuple[str, str, str]:
    """The job pack, result pack and done file of one run in the app's Documents."""
    return (
        f"edgesam-job-{run_id}.pack",
        f"edgesam-result-{run_id}.pack",
        f"edgesam-done-{run_id}.json",
    )


NOT_COREML = "the iOS benchmark app runs Core ML artifacts only"
NOT_RUN = {  # why an artifact of another target is not measured here
    Target.EXECUTORCH: "not measured: the benchmark app runs Core ML packages; a .pte needs an app "
    "linking ExecuTorch's runtime with the Core ML or XNNPACK backend",
}


def host_platform() -> str:
    """This machine's ``sys.platform`` (the runner needs "darwin")."""
    return sys.platform


def app_project() -> Path:
    """The benchmark app's Xcode project: ``$EDGESAM_IOS_APP_DIR`` or apps/ios of this checkout."""
    root = os.environ.get(APP_DIR_ENV) or Path(__file__).resolve().parents[3] / "apps" / "ios"
    return Path(root) / "EdgeSAMBench.xcodeproj"


def write_timing_bundle(
    directory: Path, records: list[ArtifactRecord], export_dir: Path, settings: Settings
) -> Bundle:
    """A bundle in the device-parity format with the timing inputs of the local runner (the
    benchmark photo, a single click and 16 points on placeholder embeddings) and no parity cases."""
    inputs, embeddings = Inputs(), embeddings_placeholder()
    image = write_tensor(directory, "feeds/time-encoder/image.bin", inputs.image["image"])
    shared = write_tensor(directory, "feeds/time-embeddings/image_embeddings.bin", embeddings)
    cases = [Case("time-encoder", Role.ENCODER, {"image": image})]
    for key in (DECODER_1, DECODER_16):
        feeds, case_id = inputs.prompt(key, embeddings), f"time-{key.replace('_', '-')}"
        files = {
            n: write_tensor(directory, f"feeds/{case_id}/{n}.bin", feeds[n])
            for n in graph_spec(Role.DECODER).input_names
            if n != "image_embeddings"
        }
        cases.append(Case(case_id, Role.DECODER, {"image_embeddings": shared, **files}))
    for record in records:
        src, dest = Path(export_dir) / record.file, Path(directory) / ARTIFACTS_DIR / record.file
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest) if src.is_dir() else shutil.copy2(src, dest)
    artifacts = [
        BundleArtifact(r.file, Target(r.target), Role(r.role), r.precision, r.sha256, [])
        for r in records
    ]
    bundle = Bundle(cases, artifacts, settings)
    bundle.save(directory)
    return bundle


class Transport(ABC):
    """How the app is installed, fed, launched and read on one kind of iOS device."""

    simulator: ClassVar[bool]

    def __init__(self, runner: XcodeRunner, xcrun: str) -> None:
        self.runner = runner
        self.xcrun = xcrun

    @abstractmethod
    def find(self) -> str:
        """Choose the device; one line describing it (DeviceError if there is none)."""

    @abstractmethod
    def install(self, app: Path, bundle_id: str) -> None:
        """Install (or update) the built app."""

    @abstractmethod
    def push(self, local: Path, name: str, bundle_id: str) -> None:
        """Copy a local file to the app's Documents/``name``."""

    @abstractmethod
    def pull(self, name: str, local: Path, bundle_id: str) -> None:
        """Copy the app's Documents/``name`` to a local file (DeviceError if it is not there)."""

    @abstractmethod
    def launch(self, bundle_id: str, arguments: list[str]) -> None:
        """Start the app (ending a running copy); it runs on after this returns."""

    @abstractmethod
    def device_info(self, facts: dict[str, Any]) -> DeviceInfo:
        """Where it ran, from the transport's device and the app's own facts."""


class PhoneTransport(Transport):
    """A paired iPhone, through ``xcrun devicectl``."""

    simulator = False

    @cached_property
    def phone(self) -> devicectl.Phone:
        runner = self.runner
        with tempfile.TemporaryDirectory(prefix="edgesam-devicectl-") as tmp:
            out = Path(tmp) / "devices.json"
            runner.execute(
                devicectl.list_devices(self.xcrun, out), "xcrun devicectl list devices", timeout=120
            )
            try:
                phones = [
                    p for p in devicectl.parse_devices(json.loads(out.read_text())) if p.paired
                ]
            except (OSError, ValueError, AttributeError) as exc:
                raise runner.error(f"unreadable output of devicectl list devices ({exc})") from exc
        wanted = runner.options.xcode_device or runner.profile.resolve("device")
        found = (
            [p for p in phones if p.matches(wanted)]
            if wanted
            else [p for p in phones if p.connected] or phones
        )
        if len(found) != 1:
            listed = ", ".join(p.label for p in phones) or "none"
            hint = runner.profile.env_hint("device")
            choose = f"choose one with --xcode-device{f' or {hint}' if hint else ''}"
            what = (
                f"no paired iPhone '{wanted}'"
                if wanted
                else "no paired iPhone"
                if not found
                else "several paired iPhones"
            )
            raise runner.error(
                f"{what} ({choose}; paired: {listed}); pair it once in Xcode > Window > Devices"
            )
        phone = found[0]
        if phone.developer_mode not in ("", "enabled"):
            raise runner.error(
                f"{phone.name}: Developer Mode is {phone.developer_mode} "
                "(Settings > Privacy & Security)"
            )
        return phone

    def find(self) -> str:
        return self.phone.label

    def install(self, app: Path, bundle_id: str) -> None:
        argv = devicectl.install_app(self.xcrun, self.phone.identifier, app)
        self.runner.execute(argv, "installing the benchmark app", timeout=600)

    def push(self, local: Path, name: str, bundle_id: str) -> None:
        argv = devicectl.copy_to(
            self.xcrun, self.phone.identifier, bundle_id, local, f"Documents/{name}"
        )
        self.runner.execute(argv, f"copying {name} to the iPhone")

    def pull(self, name: str, local: Path, bundle_id: str) -> None:
        argv = devicectl.copy_from(
            self.xcrun, self.phone.identifier, bundle_id, f"Documents/{name}", local
        )
        self.runner.execute(argv, f"copying {name} from the iPhone", timeout=600)

    def launch(self, bundle_id: str, arguments: list[str]) -> None:
        argv = devicectl.launch(self.xcrun, self.phone.identifier, bundle_id, arguments)
        self.runner.execute(
            argv, "launching the benchmark app (is the iPhone unlocked?)", timeout=120
        )

    def device_info(self, facts: dict[str, Any]) -> DeviceInfo:
        phone, profile = self.phone, self.runner.profile
        return DeviceInfo(
            profile.name,
            XcodeRunner.kind,
            profile.description,
            system=facts.get("system", f"iOS {phone.os_version}"),
            machine=facts.get("machine", phone.product_type),
            hostname=phone.name,
            cpu_count=int(facts["processors"]) if facts.get("processors") else None,
            details={
                **facts,
                "model": phone.model,
                "device_id": phone.identifier,
                "udid": phone.udid,
            },
        )


class XcodeRunner(Runner):
    kind = "xcode"
    _installed: str | None = None  # bundle id once built and installed
    _xcode = ""  # Xcode version that built it

    @property
    def simulator(self) -> bool:
        return self.profile.resolve("platform") == "simulator"

    def error(self, message: str) -> DeviceError:
        return DeviceError(f"device '{self.profile.name}': {message}")

    @cached_property
    def transport(self) -> Transport:
        if host_platform() != "darwin":
            tool = "simctl" if self.simulator else "devicectl"
            phone = "" if self.simulator else " and a paired iPhone"
            alternative = (
                ""
                if self.simulator
                else "; on a Mac without an iPhone, --device ios-simulator runs the same app"
            )
            raise self.error(
                f"needs macOS with Xcode 15 or later (xcodebuild, xcrun {tool}){phone}; "
                f"this machine runs {host_platform()}{alternative}"
            )
        xcrun = self.tool(
            "xcrun",
            hint="install Xcode 15 or later (select it: xcode-select -s /Applications/Xcode.app)",
        )
        if self.simulator:
            from .simulator import SimulatorTransport

            return SimulatorTransport(self, xcrun)
        return PhoneTransport(self, xcrun)

    def probe(self) -> str:
        return self.transport.find()

    def parity_unsupported(self, record: ArtifactRecord) -> str | None:
        return None if record.target == Target.COREML else NOT_RUN.get(record.target, NOT_COREML)

    def compute_units(self) -> tuple[list[ComputeUnit], ComputeUnit]:
        """(settings timed, the profile's last; the one parity runs with). The simulator runs Core
        ML on the Mac's CPU whatever the setting, so only the profile's is timed there."""
        try:
            chosen = ComputeUnit(self.profile.compute_units or ComputeUnit.ALL)
        except ValueError:
            raise self.error(
                f"compute_units '{self.profile.compute_units}' is not one of "
                f"{', '.join(ComputeUnit)}"
            ) from None
        if self.simulator:
            return [chosen], chosen
        return [u for u in ComputeUnit if u != chosen] + [chosen], chosen

    def team(self) -> str | None:
        """The signing team of a phone build (None for the simulator); one-line error if unset."""
        if self.simulator:
            return None
        team = self.options.xcode_team or self.profile.resolve("team")
        hint = "--xcode-team" if self.options.xcode_team else (
            self.profile.env_hint("team") or "--xcode-team or the profile's connection.team"
        )
        if not team:
            raise self.error(
                f"code signing is not set up: set {hint} to your Apple development team id "
                "(Xcode > Settings > Accounts; a free Personal Team works) and sign in to Xcode "
                "with that Apple ID"
            )
        if not xcodebuild.valid_team(team):
            raise self.error(
                f"'{team}' (from {hint}) is not an Apple team id (10 capital letters and digits)"
            )
        return team

    def bundle_id(self, team: str | None) -> str:
        """The app's bundle id: the profile's, else one per team (automatic signing registers
        it)."""
        return self.profile.resolve("app_bundle_id") or (
            f"{DEFAULT_BUNDLE_ID}.{team}" if team else DEFAULT_BUNDLE_ID
        )

    def _build(self, team: str | None, bundle_id: str, request: BenchRequest) -> tuple[Path, str]:
        """Build the app; (its path, the Xcode version). Signing failures say what to set up."""
        project = app_project()
        if not project.is_dir():
            raise self.error(
                f"the benchmark app's Xcode project is not at {project}: set ${APP_DIR_ENV} to "
                "apps/ios of a clone of edgesam-deploy"
            )
        tool = self.tool("xcodebuild", hint="install Xcode 15 or later")
        version = xcodebuild.xcode_version(
            self.execute(xcodebuild.version_command(tool), "xcodebuild -version", timeout=60).stdout
        )
        derived = cache_dir() / "ios-build" / ("simulator" if self.simulator else "iphoneos")
        request.progress(
            f"building the benchmark app ({version or 'Xcode'}, "
            f"{'simulator' if self.simulator else f'team {team}'})"
        )
        try:
            proc = subprocess.run(
                xcodebuild.build_command(tool, project, derived, self.simulator, bundle_id, team),
                capture_output=True,
                text=True,
                timeout=self.options.timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise self.error(
                f"building the benchmark app timed out after {exc.timeout:.0f} s"
            ) from exc
        if proc.returncode != 0:
            log = proc.stdout + proc.stderr
            signing = xcodebuild.signing_problem(log)
            if signing:
                raise self.error(
                    f"code signing failed for team {team}: {signing} "
                    "(sign in to Xcode with that team's Apple ID)"
                )
            raise self.error(
                "building the benchmark app failed: "
                f"{xcodebuild.first_error(log) or last_line(log)}"
            )
        return xcodebuild.product_path(derived, self.simulator), version

    def _install(self, request: BenchRequest) -> str:
        """Build and install the app, once per runner; its bundle id."""
        if self._installed is None:
            team = self.team()
            bundle_id = self.bundle_id(team)
            self.transport.find()
            app, version = self._build(team, bundle_id, request)
            request.progress(f"installing the benchmark app ({bundle_id})")
            self.transport.install(app, bundle_id)
            self._installed, self._xcode = bundle_id, version
        return self._installed

    def _round_trip(self, job: JobSpec, bundle: Path, request: BenchRequest, tmp: Path) -> Path:
        """Send the job, launch the app, wait for it, bring its results back; the results folder."""
        bundle_id = self._install(request)
        job_pack, result_pack, done = app_files(job.run_id)
        (tmp / "job.json").write_text(json.dumps(job.document(), indent=1))
        write_pack(tmp / job_pack, {"job.json": tmp / "job.json", "bundle": bundle})
        request.progress(f"{self.transport.find()}: {job.mode} run {job.run_id}")
        self.transport.push(tmp / job_pack, job_pack, bundle_id)
        self.transport.launch(bundle_id, ["--run-id", job.run_id])
        self._wait(job.run_id, bundle_id, done, tmp / done)
        self.transport.pull(result_pack, tmp / result_pack, bundle_id)
        read_pack(tmp / result_pack, tmp / "result")
        return tmp / "result"

    def _wait(self, run_id: str, bundle_id: str, done: str, local: Path) -> None:
        """Poll for the run's done file; DeviceError with the app's error, or on timeout."""
        deadline = time.monotonic() + self.options.timeout_s
        last = f"no {done} yet"
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            try:
                self.transport.pull(done, local, bundle_id)
                error = done_error(json.loads(local.read_text()), run_id)
            except (DeviceError, ValueError) as exc:
                last = str(exc)
                continue
            if error:
                raise self.error(f"the benchmark app failed: {error}")
            if error == "":
                return
        raise self.error(
            f"the benchmark app did not finish within {self.options.timeout_s:.0f} s ({last})"
        )

    def run(self, request: BenchRequest) -> RunOutcome:
        """Time every Core ML artifact with each compute-unit setting, then the encoder + decoder
        pairs."""
        coreml = [r for r in request.artifacts if r.target == Target.COREML]
        others = [
            blank_result(r, NOT_RUN.get(r.target, NOT_COREML))
            for r in request.artifacts
            if r.target != Target.COREML
        ]
        timed, parity_units = self.compute_units()
        pipelines = [
            {"encoder": e.file, "decoder": d.file, "label": pipeline_label(e, d)}
            for e, d in pairs(coreml)
        ]
        job = JobSpec(
            uuid.uuid4().hex, TIMING, request.runs, request.warmup, timed, parity_units, pipelines
        )
        with tempfile.TemporaryDirectory(prefix="edgesam-ios-") as tmp:
            bundle = write_timing_bundle(
                Path(tmp) / "bundle", coreml, request.export_dir, self.settings()
            )
            request.progress(
                f"timing bundle: {len(bundle.artifacts)} artifact(s), "
                f"compute units {', '.join(timed)}"
            )
            result = self._round_trip(job, Path(tmp) / "bundle", request, Path(tmp))
            data = self._read_json(result / "bench.json")
        check_header(data, job.run_id)
        facts = {str(k): str(v) for k, v in data.get("device", {}).items()}
        labels = self.labels(facts)
        rows = artifact_rows(data, coreml, [str(u) for u in timed], labels)
        for row in rows:  # device parity fills the row of the parity setting, the last of each file
            if row.runtime_details["compute_units"] != parity_units:
                row.parity_reason = f"device parity runs with {parity_units} only (see that row)"
        device = self.transport.device_info(facts)
        versions = {
            "xcode": self._xcode,
            "app": self._installed or "",
            "ios": facts.get("system", ""),
        }
        return RunOutcome(device, rows + others, pipeline_rows(data, labels), versions)

    def run_parity(self, bundle: Path, outputs: Path, request: BenchRequest) -> None:
        """Run the device-parity bundle in the app with the profile's compute units; copy the
        outputs folder (results.json and tensors) to ``outputs``."""
        _, parity_units = self.compute_units()
        job = JobSpec(uuid.uuid4().hex, PARITY, 1, 0, [], parity_units)
        with tempfile.TemporaryDirectory(prefix="edgesam-ios-parity-") as tmp:
            result = self._round_trip(job, Path(bundle), request, Path(tmp))
            if not (result / "outputs").is_dir():
                raise self.error("the benchmark app returned no outputs folder")
            shutil.copytree(result / "outputs", outputs, dirs_exist_ok=True)

    def settings(self) -> Settings:
        return Settings(runtime="coreml", compute_units=str(self.compute_units()[1]))

    def labels(self, facts: dict[str, str]) -> RowLabels:
        """Simulator rows say so in their runtime: Core ML's own kernels, on the Mac's CPU."""
        if self.simulator:
            return RowLabels(
                "coreml (iOS Simulator)", facts.get("system", ""), "iOS Simulator on the Mac's CPU"
            )
        return RowLabels("coreml", facts.get("system", ""))

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise self.error(f"the benchmark app's {path.name} is unreadable ({exc})") from exc
        if not isinstance(data, dict):
            raise self.error(f"the benchmark app's {path.name} is not a JSON object")
        return data
