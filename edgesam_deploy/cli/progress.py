"""Our progress on stderr: one live line in a terminal, one plain line per step elsewhere.

``progress_reporter`` yields a ``vocabulary.Progress`` that commands pass down as ``progress``.
In a terminal it draws one rich line: the step, a bar with count and ETA when the step's amount
of work is known, the elapsed time. In a pipe or CI log (or with ``--debug``) each step is one
plain line with its time and count. ``--quiet`` draws nothing; ``--verbose`` prints the output
other libraries wrote during each step (captured by ``terminal.session``) above the display.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..terminal import Level, Terminal, current


class _CountColumn(ProgressColumn):
    """``done/total`` and the time left, only while the step's amount of work is known."""

    _eta = TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        eta = self._eta.render(task)
        return Text.assemble(f"{int(task.completed)}/{int(task.total)} eta ", eta)


@dataclass
class _Reporter:
    """Implements ``vocabulary.Progress`` on ``terminal``: ``bar`` is None in plain mode."""

    title: str
    terminal: Terminal
    bar: Progress | None = None
    task: TaskID | None = None
    start: float = field(default_factory=time.perf_counter)
    done: int = 0
    total: int | None = None

    def __call__(self, msg: str) -> None:
        self._show(msg)

    def step(self, msg: str, total: int | None = None) -> None:
        self.done, self.total = 0, total
        self._show(msg)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=self.done)

    def _show(self, msg: str) -> None:
        """Captured output of the step that ended (with ``--verbose``), then the new step."""
        if self.terminal.level == Level.QUIET:
            return
        if self.bar is None:
            self.terminal.show_captured()
            count = f" ({self.done}/{self.total})" if self.total else ""
            elapsed = time.perf_counter() - self.start
            self.terminal.console.print(
                f"{elapsed:7.1f}s {msg}{count}", markup=False, highlight=False
            )
            return
        if self.terminal.level >= Level.VERBOSE:
            self.terminal.show_captured(self.bar.console)
            self.bar.console.print(msg, style="bold", markup=False, highlight=False)
        if self.task is not None:
            self.bar.update(
                self.task,
                description=msg,
                completed=self.done,
                total=self.total,
            )


@contextmanager
def progress_reporter(title: str) -> Iterator[_Reporter]:
    """Yield the ``Progress`` of one command on the current terminal (see the module doc)."""
    terminal = current()
    reporter = _Reporter(title, terminal)
    if terminal.level == Level.QUIET or not terminal.interactive:
        yield reporter
        if terminal.level > Level.QUIET:
            terminal.show_captured()
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        _CountColumn(),
        TimeElapsedColumn(),
        console=terminal.console,
        transient=True,
    ) as bar:
        reporter.bar, reporter.task = bar, bar.add_task(title, total=None)
        yield reporter
        terminal.show_captured(bar.console)
