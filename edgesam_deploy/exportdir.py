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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError
from .fileio import (
    check_output_dir,
    output_error,
    pid_alive,
    remove,
    remove_stale_partials,
    write_json,
)
from .manifest import MANIFEST_NAME, Manifest
from .manifest_schema import inside
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


def _journal_moves(directory: Path, journal: dict) -> list[str]:
    """The relative paths a journal moves, each checked to stay inside ``directory``."""
    moves = journal.get("files") if isinstance(journal, dict) else None
    if not isinstance(moves, list) or not all(isinstance(f, str) for f in moves):
        raise DeployError(
            f"{directory / JOURNAL_NAME}: damaged commit journal; remove it and export again"
        )
    for rel in moves:
        inside(directory, rel, str(directory / JOURNAL_NAME))
    return moves


def _apply(directory: Path, staging: Path, moves: list[str]) -> None:
    """Move ``moves`` then the manifest from ``staging`` into ``directory`` (idempotent)."""
    for i, rel in enumerate(moves):
        src, dst = staging / rel, directory / rel
        if src.exists() or src.is_symlink():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir() and not dst.is_symlink():
                remove(dst)  # a directory artifact (.mlpackage) cannot be replaced in one rename
            os.replace(src, dst)
        if i == 0:
            hook("moved")
    if (staging / MANIFEST_NAME).exists():
        os.replace(staging / MANIFEST_NAME, directory / MANIFEST_NAME)


def roll_forward(directory: Path) -> bool:
    """Finish a commit that a killed export left (its journal is present); True if there was one."""
    journal_path = Path(directory) / JOURNAL_NAME
    if not journal_path.exists():
        return False
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(
            f"{journal_path}: damaged commit journal; remove it and export again"
        ) from exc
    moves = _journal_moves(Path(directory), journal)
    staging = Path(directory) / str(journal.get("staging", ""))
    if not staging.name.startswith(STAGING_PREFIX) or staging.parent != Path(directory):
        raise DeployError(f"{journal_path}: damaged commit journal; remove it and export again")
    _apply(Path(directory), staging, moves)
    remove(staging)
    journal_path.unlink()
    return True


def settle(directory: Path) -> None:
    """Before reading an export directory: finish an interrupted commit if one is pending."""
    if (Path(directory) / JOURNAL_NAME).exists():
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
        whole directory afterwards. The journal write is the commit point."""
        manifest.save(self.staging)
        write_json(
            self.directory / JOURNAL_NAME, {"staging": self.staging.name, "files": list(files)}
        )
        hook("commit")
        roll_forward(self.directory)


@contextmanager
def export_transaction(directory: Path) -> Iterator[Transaction]:
    """Lock ``directory``, finish or clean what earlier exports left, and yield a Transaction; an
    exception or signal before ``commit`` leaves the directory as it was."""
    directory = check_output_dir(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(directory, exc) from exc
    with locked(directory):
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
            if (directory / JOURNAL_NAME).exists():  # past the commit point: finish, even on Ctrl-C
                roll_forward(directory)
            remove(staging)
