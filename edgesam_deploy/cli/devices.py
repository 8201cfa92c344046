"""``edgesam-deploy devices``: the device profiles, what each wants, and whether it is reachable."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..bench.reachability import reachability
from ..devices import PACKAGED, load_profiles
from .options import out_console, path_option


def devices(
    profiles: Optional[Path] = path_option(
        None,
        "--profiles",
        help="TOML file with your own profiles (default: $EDGESAM_DEPLOY_PROFILES).",
        dir_okay=False,
    ),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Try to reach each device (ssh, adb, Xcode)."
    ),
) -> None:
    """List the benchmark device profiles and whether each device can be reached from here."""
    console = out_console()
    table = Table(title="Benchmark devices (edgesam-deploy bench --device NAME)")
    table.add_column("device", no_wrap=True)
    for col in ("runner", "wants", "runtime") + (("reachable",) if check else ()):
        table.add_column(col)
    notes = []
    for p in load_profiles(profiles).values():
        runtime = " ".join(str(v) for v in (p.runtime, p.delegate or p.compute_units) if v)
        row = [
            p.name + ("" if p.source == PACKAGED else " (yours)"),
            p.runner,
            p.wanted_label(),
            runtime,
        ]
        if check:
            ok, line = reachability(p)
            row.append("[green]yes[/green]" if ok else "[red]no[/red]")
            notes.append(f"[bold]{p.name}[/bold]: {line}")
        table.add_row(*row)
    console.print(table)
    for note in notes:
        console.print(note)
