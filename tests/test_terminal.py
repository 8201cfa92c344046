"""What reaches the terminal: our progress and errors, never other libraries' output unless asked.

The CLI runs for real in a subprocess (stderr a pipe: the plain, line-based format); the capture
and the live display are also checked in-process on small inputs.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console
from test_reliability_inputs import cli

from edgesam_deploy.cli.progress import progress_reporter
from edgesam_deploy.terminal import ERROR_PREFIX, Level, Terminal, session
from edgesam_deploy.vocabulary import counting

# lines other libraries write during an export on Linux (coremltools, absl/TF, torch, tqdm, logging)
FOREIGN = re.compile(r"Failed to load|WARNING|I0000|it/s|%\||Warning|\bW\d{4} ")
STEP_LINE = re.compile(r"^ *\d+\.\ds \S")  # the plain format: seconds since start, the step
CHEAP = ("--random-weights", "0", "--num-points", "2", "--max-points", "2")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def export_all(tmp_path_factory: pytest.TempPathFactory):
    """``export --target all`` (every converter, fp32 only) with stderr a pipe."""
    out = tmp_path_factory.mktemp("terminal") / "export"
    run = cli("export", "--target", "all", "--out", str(out), "--precision", "fp32", "--no-parity",
              *CHEAP)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def empty_calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calibration folder whose one image is not readable: found before the model loads, read
    (and refused) only inside the conversion step."""
    folder = tmp_path_factory.mktemp("no-images")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def _failing_tflite(*root: str, out: Path, calibration: Path):
    """A TFLite int8-full export that converts the encoder (absl and TFLite log to descriptor 2)
    and then fails inside the step: the calibration folder's image is not readable."""
    return cli(*root, "export", "--target", "tflite", "--out", str(out), "--precision",
               "int8-full", "--calibration-dir", str(calibration), *CHEAP)  # fmt: skip


def test_export_of_every_target_shows_no_other_library_output(export_all):
    foreign = [line for line in _lines(export_all.stderr) if FOREIGN.search(line)]
    assert not foreign, foreign
    assert "wrote 8 artifact(s)" in export_all.stdout


def test_output_to_a_pipe_is_one_plain_line_per_step(export_all):
    lines = _lines(export_all.stderr)
    assert lines[0].startswith("model: edgesam with RANDOM weights")
    steps = lines[1:]
    assert all(STEP_LINE.match(line) for line in steps), steps
    assert "\x1b" not in export_all.stderr and "\r" not in export_all.stderr  # no ANSI, no redraws
    assert "progress.py" not in export_all.stderr
    assert "exporting 8 artifact(s): onnx, tflite, coreml, executorch (0/8)" in steps[0]
    for target in ("onnx", "tflite", "coreml", "executorch"):
        assert any(f" {target}: " in line for line in steps), target
    assert steps[-1].endswith("(7/8)")  # the last conversion starts after seven are done


def test_error_inside_a_captured_step_is_one_line(tmp_path, empty_calibration):
    run = _failing_tflite(out=tmp_path / "x", calibration=empty_calibration)
    assert run.returncode == 2, run.stderr
    lines = _lines(run.stderr)
    assert lines[-1].startswith(ERROR_PREFIX) and "not a readable image" in lines[-1], lines
    assert [line for line in lines if line.startswith(ERROR_PREFIX)] == lines[-1:]
    assert not [line for line in lines if FOREIGN.search(line)], lines
    assert "Traceback" not in run.stderr


def test_verbose_shows_what_the_failing_step_captured(tmp_path, empty_calibration):
    run = _failing_tflite("--verbose", out=tmp_path / "x", calibration=empty_calibration)
    assert run.returncode == 2, run.stderr
    lines = _lines(run.stderr)
    assert lines[-1].startswith(ERROR_PREFIX) and "not a readable image" in lines[-1], lines
    # what the conversion wrote to descriptor 2 or as warnings (absl I0000, torch's pytree
    # FutureWarning: which of them a run writes varies) shows between the step and the error
    step = max(i for i, line in enumerate(lines) if "converting the encoder" in line)
    assert any(FOREIGN.search(line) for line in lines[step + 1 : -1]), lines
    assert "Traceback" not in run.stderr


def test_quiet_prints_only_errors(tmp_path, empty_calibration):
    run = _failing_tflite("--quiet", out=tmp_path / "x", calibration=empty_calibration)
    assert run.returncode == 2
    assert _lines(run.stderr) == [_lines(run.stderr)[-1]]
    assert run.stderr.startswith(ERROR_PREFIX)


def test_quiet_prints_only_the_result(tmp_path):
    run = cli("--quiet", "export", "--target", "onnx", "--out", str(tmp_path / "x"),
              "--precision", "fp32", "--no-parity", *CHEAP)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert _lines(run.stdout) == [f"wrote 2 artifact(s) and {tmp_path / 'x' / 'manifest.json'}"]


def test_session_captures_descriptor_2_and_sys_stderr(capfd):
    with session(Level.NORMAL) as terminal:
        os.write(2, b"I0000 raw C++ log\n")
        print("tqdm-like 10%\rtqdm-like 100%", file=sys.stderr)
        terminal.note("model: ours")
        captured = terminal.drain()
    os.write(2, b"after the session\n")
    assert capfd.readouterr().err == "model: ours\nafter the session\n"
    assert "I0000 raw C++ log" in captured
    assert "tqdm-like 100%" in captured and "tqdm-like 10%" not in captured  # final state only


def test_terminal_display_is_one_line_with_count_and_no_log_column(monkeypatch):
    buffer = io.StringIO()
    terminal = Terminal(Level.NORMAL, buffer)
    terminal._console = Console(file=buffer, force_terminal=True, width=120)
    monkeypatch.setattr("edgesam_deploy.cli.progress.current", lambda: terminal)
    with progress_reporter("export") as report:
        report.step("exporting 8 artifact(s)", total=8)
        report.advance(3)
        report("onnx: decoder fp32")
        report.bar.refresh()
        shown = buffer.getvalue()
    assert "onnx: decoder fp32" in shown and "3/8" in shown
    assert "progress.py" not in shown and "exporting 8 artifact(s)\n" not in shown


def test_plain_callables_still_work_as_progress():
    seen: list[str] = []
    steps = counting(seen.append)
    steps.step("a", total=3)
    steps.advance()
    steps("b")
    assert seen == ["a", "b"]
