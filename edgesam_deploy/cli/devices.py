"""``edgesam-deploy devices``: the device profiles, what each wants, and whether it is reachable."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..devices import load_profiles
from ..devices.reachability import reachability


def devices(
    profiles: Optional[Path] = typer.Option(None, "--profiles", help="TOML file with your own profiles (default: $EDGESAM_DEPLOY_PROFILES).", dir_okay=False),
    check: bool = typer.Option(True, "--check/--no-check", help="Try to reach each device (ssh, adb, Xcode)."),
) -> None:
    """List the benchmark device profiles and whether each device can be reached from here."""
    table = Table(title="Benchmark devices (edgesam-deploy bench --device NAME)")
    for col in ("device", "runner", "wants", "runtime", "connection", "reachable" if check else "description"):
        table.add_column(col)
    for p in load_profiles(profiles).values():
        runtime = " ".join(str(v) for v in (p.runtime, p.delegate or p.compute_units) if v)
        hints = ", ".join(f"{k}={v}" for k, v in p.connection.items())
        if check:
            ok, line = reachability(p)
            status = f"[green]yes[/green]: {line}" if ok else f"[red]no[/red]: {line}"
        else:
            status = p.description
        table.add_row(p.name + ("" if p.source == "packaged" else f" ({p.source})"), p.runner, p.wanted_label(), runtime, hints, status)
    Console().print(table)
