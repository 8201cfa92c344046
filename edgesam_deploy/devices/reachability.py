"""Whether a profile's device can be reached now (for `edgesam-deploy devices`)."""
from __future__ import annotations

from ..bench.runners import RunnerOptions, get_runner
from ..errors import DeployError
from .profiles import DeviceProfile


def reachability(profile: DeviceProfile, options: RunnerOptions | None = None) -> tuple[bool, str]:
    """(reachable, one line: the device found, or why it cannot be reached)."""
    try:
        return True, get_runner(profile, options).probe()
    except DeployError as exc:
        return False, str(exc)
