"""Errors the CLI turns into one line on stderr and a non-zero exit code."""
from __future__ import annotations


class DeployError(Exception):
    """A user-facing failure: bad input, missing dependency, unreachable device."""

    exit_code = 2


class MissingDependencyError(DeployError):
    """An optional extra is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this needs the Python module '{module}', which is not installed: "
            f"pip install 'edgesam-deploy[{extra}]'"
        )


class DeviceError(DeployError):
    """A device is missing, unreachable or disappeared mid-run."""


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first line of an exception's message (or of a tool's output), cut to ``limit``."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def require(module: str, extra: str):
    """Import an optional module or raise MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra) from exc


class OutputError(DeployError):
    """An output location cannot be written: not a directory, read-only, full, or not a disk."""

