"""``xcrun simctl``, which drives the iOS Simulator: its command lines and the JSON of
``simctl list --json`` (recorded samples in tests/data/xcode/)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_IOS_RUNTIME = re.compile(r"SimRuntime\.iOS-(\d+)-(\d+)(?:-(\d+))?$")
BOOTED = "Booted"


@dataclass(frozen=True)
class Simulator:
    """One simulated iOS device."""

    udid: str
    name: str
    runtime: str  # e.g. com.apple.CoreSimulator.SimRuntime.iOS-17-5
    os_version: tuple[int, ...]
    state: str  # Booted | Shutdown | Creating ...
    device_type: str

    @property
    def label(self) -> str:
        version = ".".join(str(v) for v in self.os_version)
        return f"{self.name} (iOS {version} Simulator, {self.udid})"

    @property
    def is_iphone(self) -> bool:
        return "iPhone" in self.device_type or self.name.startswith("iPhone")


def parse_devices(data: dict[str, Any]) -> list[Simulator]:
    """Available iOS simulators of ``simctl list --json`` (or ``list devices --json``)."""
    sims = []
    for runtime, devices in data.get("devices", {}).items():
        match = _IOS_RUNTIME.search(runtime)
        if match is None:
            continue  # watchOS, tvOS, visionOS, or the pre-Xcode-10 key format
        version = tuple(int(v) for v in match.groups() if v is not None)
        for d in devices:
            if d.get("isAvailable", True) is False:
                continue
            sims.append(
                Simulator(
                    udid=str(d.get("udid", "")),
                    name=str(d.get("name", "")),
                    runtime=runtime,
                    os_version=version,
                    state=str(d.get("state", "")),
                    device_type=str(d.get("deviceTypeIdentifier", "")),
                )
            )
    return sims


def choose(sims: list[Simulator], wanted: str | None) -> Simulator | None:
    """The simulator named or identified by ``wanted``; without one, a booted iPhone, else the
    first iPhone of the newest iOS runtime. For a name on several runtimes, the newest."""
    if wanted:
        found = [s for s in sims if wanted in (s.udid, s.name)]
    else:
        phones = [s for s in sims if s.is_iphone]
        found = [s for s in phones if s.state == BOOTED] or phones
    if not found:
        return None
    newest = max(s.os_version for s in found)
    return next(s for s in found if s.os_version == newest)


def list_devices(xcrun: str) -> list[str]:
    return [xcrun, "simctl", "list", "--json", "devices", "available"]


def boot(xcrun: str, udid: str) -> list[str]:
    """Boot the simulator if needed and wait until it has finished booting."""
    return [xcrun, "simctl", "bootstatus", udid, "-b"]


def install(xcrun: str, udid: str, app: Path) -> list[str]:
    return [xcrun, "simctl", "install", udid, str(app)]


def app_container(xcrun: str, udid: str, bundle_id: str) -> list[str]:
    """Prints the path of the app's data container (its Documents is inside)."""
    return [xcrun, "simctl", "get_app_container", udid, bundle_id, "data"]


def launch(xcrun: str, udid: str, bundle_id: str, arguments: list[str]) -> list[str]:
    """Launch the app (ending a running copy); ``arguments`` go to the app."""
    return [xcrun, "simctl", "launch", "--terminate-running-process", udid, bundle_id, *arguments]
