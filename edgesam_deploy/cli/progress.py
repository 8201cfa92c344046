"""A rich status line that commands pass down as a ``progress(message)`` callback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def progress_reporter(
    title: str, console: Console | None = None
) -> Iterator[Callable[[str], None]]:
    """Yield ``report(msg)``: shows msg on a live spinner line and logs each step with its time."""
    console = console or Console(stderr=True)
    start = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(title)

        def report(msg: str) -> None:
            bar.update(task, description=f"{title}: {msg}")
            bar.console.log(f"[dim]{time.perf_counter() - start:7.1f}s[/dim] {msg}")

        yield report
