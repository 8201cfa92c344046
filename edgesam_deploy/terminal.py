"""Quiet by default: other libraries' output is captured while a command runs, ours is not.

Converters and runtimes write to the terminal in four ways: Python warnings, logging records,
tqdm bars (all through ``sys.stderr``) and C++ logs (absl, glog, TFLite) written straight to file
descriptor 2. A ``session`` points both ``sys.stderr`` and descriptor 2 at one temporary file and
gives our own lines a private handle on the real stderr, so the capture needs no knowledge of any
library. ``--verbose`` shows the captured text after each step, ``--debug`` captures nothing (the
raw stream, as it happens), ``--quiet`` hides our progress and notes too (tables and errors stay).
"""

from __future__ import annotations

import codecs
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TextIO

from rich.console import Console

ERROR_PREFIX = "edgesam-deploy: error: "
INTERRUPTED_LINE = "edgesam-deploy: interrupted"


class Level(IntEnum):
    """How much reaches the terminal; each level shows what the one below shows, and more."""

    QUIET = 0  # result tables and errors
    NORMAL = 1  # plus our progress and notes
    VERBOSE = 2  # plus the captured output of other libraries, after each step
    DEBUG = 3  # nothing captured (raw, as it happens), plus tracebacks

    @classmethod
    def from_args(cls, args: list[str]) -> Level:
        """The level the root options in ``args`` ask for (the most talkative one wins)."""
        for flag, level in (("--debug", cls.DEBUG), ("--verbose", cls.VERBOSE)):
            if flag in args:
                return level
        return cls.QUIET if "--quiet" in args else cls.NORMAL


@dataclass
class Terminal:
    """Our side of stderr during a command: ``console`` is the real terminal, whatever other
    libraries' output is captured into ``_capture``."""

    level: Level
    stream: TextIO
    _capture: int | None = None  # descriptor of the capture file; None: nothing captured
    _read: int = 0  # bytes of the capture already handed out by ``drain``
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    _console: Console | None = None

    @property
    def console(self) -> Console:
        """Rich console on the real stderr; plain text (no ANSI, no wrapping) in pipes and logs."""
        if self._console is None:
            self._console = Console(file=self.stream, soft_wrap=True)
        return self._console

    @property
    def interactive(self) -> bool:
        """Whether live displays (bars, spinners) may be drawn: a terminal, not a pipe or CI log."""
        return self.console.is_terminal and self.level < Level.DEBUG

    def note(self, *objects: Any, **kwargs: Any) -> None:
        """A side line of ours (which weights, which file was written); hidden by ``--quiet``."""
        if self.level > Level.QUIET:
            self.console.print(*objects, **kwargs)

    def error(self, message: str) -> None:
        """The one line every failure ends with, at every level."""
        self.show_captured()
        print(f"{ERROR_PREFIX}{' '.join(message.split())}", file=self.stream, flush=True)

    def drain(self) -> str:
        """Captured text not handed out yet, each carriage-return-redrawn line (tqdm) in its
        final state."""
        if self._capture is None:
            return ""
        sys.stderr.flush()
        chunks = []
        while chunk := os.pread(self._capture, 1 << 16, self._read):
            chunks.append(chunk)
            self._read += len(chunk)
        text = self._decoder.decode(b"".join(chunks))
        lines = (line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n"))
        return "\n".join(line for line in lines if line)

    def show_captured(self, console: Console | None = None) -> None:
        """With ``--verbose``: print what other libraries wrote since the last call (dimmed)."""
        text = self.drain()
        if text and self.level >= Level.VERBOSE:
            (console or self.console).print(text, style="dim", markup=False, highlight=False)


_ACTIVE: list[Terminal] = []


def current() -> Terminal:
    """The running session's terminal; outside one, a plain pass-through to ``sys.stderr``."""
    return _ACTIVE[-1] if _ACTIVE else Terminal(Level.NORMAL, sys.stderr)


@contextmanager
def session(level: Level) -> Iterator[Terminal]:
    """Capture other libraries' output (below ``DEBUG``) until the block ends; a session already
    running (the console script starts one before the heavy imports) is reused."""
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    if level >= Level.DEBUG:
        _ACTIVE.append(Terminal(level, sys.stderr))
        try:
            yield _ACTIVE[-1]
        finally:
            _ACTIVE.pop()
        return
    with _captured_stderr() as (ours, capture):
        _ACTIVE.append(Terminal(level, ours, capture))
        try:
            with warnings.catch_warnings():  # filters changed by libraries end with the session
                yield _ACTIVE[-1]
        finally:
            _ACTIVE.pop().show_captured()


@contextmanager
def _captured_stderr() -> Iterator[tuple[TextIO, int]]:
    """Point descriptor 2 and ``sys.stderr`` at a temporary file; yield a stream on the former
    stderr (the same object when it is not descriptor 2, e.g. under pytest's ``capsys``) and the
    file's descriptor."""
    original = sys.stderr
    original.flush()
    saved = os.dup(2)
    on_fd2 = _fileno(original) == 2
    ours = _text(os.dup(saved), original) if on_fd2 else original
    with tempfile.TemporaryFile(prefix="edgesam-deploy-stderr-", buffering=0) as capture:
        os.dup2(capture.fileno(), 2)
        sys.stderr = _text(os.dup(capture.fileno()), original)
        try:
            yield ours, capture.fileno()
        finally:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = original
            os.dup2(saved, 2)
            os.close(saved)
            if ours is not original:
                ours.close()


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def _text(fd: int, like: TextIO) -> TextIO:
    """A line-buffered text stream on ``fd`` with ``like``'s encoding."""
    return io.TextIOWrapper(
        io.FileIO(fd, "w"),
        encoding=getattr(like, "encoding", None) or "utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )


__all__ = ["ERROR_PREFIX", "INTERRUPTED_LINE", "Level", "Terminal", "current", "session"]
