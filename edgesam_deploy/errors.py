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


def require(module: str, extra: str):
    """Import an optional module or raise MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra) from exc


class OutputError(DeployError):
    """An output location cannot be written: not a directory, read-only, full, or not a disk."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message, cut to ``limit`` characters; its class name
    when the message is empty (one home for trimming third-party messages into one line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:limit] if lines else exc.__class__.__name__
