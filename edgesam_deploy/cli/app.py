"""Entry point: registers the commands and turns every failure into one line and an exit code."""

from __future__ import annotations

import sys
import traceback
import warnings

import typer

from .. import __version__
from ..errors import DeployError, first_line
from . import bench, devices, export, models, parity, quantize_scan, segment

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
app.command("quantize-scan")(quantize_scan.quantize_scan)

INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; exit codes: 0 ok, 1 check failed (parity), 2 bad input or environment,
    3 internal error, 130 interrupted. ``--debug`` adds the traceback, never changes the code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    with warnings.catch_warnings():
        if not debug:  # third-party warnings (torch, PIL) would break the one-line contract
            warnings.simplefilter("ignore")
        code = _run(args, debug)
    return _finish(code, argv)


def _run(args: list[str], debug: bool) -> int:
    """The command's exit code; every failure is reported by ``_fail``."""
    try:
        command = typer.main.get_command(app)
        rv = command.main(args, prog_name="edgesam-deploy", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except SystemExit as exc:  # Typer's completion options and completion requests exit this way
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    except DeployError as exc:
        return _fail(str(exc), exc.exit_code, debug)
    except Exception as exc:  # the last line of defence: never a traceback without --debug
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer's vendored click: show the help
            exc.show()  # type: ignore[attr-defined]
            return 0
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a click usage error
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            return _fail(exc.format_message() + hint, exc.exit_code, debug)
        return _fail(
            f"internal error: {exc.__class__.__name__}: {first_line(exc, 300)} "
            "(run with --debug for the traceback)",
            3,
            debug,
        )
    if code == INTERRUPTED:  # typer turns Ctrl-C into this exit code without a word
        print("edgesam-deploy: interrupted", file=sys.stderr)
    return code


def _fail(message: str, code: int, debug: bool) -> int:
    """One line on stderr (after the traceback with --debug); returns ``code``."""
    if debug:
        traceback.print_exc()
    print(f"edgesam-deploy: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _finish(code: int, argv: list[str] | None) -> int:
    if argv is None:
        sys.exit(code)
    return code
