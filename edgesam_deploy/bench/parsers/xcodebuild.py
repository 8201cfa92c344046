"""``xcodebuild`` for the benchmark app of apps/ios: the build command line, where the app lands,
and one line out of a failed build's log (signing problems get a hint)."""

from __future__ import annotations

import re
from pathlib import Path

SCHEME = "EdgeSAMBench"
CONFIGURATION = "Release"
PHONE_DESTINATION = "generic/platform=iOS"
SIMULATOR_DESTINATION = "generic/platform=iOS Simulator"
_TEAM = re.compile(r"[A-Z0-9]{10}")
_SIGNING = re.compile(
    r"requires a development team|no account for team|no profiles for '[^']*' were found"
    r"|no signing certificate|code signing is required|provisioning profile",
    re.IGNORECASE,
)
_ERROR = re.compile(r"(?:^|\s)error:\s*(.+)$")


def valid_team(team: str) -> bool:
    """Whether ``team`` looks like an Apple development team id (10 letters and digits)."""
    return bool(_TEAM.fullmatch(team))


def build_command(
    xcodebuild: str,
    project: Path,
    derived_data: Path,
    simulator: bool,
    bundle_id: str,
    team: str | None,
) -> list[str]:
    """Build the app for a phone (automatic signing with ``team``) or the simulator (unsigned)."""
    argv = [
        xcodebuild,
        "-project",
        str(project),
        "-scheme",
        SCHEME,
        "-configuration",
        CONFIGURATION,
        "-destination",
        SIMULATOR_DESTINATION if simulator else PHONE_DESTINATION,
        "-derivedDataPath",
        str(derived_data),
        "-quiet",
    ]
    settings = [f"PRODUCT_BUNDLE_IDENTIFIER={bundle_id}"]
    if simulator:
        settings.append("CODE_SIGNING_ALLOWED=NO")
    else:
        argv += ["-allowProvisioningUpdates", "-allowProvisioningDeviceRegistration"]
        settings += [f"DEVELOPMENT_TEAM={team}", "CODE_SIGN_STYLE=Automatic"]
    return argv + ["build", *settings]


def product_path(derived_data: Path, simulator: bool) -> Path:
    """Where ``build_command`` leaves the app."""
    platform = "iphonesimulator" if simulator else "iphoneos"
    return (
        Path(derived_data) / "Build" / "Products" / f"{CONFIGURATION}-{platform}" / f"{SCHEME}.app"
    )


def signing_problem(log: str) -> str | None:
    """The first line of a build log that is about code signing, without its 'error:' prefix."""
    for line in log.splitlines():
        if _SIGNING.search(line):
            match = _ERROR.search(line)
            return (match.group(1) if match else line).strip()[:300]
    return None


def first_error(log: str) -> str | None:
    """The first 'error:' line of a build log, else None."""
    for line in log.splitlines():
        match = _ERROR.search(line)
        if match:
            return match.group(1).strip()[:300]
    return None


def version_command(xcodebuild: str) -> list[str]:
    return [xcodebuild, "-version"]


def xcode_version(output: str) -> str:
    """'Xcode 15.4' out of ``xcodebuild -version`` (its first line), '' if absent."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[0] if lines and lines[0].startswith("Xcode") else ""
