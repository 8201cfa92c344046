"""``export --min-iou`` refused in one line for every target whose int8 encoder the search
chooses (the searches themselves: test_quantize_scan, test_tflite_scan, test_executorch_scan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesam_deploy.cli.app import main

SEARCHED = {"onnx": "int8-static", "tflite": "int8-full", "executorch": "int8-static"}


@pytest.mark.parametrize("target", SEARCHED)
@pytest.mark.parametrize("wrong", ["precision", "min-iou"])
def test_export_bad_search_input_is_one_line(target, wrong, tmp_path: Path, capsys):
    """A --min-iou without the searched precision, or out of (0, 1]: one line, exit 2."""
    int8 = SEARCHED[target]
    args, message = {
        "precision": (["--precision", "fp32", "--min-iou", "0.9"], f"{int8}: request it"),
        "min-iou": (["--precision", int8, "--min-iou", "1.5"], "must be in (0, 1]"),
    }[wrong]
    argv = ["export", "--target", target, *args, "--out", str(tmp_path / "o")]
    assert main([*argv, "--random-weights", "0", "--no-parity"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
    errors = [line for line in err if "error" in line]
    assert errors == [err[-1]] and message in err[-1] and "Traceback" not in "".join(err)
