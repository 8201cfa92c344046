"""``edgesam-deploy parity``: the CI gate. Exit 0 all artifacts pass, 1 one fails, 2 bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..checkpoints import load_model_for_source
from ..errors import DeployError
from ..exportdir import settle
from ..manifest import Manifest
from ..parity import check_directory, reference_description
from ..parity.report import print_table, write_json_report, write_junit
from ..terminal import current
from .options import err_console, out_console
from .progress import progress_reporter


def parity(
    directory: Path = typer.Argument(..., help="Export directory with manifest.json."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
    junit: Optional[Path] = typer.Option(
        None, "--junit", help="Write JUnit XML (one test case per artifact)."
    ),
    only: list[str] = typer.Option(
        [], "--file", help="Check only these artifact files (relative to DIR); repeatable."
    ),
    checkpoint: Optional[Path] = typer.Option(
        None,
        "--checkpoint",
        help="Reference weights, if not where the manifest says.",
        dir_okay=False,
    ),
) -> None:
    """Compare every artifact in DIR with the PyTorch fp32 reference against its precision's thresholds."""
    if not directory.is_dir():
        raise DeployError(f"{directory}: not a directory")
    settle(directory)
    manifest = Manifest.load(directory)
    if not manifest.artifacts:
        raise DeployError(f"{directory}: the manifest lists no artifacts")
    known = {a.file for a in manifest.artifacts}
    missing = [f for f in only if f not in known]
    if missing:
        raise DeployError(f"not in the manifest: {', '.join(missing)}")
    model, source = load_model_for_source(manifest.model, checkpoint)
    err_console.print(f"[dim]reference: {source.label}[/dim]")
    with progress_reporter("parity") as report:
        results = check_directory(directory, model, files=only or None, progress=report)
    print_table(results, out_console())
    if json_out:
        write_json_report(json_out, results, reference_description())
    if junit:
        write_junit(junit, results)
    failed = [r.file for r in results if not r.passed]
    if failed:
        current().console.print(f"[red]parity FAILED: {', '.join(failed)}[/red]")
        raise typer.Exit(1)
