"""Atomic writes and content hashes for files and directory artifacts (.mlpackage)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
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


FILE, DIRECTORY = "file", "directory"
SPECIAL = (  # what else can be at an output path, in words
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link that cannot be followed"),
)


def existing_kind(path: Path) -> str | None:
    """What is at ``path``, a final symbolic link not followed: None (nothing), FILE (a regular
    file), DIRECTORY, or anything else in words."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise output_error(path, exc) from exc
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIRECTORY
    return next((words for test, words in SPECIAL if test(mode)), "not a regular file")


def replaceable(path: Path, kind: str | None = None) -> Path:
    """Where an output of ``kind`` (FILE, DIRECTORY, or None: either) written at ``path`` lands,
    if what is there may be replaced by it; else OutputError.

    The rule: nothing, or the same kind, may be replaced. A file never replaces a directory nor a
    directory a file, and nothing replaces a named pipe, a device or a socket. A symbolic link is
    written through, never replaced: its target is where the output lands, under the same rule
    (a link to a device is refused like the device)."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    found = existing_kind(target)
    if found is None or found == kind or (kind is None and found in (FILE, DIRECTORY)):
        return target
    if found == DIRECTORY:
        raise OutputError(f"{path}: is a directory; give a file name")
    if found == FILE:
        raise OutputError(f"{path}: exists and is not a directory")
    raise OutputError(f"{path}: exists and is {found}, not a regular file; give another name")


def check_output_dir(path: Path) -> Path:
    """Prove that ``path`` is, or can be created as, a writable directory with room for a small
    file, before any work starts and without creating it (a file, a read-only mount, /proc or a
    full disk: OutputError). The probe is written in ``path`` or its nearest existing parent."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if os.path.lexists(p) or p == Path(p.anchor))
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
    """``path`` can be written as a file (checked before any work starts): nothing or a regular
    file is there (``replaceable``), in a directory that ``check_output_dir`` accepts."""
    path = Path(path)
    check_output_dir(replaceable(path, FILE).parent)
    return path


def _given(paths: Mapping[str, Path | str | None] | None) -> dict[str, Path]:
    """The paths of ``paths`` that were given, as Paths."""
    return {label: Path(p) for label, p in (paths or {}).items() if p is not None}


def _labelled(label: str, check: Callable[[Path], Path], path: Path) -> None:
    """``check(path)``, its OutputError prefixed with ``label``."""
    try:
        check(path)
    except OutputError as exc:
        raise OutputError(f"{label}: {exc}") from exc


def check_outputs(
    files: Mapping[str, Path | str | None],
    directories: Mapping[str, Path | str | None] | None = None,
    inputs: Mapping[str, Path | str | None] | None = None,
) -> None:
    """Check a command's output ``files`` and ``directories`` (by option name; None: not asked
    for) before any work: no two of them, nor one of them and one of ``inputs`` (files that must
    survive), are one path (compared resolved), and each can be written (``check_output_dir``,
    ``check_output_file``). A failure is one OutputError naming the option."""
    dirs, outs = _given(directories), _given(files)
    seen: dict[str, str] = {}
    for label, path in {**_given(inputs), **dirs, **outs}.items():
        key = os.path.realpath(path)
        if key in seen:
            raise OutputError(f"{seen[key]} and {label} are one path ({path}): give each its own")
        seen[key] = label
    for label, path in dirs.items():
        _labelled(label, check_output_dir, path)
    for label, path in outs.items():
        _labelled(label, check_output_file, path)


def _about(exc: OSError, path: Path) -> bool:
    """Whether ``exc`` was raised for ``path`` itself (not for what was being read)."""
    return exc.filename is not None and os.fsdecode(exc.filename) == str(path)


def _place(tmp: Path, path: Path) -> None:
    """Move the finished ``tmp`` to where ``path`` lands, if ``replaceable`` allows it now; a
    previous directory is moved aside and deleted only once the new one is in place."""
    target = replaceable(path, DIRECTORY if existing_kind(tmp) == DIRECTORY else FILE)
    if existing_kind(target) != DIRECTORY:
        os.replace(tmp, target)
        return
    aside = target.with_name(f".{target.name}.previous-{os.getpid()}")
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)
        raise
    remove(aside)


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; move it into place only if the block succeeds.

    The block writes a file or a directory there. What is at ``path`` is replaced only as
    ``replaceable`` allows: a regular file by a file, a directory by a directory, a symbolic link
    written through to its target; a named pipe, device or socket is refused before the block,
    a directory the block would replace by a file (or the reverse) after it, and either way it
    stays untouched (OutputError). An interrupted or failed write leaves nothing at ``path`` that
    looks complete (a previous version stays until the new one is whole). Leftovers of killed
    writers of the same name are removed first; a full, read-only or forbidden location, or one
    where the temporary path cannot be made (/proc), is an OutputError.
    """
    path = Path(path)
    target = replaceable(path)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target.parent, target.name)
        remove(tmp)
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        _place(tmp, path)
    except OSError as exc:
        remove(tmp)
        if exc.errno in DISK_ERRNOS or _about(exc, tmp):
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
