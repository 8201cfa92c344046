"""Atomic writes and content hashes for files and directory artifacts (.mlpackage)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .errors import OutputError, first_line
from .testhook import hook


def remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# errors of the output location (not of what is being written): each is one line, exit 2
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
PROBE_BYTES = 4096
PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)$")


def output_error(path: Path, exc: OSError) -> OutputError:
    """``exc`` (writing at ``path``) as one line."""
    reason = os.strerror(exc.errno) if exc.errno else first_line(exc)
    return OutputError(f"{path}: cannot write there ({reason})")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(directory: Path, name: str | None = None) -> list[Path]:
    """Remove the ``.NAME.partial-PID`` leftovers of dead processes in ``directory`` (only those of
    ``name`` if given, else in the whole tree); returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = directory.glob(f".{name}.partial-*") if name else directory.rglob(".*.partial-*")
    stale = [p for p in found if (m := PARTIAL.match(p.name)) and not pid_alive(int(m["pid"]))]
    for path in stale:
        remove(path)
    return stale


def check_output_dir(path: Path) -> Path:
    """Prove that ``path`` is, or can be created as, a writable directory with room for a small
    file, before any work starts and without creating it (a file, a read-only mount, /proc or a
    full disk: OutputError). The probe is written in ``path`` or its nearest existing parent."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise OutputError(f"{existing}: exists and is not a directory")
    probe = existing / f".edgesam-deploy.probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise output_error(path, exc) from exc
    finally:
        with suppress(OSError):  # absent, or on a read-only mount
            probe.unlink()
    return path


def check_output_file(path: Path) -> Path:
    """``path`` can be written as a file: not a directory, in a directory ``check_output_dir``
    accepts (checked before any work starts)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name")
    check_output_dir(path.parent)
    return path


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; move it into place only if the block succeeds.

    Works for files and directories; an interrupted or failed write leaves nothing at ``path``
    that looks complete (a previous version stays until the new one is whole). Leftovers of
    killed writers of the same name are removed first; a full, read-only or forbidden location
    is an OutputError.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(path.parent, path.name)
        remove(tmp)
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        if path.is_dir():
            remove(path)
        os.replace(tmp, path)
    except OSError as exc:
        remove(tmp)
        if exc.errno in DISK_ERRNOS:
            raise output_error(path, exc) from exc
        raise
    except BaseException:
        remove(tmp)
        raise
    hook("written", path.name)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indent 2, trailing newline)."""
    with atomic_output(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def sha256_path(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, or of a directory (relative paths and contents, in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def size_bytes(path: Path) -> int:
    """Size of a file, or the total of a directory's files."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
