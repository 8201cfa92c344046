"""Export directories as transactions.

An export writes its artifacts into ``DIR/.staging-PID/`` (same filesystem, same layout) while the
previous files and manifest stay untouched. To commit, it writes the new manifest into the staging
directory, then a journal ``DIR/.edgesam-deploy.commit.json`` naming what moves (the commit point),
then moves each file into place and the manifest last, and deletes the journal. A process killed
before the journal leaves the previous state; one killed after it leaves a journal that the next
export (or ``parity`` / ``bench``) rolls forward, so the manifest always ends up describing exactly
the files present. One export at a time holds ``DIR/.edgesam-deploy.lock`` (flock); another is
refused with one line. Staging directories and partial files of dead processes are removed by the
next export.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError, first_line
from .fileio import (
    check_output_dir,
    existing_kind,
    output_error,
    pid_alive,
    remove,
    remove_stale_partials,
    replaceable,
    write_json,
)
from .manifest import MANIFEST_NAME, Manifest
from .manifest_schema import check_relative, inside
from .testhook import hook

LOCK_NAME = ".edgesam-deploy.lock"
JOURNAL_NAME = ".edgesam-deploy.commit.json"
STAGING_PREFIX = ".staging-"


class BusyError(DeployError):
    """Another export holds the directory."""


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s export lock, or raise BusyError naming the process that holds it."""
    lock = Path(directory) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_error(directory, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise BusyError(
                f"{directory} is being written by another export (pid {holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        hook("locked")
        yield
    finally:
        os.close(fd)  # releases the flock


def _damaged(journal_path: Path, why: str) -> DeployError:
    return DeployError(
        f"{journal_path}: damaged commit journal ({why}); remove it and export again"
    )


def _staging(directory: Path, journal: dict, journal_path: Path) -> Path:
    """The journal's staging directory: a real directory (or gone) directly inside ``directory``."""
    name = journal.get("staging")
    if not isinstance(name, str) or "/" in name or not name.startswith(STAGING_PREFIX):
        raise _damaged(journal_path, f"staging {name!r} is not a {STAGING_PREFIX}* name")
    check_relative(name, str(journal_path))
    staging = directory / name
    if staging.is_symlink() or (staging.exists() and not staging.is_dir()):
        raise _damaged(journal_path, f"{name} is not a directory of this export")
    return staging


def _plan(directory: Path, journal_path: Path) -> tuple[Path, list[tuple[Path, Path]]]:
    """Read the journal and check every move it names before any is made: the staging directory
    is a real directory inside ``directory``, each source stays inside it and each destination
    inside ``directory`` once symlinks are resolved, and the staged manifest is a plain file.
    Returns the staging directory and the (source, destination) pairs, the manifest last."""
    if journal_path.is_symlink() or not journal_path.is_file():
        raise _damaged(journal_path, "not a plain file")
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise _damaged(journal_path, first_line(exc)) from exc
    moves = journal.get("files") if isinstance(journal, dict) else None
    if not isinstance(moves, list) or not all(isinstance(f, str) for f in moves):
        raise _damaged(journal_path, "no list of files")
    staging = _staging(directory, journal, journal_path)
    where = str(journal_path)
    pairs = [(inside(staging, rel, where), inside(directory, rel, where)) for rel in moves]
    manifest = staging / MANIFEST_NAME
    if manifest.is_symlink() or (manifest.exists() and not manifest.is_file()):
        raise _damaged(journal_path, f"the staged {MANIFEST_NAME} is not a plain file")
    return staging, [*pairs, (manifest, directory / MANIFEST_NAME)]


def _apply(pairs: list[tuple[Path, Path]]) -> None:
    """Make the moves of a checked plan; those already made are skipped (idempotent)."""
    for i, (src, dst) in enumerate(pairs):
        if src.exists() or src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir() and not dst.is_symlink():
                remove(dst)  # a directory artifact (.mlpackage) cannot be replaced in one rename
            os.replace(src, dst)
        if i == 0:
            hook("moved")


def roll_forward(directory: Path) -> bool:
    """Finish a commit that a killed export left (its journal is present); True if there was one.

    A journal that names anything but renames inside ``directory`` (a symlinked staging
    directory, a path through a symlink that leads out, a journal that is itself a symlink) is
    refused in one line before anything moves. ``parity`` and ``bench`` roll a journal forward
    too (``settle``) rather than refusing to read the directory: the journal is written only once
    every staged file is complete, so finishing it makes only the renames the interrupted export
    had committed to, all inside the directory, and the manifest then describes exactly the files
    present; refusing would leave the directory unreadable until a full export ran again. A
    journal in a pull request gains nothing either: it can only place, inside the directory, files
    the request could have committed there directly.
    """
    directory = Path(directory)
    journal_path = directory / JOURNAL_NAME
    if not (journal_path.exists() or journal_path.is_symlink()):
        return False
    staging, pairs = _plan(directory, journal_path)
    _apply(pairs)
    remove(staging)
    journal_path.unlink()
    return True


def settle(directory: Path) -> None:
    """Before reading an export directory: finish an interrupted commit if one is pending (see
    ``roll_forward`` for why a read-only command does so)."""
    journal = Path(directory) / JOURNAL_NAME
    if journal.exists() or journal.is_symlink():
        with locked(directory):
            roll_forward(directory)


def _clean_stale(directory: Path) -> None:
    """Remove staging directories and partial files that dead processes left."""
    for staging in Path(directory).glob(f"{STAGING_PREFIX}*"):
        pid = staging.name[len(STAGING_PREFIX) :]
        if not pid.isdigit() or not pid_alive(int(pid)):
            remove(staging)
    remove_stale_partials(directory)


@dataclass
class Transaction:
    """An export in progress: exporters write under ``staging``; ``commit`` publishes it."""

    directory: Path
    staging: Path

    def commit(self, manifest: Manifest, files: list[str]) -> None:
        """Publish ``files`` (relative, written under ``staging``) with ``manifest`` describing the
        whole directory afterwards. The journal write is the commit point: before it, a file that
        would replace a directory of the user's (or a directory a file, or anything a pipe or a
        device) is refused with the directory left as it was (``fileio.replaceable``)."""
        for rel in files:
            replaceable(self.directory / rel, existing_kind(self.staging / rel))
        manifest.save(self.staging)
        write_json(
            self.directory / JOURNAL_NAME, {"staging": self.staging.name, "files": list(files)}
        )
        hook("commit")
        roll_forward(self.directory)


def _unmake(created: list[Path]) -> None:
    """Remove the directories ``created`` (deepest first) for an export that leaves nothing in
    them but its lock: a failed export into a new --out leaves no trace."""
    if not created or [p.name for p in created[0].iterdir()] != [LOCK_NAME]:
        return
    with suppress(OSError):  # another process may have put something there meanwhile
        (created[0] / LOCK_NAME).unlink()
        for path in created:
            path.rmdir()


@contextmanager
def export_transaction(directory: Path) -> Iterator[Transaction]:
    """Lock ``directory``, finish or clean what earlier exports left, and yield a Transaction; an
    exception or signal before ``commit`` leaves the directory as it was (a directory this
    export created is removed again)."""
    directory = check_output_dir(directory)
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(directory, exc) from exc
    with locked(directory):
        try:
            roll_forward(directory)
            _clean_stale(directory)
            staging = directory / f"{STAGING_PREFIX}{os.getpid()}"
            try:
                staging.mkdir()
            except OSError as exc:
                raise output_error(directory, exc) from exc
            try:
                yield Transaction(directory, staging)
            finally:
                if (directory / JOURNAL_NAME).exists():  # past the commit point: finish,
                    roll_forward(directory)  # even on Ctrl-C
                remove(staging)
        finally:
            _unmake(created)
