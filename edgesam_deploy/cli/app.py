"""Entry point: registers the commands and turns every failure into one line and an exit code."""
from __future__ import annotations

import sys

import typer

from .. import __version__
from ..errors import DeployError
from . import bench, devices, export, models, parity, segment

app = typer.Typer(
    name="edgesam-deploy",
    help="Export EdgeSAM to Core ML, ONNX and TFLite, verify parity with PyTorch, benchmark on devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _print_version(value: bool) -> None:
    """Eager ``--version``: print the package version and stop before any command runs."""
    if value:
        print(f"edgesam-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """EdgeSAM deployment toolchain."""


app.command("models")(models.models)
app.command("segment")(segment.segment)
app.command("export")(export.export)
app.command("parity")(parity.parity)
app.command("bench")(bench.bench)
app.command("devices")(devices.devices)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; exit codes: 0 ok, 1 check failed (parity), 2 bad input or environment, 130 interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rv = typer.main.get_command(app).main(args, prog_name="edgesam-deploy", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except SystemExit as exc:  # Typer's completion options and completion requests exit this way
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except (KeyboardInterrupt, typer.Abort):
        print("edgesam-deploy: interrupted", file=sys.stderr)
        code = 130
    except DeployError as exc:
        if debug:
            raise
        print(f"edgesam-deploy: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except Exception as exc:  # the last line of defence: never a traceback without --debug
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error of typer's vendored click
            exc.show()
            return _finish(exc.exit_code, argv)
        if debug:
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"edgesam-deploy: internal error: {exc.__class__.__name__}: {msg} (run with --debug for the traceback)", file=sys.stderr)
        code = 3
    return _finish(code, argv)


def _finish(code: int, argv: list[str] | None) -> int:
    if argv is None:
        sys.exit(code)
    return code
