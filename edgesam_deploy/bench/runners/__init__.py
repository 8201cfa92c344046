"""One runner per way of reaching a device; imported lazily so each one's tools stay optional."""

from __future__ import annotations

from ...devices import DeviceProfile
from ...registry import LazyRegistry
from .base import BenchRequest, Runner, RunnerOptions, RunOutcome

RUNNERS = LazyRegistry(
    "runner",
    {
        "local": "edgesam_deploy.bench.runners.local:LocalRunner",
        "ssh": "edgesam_deploy.bench.runners.ssh:SshRunner",
        "adb": "edgesam_deploy.bench.runners.adb:AdbRunner",
        "xcode": "edgesam_deploy.bench.runners.xcode:XcodeRunner",
        "emulated": "edgesam_deploy.bench.runners.emulated:EmulatedRunner",  # profile.emulated()
    },
)


def get_runner(profile: DeviceProfile, options: RunnerOptions | None = None) -> Runner:
    """The runner that reaches ``profile``'s device (profiles are validated, so the kind is known)."""
    return RUNNERS[profile.runner](profile, options)


__all__ = ["BenchRequest", "Runner", "RunnerOptions", "RunOutcome", "get_runner"]
