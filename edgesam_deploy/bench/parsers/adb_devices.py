"""``adb devices -l`` -> attached devices with their state and properties."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdbDevice:
    serial: str
    state: str  # device | unauthorized | offline | no permissions ...
    properties: dict[str, str] = field(
        default_factory=dict
    )  # usb, product, model, device, transport_id

    @property
    def ready(self) -> bool:
        return self.state == "device"

    @property
    def label(self) -> str:
        return f"{self.properties.get('model', self.serial).replace('_', ' ')} ({self.serial})"


def parse(text: str) -> list[AdbDevice]:
    """Devices listed after 'List of devices attached' (daemon start-up lines are ignored)."""
    lines = text.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("List of devices attached")), None
    )
    if start is None:
        return []
    devices = []
    for line in lines[start + 1 :]:
        parts = line.split()
        if not parts or line.startswith("*"):
            continue
        props = dict(p.split(":", 1) for p in parts[1:] if ":" in p)
        state = " ".join(p for p in parts[1:] if ":" not in p)
        devices.append(AdbDevice(parts[0], state, props))
    return devices
