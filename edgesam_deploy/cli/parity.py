"""``edgesam-deploy parity``: the CI gate. Exit 0 all artifacts pass, 1 one fails, 2 bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import api
from ..fileio import check_outputs
from ..manifest import MANIFEST_NAME
from ..parity.report import print_table
from ..terminal import current
from .options import out_console, path_argument, path_option
from .progress import progress_reporter


def parity(
    directory: Path = path_argument(..., help="Export directory with manifest.json."),
    json_out: Optional[Path] = path_option(None, "--json", help="Write the results as JSON."),
    junit: Optional[Path] = path_option(
        None, "--junit", help="Write JUnit XML (one test case per artifact)."
    ),
    only: list[str] = typer.Option(
        [], "--file", help="Check only these artifact files (relative to DIR); repeatable."
    ),
    checkpoint: Optional[Path] = path_option(
        None,
        "--checkpoint",
        help="Reference weights, if not where the manifest says.",
        dir_okay=False,
    ),
) -> None:
    """Compare every artifact in DIR with the PyTorch fp32 reference against its precision's thresholds."""
    check_outputs(
        {"--json": json_out, "--junit": junit},
        inputs={f"DIR's {MANIFEST_NAME}": directory / MANIFEST_NAME},
    )
    with progress_reporter("parity") as report:
        result = api.parity(directory, files=only, checkpoint=checkpoint, progress=report)
    print_table(result.artifacts, out_console())
    if json_out:
        result.write_json(json_out)
    if junit:
        result.write_junit(junit)
    if result.failed:
        current().console.print(f"[red]parity FAILED: {', '.join(result.failed)}[/red]")
        raise typer.Exit(1)
