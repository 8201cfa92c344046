"""``xcrun devicectl`` (Xcode 15+), which reaches a paired iPhone: its command lines and the JSON it
writes with ``--json-output`` (recorded samples in tests/data/xcode/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP_CONTAINER = "appDataContainer"


@dataclass(frozen=True)
class Phone:
    """An iPhone or iPad known to CoreDevice."""

    identifier: str  # CoreDevice id: what --device takes
    udid: str
    name: str
    model: str  # marketing name, e.g. "iPhone 14 Pro"
    product_type: str  # e.g. "iPhone15,2"
    os_version: str
    paired: bool
    connected: bool  # a tunnel is up now (wired or on the local network)
    developer_mode: str

    @property
    def label(self) -> str:
        model = self.model or self.product_type
        return f"{self.name or '?'} ({model}, iOS {self.os_version or '?'}, {self.identifier})"

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` is this phone's CoreDevice id, UDID or name."""
        return wanted in (self.identifier, self.udid, self.name)


def parse_devices(data: dict[str, Any]) -> list[Phone]:
    """The iOS devices of ``devicectl list devices --json-output`` (watches and TVs left out)."""
    phones = []
    for device in data.get("result", {}).get("devices", []):
        hardware = device.get("hardwareProperties", {})
        if hardware.get("platform") != "iOS":
            continue
        props = device.get("deviceProperties", {})
        connection = device.get("connectionProperties", {})
        phones.append(
            Phone(
                identifier=str(device.get("identifier", "")),
                udid=str(hardware.get("udid", "")),
                name=str(props.get("name", "")),
                model=str(hardware.get("marketingName", "")),
                product_type=str(hardware.get("productType", "")),
                os_version=str(props.get("osVersionNumber", "")),
                paired=connection.get("pairingState") == "paired",
                connected=connection.get("tunnelState") == "connected",
                developer_mode=str(props.get("developerModeStatus", "")),
            )
        )
    return phones


def list_devices(xcrun: str, json_out: Path) -> list[str]:
    return [xcrun, "devicectl", "list", "devices", "--json-output", str(json_out)]


def install_app(xcrun: str, device: str, app: Path) -> list[str]:
    return [xcrun, "devicectl", "device", "install", "app", "--device", device, str(app)]


def copy_to(xcrun: str, device: str, bundle_id: str, source: Path, destination: str) -> list[str]:
    """Copy one local file to ``destination`` (relative to the app's data container)."""
    return _copy(xcrun, "to", device, bundle_id, str(source), destination)


def copy_from(xcrun: str, device: str, bundle_id: str, source: str, destination: Path) -> list[str]:
    """Copy ``source`` (relative to the app's data container) to a local file."""
    return _copy(xcrun, "from", device, bundle_id, source, str(destination))


def _copy(
    xcrun: str, direction: str, device: str, bundle_id: str, source: str, destination: str
) -> list[str]:
    """``devicectl device copy to|from`` between this machine and the app's data container."""
    return [
        *(xcrun, "devicectl", "device", "copy", direction, "--device", device),
        *("--domain-type", APP_CONTAINER, "--domain-identifier", bundle_id),
        *("--source", source, "--destination", destination),
    ]


def launch(xcrun: str, device: str, bundle_id: str, arguments: list[str]) -> list[str]:
    """Launch the app (ending a running copy); ``arguments`` go to the app, after ``--``."""
    return [
        xcrun,
        "devicectl",
        "device",
        "process",
        "launch",
        "--device",
        device,
        "--terminate-existing",
        bundle_id,
        "--",
        *arguments,
    ]
