"""The iOS Simulator as a device (profile ``ios-simulator``): ``xcrun simctl`` boots a simulator,
installs the same benchmark app (unsigned) and launches it; the app's container is a folder of
this Mac (``simctl get_app_container``), so files are plain copies.

Core ML runs there on the Mac's CPU: its timings are the simulator's, labelled as such, and its
parity is Core ML's own (not an emulation).
"""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

from ...errors import DeviceError
from ..parsers import simctl
from ..schema import DeviceInfo
from .xcode import Transport, XcodeRunner


class SimulatorTransport(Transport):
    """A simulated iPhone on this Mac."""

    simulator = True
    _container: Path | None = None

    @cached_property
    def device(self) -> simctl.Simulator:
        runner = self.runner
        proc = runner.execute(simctl.list_devices(self.xcrun), "xcrun simctl list", timeout=120)
        try:
            sims = simctl.parse_devices(json.loads(proc.stdout))
        except (ValueError, AttributeError) as exc:
            raise runner.error(f"unreadable output of xcrun simctl list ({exc})") from exc
        wanted = runner.options.xcode_device or runner.profile.resolve("device")
        chosen = simctl.choose(sims, wanted)
        if chosen is None:
            names = ", ".join(sorted({s.name for s in sims})[:8]) or "none"
            what = f"no iOS simulator '{wanted}'" if wanted else "no iPhone simulator"
            raise runner.error(
                f"{what} (available: {names}); add an iOS runtime in Xcode > Settings > Platforms"
            )
        return chosen

    def find(self) -> str:
        return self.device.label

    def install(self, app: Path, bundle_id: str) -> None:
        udid = self.device.udid
        self.runner.execute(
            simctl.boot(self.xcrun, udid), f"booting {self.device.name}", timeout=600
        )
        self.runner.execute(
            simctl.install(self.xcrun, udid, app), "installing the benchmark app", timeout=600
        )
        proc = self.runner.execute(
            simctl.app_container(self.xcrun, udid, bundle_id),
            "simctl get_app_container",
            timeout=60,
        )
        container = Path(proc.stdout.strip())
        if not proc.stdout.strip() or not container.is_dir():
            raise self.runner.error(
                f"simctl get_app_container printed no folder ({proc.stdout.strip()!r})"
            )
        self._container = container

    def _documents(self) -> Path:
        if self._container is None:
            raise self.runner.error("the benchmark app is not installed in the simulator yet")
        return self._container / "Documents"

    def push(self, local: Path, name: str, bundle_id: str) -> None:
        self._documents().mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, self._documents() / name)

    def pull(self, name: str, local: Path, bundle_id: str) -> None:
        source = self._documents() / name
        if not source.is_file():
            raise DeviceError(f"{name} is not in the app's container yet")
        shutil.copy2(source, local)

    def launch(self, bundle_id: str, arguments: list[str]) -> None:
        argv = simctl.launch(self.xcrun, self.device.udid, bundle_id, arguments)
        self.runner.execute(argv, "launching the benchmark app in the simulator", timeout=120)

    def device_info(self, facts: dict[str, Any]) -> DeviceInfo:
        sim, profile = self.device, self.runner.profile
        note = "timings are the Mac's CPU in the iOS Simulator, not an iPhone's"
        description = f"{profile.description}; {note}"
        return DeviceInfo(
            profile.name,
            XcodeRunner.kind,
            description,
            system=facts.get("system", sim.label),
            machine=facts.get("machine", ""),
            hostname=sim.name,
            cpu_count=int(facts["processors"]) if facts.get("processors") else None,
            details={**facts, "udid": sim.udid, "runtime": sim.runtime, "simulator": True},
        )
