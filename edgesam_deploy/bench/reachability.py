"""Whether a profile's device can be reached now (for `edgesam-deploy devices`)."""

from __future__ import annotations

from ..devices.profiles import DeviceProfile
from ..errors import DeployError
from .runners import RunnerOptions, get_runner


def reachability(profile: DeviceProfile, options: RunnerOptions | None = None) -> tuple[bool, str]:
    """(reachable, one line: the device found, or why it cannot be reached)."""
    try:
        return True, get_runner(profile, options).probe()
    except DeployError as exc:
        return False, str(exc)
