"""Entry point: registers the commands and turns every failure into one line and an exit code."""

from __future__ import annotations

import sys
import traceback

import typer

from .. import __version__
from ..errors import DeployError, first_line
from ..terminal import INTERRUPTED_LINE, Level, current, session
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
    debug: bool = typer.Option(
        False, "--debug", help="Show everything as it is written, and tracebacks on errors."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show what other libraries print, after each step."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", help="Only result tables and errors: no progress, no notes."
    ),
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
    3 internal error, 130 interrupted. ``--debug`` adds the traceback, never changes the code.
    Other libraries' output is captured meanwhile (``terminal.session``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    with session(Level.from_args(args)) as terminal:
        code = _run(args, terminal.level == Level.DEBUG)
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
    except (KeyboardInterrupt, typer.Abort) as exc:
        if isinstance(exc.__cause__, EOFError):  # click turns an EOFError into an Abort
            return _internal(exc.__cause__, debug)
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
        return _internal(exc, debug)
    if code == INTERRUPTED:  # typer turns Ctrl-C into this exit code without a word
        print(INTERRUPTED_LINE, file=current().stream)
    return code


def _internal(exc: BaseException, debug: bool) -> int:
    """An unexpected exception: one line naming it, exit code 3."""
    return _fail(
        f"internal error: {exc.__class__.__name__}: {first_line(exc, 300)} "
        "(run with --debug for the traceback)",
        3,
        debug,
    )


def _fail(message: str, code: int, debug: bool) -> int:
    """One line on stderr (after the traceback with --debug); returns ``code``."""
    if debug:
        traceback.print_exc()
    current().error(message)
    return code


def _finish(code: int, argv: list[str] | None) -> int:
    if argv is None:
        sys.exit(code)
    return code
