"""``export --min-iou`` refused in one line for every target whose int8 encoder the search
chooses, and the note when the chosen encoder ran slower than fp32 on the exporting host (the
searches themselves: test_quantize_scan, test_tflite_scan, test_executorch_scan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesam_deploy import api
from edgesam_deploy.cli.app import main
from edgesam_deploy.manifest import ArtifactRecord, Manifest
from edgesam_deploy.quantization.mixed import speed_record

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


def test_speed_record():
    """The speed-up over fp32 in the search's own run; a note only where int8 ran slower."""
    slower = speed_record({"fp32": 253.0, "23 float": 302.1, "0 float": 135.1}, "23 float")
    assert slower["speedup_vs_fp32"] == 0.837 and slower["timed_on"] == "exporting host"
    assert slower["slower_than_fp32"].startswith(
        "the chosen int8 encoder ran 0.84x as fast as fp32 on the exporting host (302 vs 253 ms"
    )
    faster = speed_record({"fp32": 253.0, "searched": 135.1}, "searched")
    assert faster == {"speedup_vs_fp32": 1.873, "timed_on": "exporting host"}


@pytest.mark.parametrize("ms", [302.1, 135.1])
def test_export_notes_an_encoder_slower_than_fp32(ms, monkeypatch, tmp_path: Path, capsys):
    """``export`` ends with one note per artifact whose search chose an encoder slower than fp32
    here; none where it was faster."""
    record = ArtifactRecord(
        "encoder.int8.onnx",
        "onnx",
        "encoder",
        "int8-static",
        [],
        [],
        1,
        "0" * 64,
        {"mixed_precision": speed_record({"fp32": 253.0, "searched": ms}, "searched")},
    )

    def fake_export(out, target, **kwargs):
        return api.ExportResult(Path(out), Manifest(model={}, artifacts=[record]), None)

    monkeypatch.setattr(api, "export", fake_export)
    code = main(["export", "--target", "onnx", "--out", str(tmp_path), "--no-parity"])
    err = capsys.readouterr().err
    assert code == 0, err
    note = "note: encoder.int8.onnx: the chosen int8 encoder ran 0.84x as fast as fp32"
    assert (note in " ".join(err.split())) == (ms > 253.0), err
