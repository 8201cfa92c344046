"""Device profiles: which artifacts a device wants, the runtime that runs them and how to reach it.

The packaged ``profiles.toml`` is read first; a user file (``--profiles FILE`` or
``$EDGESAM_DEPLOY_PROFILES``) adds profiles or replaces packaged ones of the same name.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import DeployError
from ..manifest import ArtifactRecord
from ..vocabulary import Target

PROFILES_ENV = "EDGESAM_DEPLOY_PROFILES"
RUNNERS = ("local", "ssh", "adb", "xcode")
EMULATED = "emulated"  # the runner of a profile's ARM64 twin (``bench --emulate``), never in a file
TARGETS = tuple(str(t) for t in Target)
PACKAGED = "packaged profiles.toml"
_FIELDS = {
    "description", "runner", "target", "precision", "runtime", "delegate", "compute_units", "threads",
    "connection", "emulate_cpu",
}


class ProfileError(DeployError):
    """A profile file is unreadable or a profile is malformed or unknown."""


@dataclass(frozen=True)
class DeviceProfile:
    """One benchmark device. ``targets`` / ``precisions`` empty means any."""

    name: str
    runner: str
    description: str = ""
    targets: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    runtime: str = "auto"
    delegate: str | None = None
    compute_units: str | None = None
    threads: int | None = None
    connection: dict[str, Any] = field(default_factory=dict)
    source: str = PACKAGED
    emulate_cpu: str | None = None  # QEMU CPU model of the emulated ARM64 twin; None: no twin

    def wants(self, record: ArtifactRecord) -> bool:
        """Whether an artifact has a target and precision this device runs."""
        return (not self.targets or record.target in self.targets) and (
            not self.precisions or record.precision in self.precisions
        )

    def wanted_label(self) -> str:
        """E.g. 'tflite artifacts (fp16 or fp32)'."""
        targets = " or ".join(self.targets) if self.targets else "any"
        precisions = f" ({' or '.join(self.precisions)})" if self.precisions else ""
        return f"{targets} artifacts{precisions}"

    def resolve(self, key: str) -> str | None:
        """A connection value: the environment variable named by ``<key>_env`` when set, else ``<key>``."""
        env = self.connection.get(f"{key}_env")
        if env and os.environ.get(env):
            return os.environ[env]
        value = self.connection.get(key)
        return None if value is None else str(value)

    def env_hint(self, key: str) -> str:
        """'$VAR' naming where ``key`` can be set, for error messages ('' if none)."""
        env = self.connection.get(f"{key}_env")
        return f"${env}" if env else ""

    def emulated(self) -> "DeviceProfile":
        """This device's emulated ARM64 twin (same artifacts and runtime, runner 'emulated')."""
        if not self.emulate_cpu:
            raise ProfileError(
                f"device '{self.name}' has no emulated ARM64 twin (its profile sets no emulate_cpu)"
            )
        return replace(self, runner=EMULATED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "runner": self.runner, "description": self.description,
            "targets": list(self.targets), "precisions": list(self.precisions), "runtime": self.runtime,
            "delegate": self.delegate, "compute_units": self.compute_units, "threads": self.threads,
            "connection": dict(self.connection), "source": self.source,
            "emulate_cpu": self.emulate_cpu,
        }


def _as_tuple(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None or value == "any":
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ProfileError(f"{where}: '{key}' must be a string or a list of strings")
    return tuple(items)


def _parse(name: str, table: Any, source: str) -> DeviceProfile:
    where = f"{source}: profile [{name}]"
    if not isinstance(table, dict):
        raise ProfileError(f"{where} must be a table")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    runner = table.get("runner")
    if runner not in RUNNERS:
        raise ProfileError(f"{where}: 'runner' must be one of {', '.join(RUNNERS)}, got {runner!r}")
    targets = _as_tuple(table.get("target"), "target", where)
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise ProfileError(f"{where}: unknown target {', '.join(bad)}; choose from {', '.join(TARGETS)} or any")
    threads = table.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ProfileError(f"{where}: 'threads' must be a positive integer")
    connection = table.get("connection", {})
    if not isinstance(connection, dict):
        raise ProfileError(f"{where}: 'connection' must be a table")
    emulate_cpu = table.get("emulate_cpu")
    if emulate_cpu is not None and (not isinstance(emulate_cpu, str) or not emulate_cpu.strip()):
        raise ProfileError(f"{where}: 'emulate_cpu' must be a QEMU CPU model, e.g. \"cortex-a76\"")
    return DeviceProfile(
        name=name, runner=runner, description=str(table.get("description", "")), targets=targets,
        precisions=_as_tuple(table.get("precision"), "precision", where), runtime=str(table.get("runtime", "auto")),
        delegate=table.get("delegate"), compute_units=table.get("compute_units"), threads=threads,
        connection=dict(connection), source=source, emulate_cpu=emulate_cpu,
    )


def _read(text: str, source: str) -> dict[str, DeviceProfile]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML ({exc})") from exc
    return {name: _parse(name, table, source) for name, table in data.items()}


def load_profiles(user_file: Path | None = None) -> dict[str, DeviceProfile]:
    """Packaged profiles, then those of ``user_file`` or ``$EDGESAM_DEPLOY_PROFILES`` on top."""
    packaged = resources.files(__package__).joinpath("profiles.toml").read_text()
    profiles = _read(packaged, PACKAGED)
    path = user_file or (Path(os.environ[PROFILES_ENV]) if os.environ.get(PROFILES_ENV) else None)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ProfileError(f"{path}: no such profiles file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start}); a profiles file is TOML") from exc
        profiles.update(_read(text, str(path)))
    return profiles


def get_profile(name: str, user_file: Path | None = None) -> DeviceProfile:
    """The profile called ``name`` or a ProfileError listing the known ones."""
    profiles = load_profiles(user_file)
    if name not in profiles:
        raise ProfileError(f"unknown device '{name}'; known: {', '.join(profiles)} (see `edgesam-deploy devices`)")
    return profiles[name]


def select_artifacts(profile: DeviceProfile, records: list[ArtifactRecord], directory: Path) -> list[ArtifactRecord]:
    """The artifacts of an export directory this profile runs, or a DeployError saying what it needs."""
    chosen = [r for r in records if profile.wants(r)]
    if not chosen:
        have = sorted({f"{r.target} {r.precision}" for r in records}) or ["nothing"]
        raise DeployError(
            f"device '{profile.name}' needs {profile.wanted_label()}; {directory} holds {', '.join(have)}: "
            f"export them with `edgesam-deploy export --target {profile.targets[0] if profile.targets else 'all'}`"
        )
    return chosen
