"""An iPhone from a Mac with Xcode: ``xcrun devicectl`` finds the paired phone, ``coremlcompiler``
compiles each .mlpackage, devicectl copies it into a benchmark app's container and launches the app,
which prints one ``EDGESAM_BENCH {json}`` line per artifact (load_ms, latency in the result schema).

The benchmark app is named by the profile's ``app_bundle_id`` connection hint. Elsewhere than
macOS the runner refuses with what it needs.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ...errors import DeviceError
from ...manifest import ArtifactRecord
from ..schema import ArtifactResult, DeviceInfo, Stats
from .base import BenchRequest, Runner, RunOutcome, blank_result, summed_pipelines

RESULT_PREFIX = "EDGESAM_BENCH "
NOT_RUN = {
    "executorch": "not measured: the benchmark app runs Core ML packages; a .pte needs an app linking "
    "ExecuTorch's runtime with the Core ML or XNNPACK backend",
}


def paired_devices(devicectl_json: dict[str, Any]) -> list[dict[str, str]]:
    """Paired devices of ``devicectl list devices --json-output``: id, name, model."""
    out = []
    for d in devicectl_json.get("result", {}).get("devices", []):
        if d.get("connectionProperties", {}).get("pairingState") == "paired":
            out.append({
                "id": d.get("identifier", ""), "name": d.get("deviceProperties", {}).get("name", ""),
                "model": d.get("hardwareProperties", {}).get("marketingName", ""),
            })
    return out


def launch_command(device: str, bundle: str, model: str, role: str, runs: int, warmup: int, compute_units: str) -> list[str]:
    """devicectl argv that runs the benchmark app on one compiled model and prints its result line."""
    return [
        "xcrun", "devicectl", "device", "process", "launch", "--device", device, "--terminate-existing", "--console",
        bundle, "--model", model, "--role", role, "--runs", str(runs), "--warmup", str(warmup), "--compute-units", compute_units,
    ]


def parse_app_output(record: ArtifactRecord, text: str, compute_units: str) -> ArtifactResult:
    """The app's ``EDGESAM_BENCH`` line -> ArtifactResult (not measured if the line is missing)."""
    lines = [line.split(RESULT_PREFIX, 1)[1] for line in text.splitlines() if RESULT_PREFIX in line]
    if not lines:
        return blank_result(record, "the benchmark app printed no result line")
    data = json.loads(lines[-1])
    result = blank_result(record)
    result.measured = True
    result.runtime, result.runtime_details = "coreml", {"runtime": "coreml", "compute_units": compute_units}
    result.load_ms = data.get("load_ms")
    result.peak_rss_mib = data.get("peak_rss_mib")
    result.latency = {k: Stats(**v) for k, v in data.get("latency", {}).items()}
    result.clicks_per_s = data.get("clicks_per_s")
    return result


class XcodeRunner(Runner):
    kind = "xcode"

    def _require_mac(self) -> None:
        if sys.platform != "darwin":
            raise DeviceError(
                f"device '{self.profile.name}' needs macOS with the Xcode command-line tools (xcrun devicectl, Xcode 15 "
                f"or later) and a paired iPhone with the benchmark app; this machine runs {sys.platform}"
            )

    def _device(self) -> dict[str, str]:
        self._require_mac()
        xcrun = self.tool("xcrun", hint="install the Xcode command-line tools (xcode-select --install)")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "devices.json"
            self.execute([xcrun, "devicectl", "list", "devices", "--json-output", str(out)], "xcrun devicectl list devices", timeout=60)
            devices = paired_devices(json.loads(out.read_text()))
        wanted = self.options.xcode_device or self.profile.resolve("device")
        found = [d for d in devices if wanted in (d["id"], d["name"])] if wanted else devices
        if len(found) != 1:
            names = ", ".join(f"{d['name']} ({d['id']})" for d in devices) or "none"
            hint = self.profile.env_hint("device")
            raise DeviceError(f"device '{self.profile.name}': choose one paired iPhone with --xcode-device" + (f" or {hint}" if hint else "") + f"; paired: {names}")
        return found[0]

    def probe(self) -> str:
        d = self._device()
        return f"{d['name']} ({d['model']}, {d['id']})"

    def run(self, request: BenchRequest) -> RunOutcome:
        phone = self._device()
        bundle = self.profile.resolve("app_bundle_id")
        if not bundle:
            raise DeviceError(f"device '{self.profile.name}': its profile needs connection.app_bundle_id, the benchmark app installed on the iPhone")
        units = self.profile.compute_units or "ALL"
        results = []
        with tempfile.TemporaryDirectory(prefix="edgesam-xcode-") as tmp:
            for record in request.artifacts:
                if record.target != "coreml":
                    results.append(blank_result(record, NOT_RUN.get(record.target, "the iPhone runs Core ML artifacts only")))
                    continue
                request.progress(f"{phone['name']}: {record.file}")
                self.execute(["xcrun", "coremlcompiler", "compile", str(request.export_dir / record.file), tmp], f"compiling {record.file}")
                compiled = Path(tmp) / (Path(record.file).stem + ".mlmodelc")
                dest = f"Documents/{compiled.name}"
                self.execute([
                    "xcrun", "devicectl", "device", "copy", "to", "--device", phone["id"], "--domain-type", "appDataContainer",
                    "--domain-identifier", bundle, "--source", str(compiled), "--destination", dest,
                ], f"copying {compiled.name} to the iPhone")
                proc = self.execute(launch_command(phone["id"], bundle, dest, record.role, request.runs, request.warmup, units), f"benchmark app on {record.file}")
                results.append(parse_app_output(record, proc.stdout + proc.stderr, units))
        device = DeviceInfo(self.profile.name, self.kind, self.profile.description, system="iOS", machine=phone["model"], hostname=phone["name"], details={"id": phone["id"]})
        coreml = [r for r in request.artifacts if r.target == "coreml"]
        return RunOutcome(device, results, summed_pipelines(results, coreml, "sum of p50s"), {"app": bundle})
