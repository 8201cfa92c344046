"""Output locations as an adversarial user gives them: directories full of data, named pipes,
devices, /proc, two outputs on one path, empty paths. Each is refused in one line with exit 2
before any work, and nothing that was there is lost; ``atomic_output`` keeps the same rule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_reliability_inputs import one_line

from edgesam_deploy.cli.app import main
from edgesam_deploy.errors import OutputError
from edgesam_deploy.fileio import atomic_output, write_json

PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self").is_dir(), reason="no /proc here")


@pytest.fixture
def full_dir(tmp_path) -> Path:
    """A directory holding data that must survive."""
    path = tmp_path / "full"
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "data.txt").write_text("keep me")
    return path


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(path)
    return path


def survives(full_dir: Path) -> bool:
    return (full_dir / "sub" / "data.txt").read_text() == "keep me"


def no_partials(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if ".partial-" in p.name or ".previous-" in p.name]


# ---------------------------------------------------------------- atomic_output's own rule


def test_a_file_never_replaces_a_directory(full_dir):
    with pytest.raises(OutputError, match="is a directory"):
        write_json(full_dir, {"a": 1})
    assert survives(full_dir) and no_partials(full_dir.parent)


def test_a_directory_never_replaces_a_file(tmp_path):
    path = tmp_path / "artifact.mlpackage"
    path.write_text("previous")
    with pytest.raises(OutputError, match="not a directory"), atomic_output(path) as tmp:
        (tmp / "inner").mkdir(parents=True)
    assert path.read_text() == "previous" and no_partials(tmp_path)


def test_a_directory_replaces_its_previous_version(tmp_path):
    path = tmp_path / "artifact.mlpackage"
    for version in ("one", "two"):
        with atomic_output(path) as tmp:
            tmp.mkdir()
            (tmp / version).write_text(version)
    assert [p.name for p in path.iterdir()] == ["two"] and no_partials(tmp_path)


def test_special_files_are_refused_before_the_block(fifo):
    ran = []
    with pytest.raises(OutputError, match="named pipe"), atomic_output(fifo) as tmp:
        ran.append(tmp)
    assert not ran and fifo.is_fifo() and no_partials(fifo.parent)


def test_a_symlink_is_written_through(tmp_path):
    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json(link, {"new": True})
    assert link.is_symlink() and '"new": true' in target.read_text() and no_partials(tmp_path)


@pytest.mark.parametrize("device", ["fifo", "/dev/full"])
def test_a_symlink_to_a_special_file_is_refused(tmp_path, fifo, device):
    target = fifo if device == "fifo" else Path(device)
    if not target.exists():
        pytest.skip(f"no {device} here")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    with pytest.raises(OutputError, match="not a regular file"):
        write_json(link, {})
    assert link.is_symlink() and os.readlink(link) == str(target)


@needs_proc
def test_a_location_without_files_is_an_output_error():
    with pytest.raises(OutputError, match="cannot write there"):
        write_json(PROC / "edgesam-deploy-test.json", {})


# ---------------------------------------------------------------- the CLI, before any work


def test_parity_outputs(tmp_path, full_dir, fifo, monkeypatch, capsys):
    """DIR does not even exist: the output's line comes first, so nothing was read."""
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "no-export"
    cases = [
        (["--json", str(full_dir)], f"--json: {full_dir}: is a directory"),
        (["--json", str(fifo)], "is a named pipe, not a regular file"),
        (["--json", "o.json", "--junit", "./o.json"], "--json and --junit are one path"),
        (["--json", str(export / "manifest.json")], "DIR's manifest.json and --json"),
    ]
    if (PROC / "self").is_dir():
        cases += [
            (["--json", "/proc/p.json"], "--json: /proc: cannot write there"),
            (["--junit", "/proc/p.xml"], "--junit: /proc: cannot write there"),
        ]
    for argv, expect in cases:
        assert main(["parity", str(export), *argv]) == 2, argv
        assert expect in one_line(capsys), argv
    assert survives(full_dir) and fifo.is_fifo() and not (tmp_path / "o.json").exists()


def test_bench_outputs(tmp_path, full_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    export = tmp_path / "no-export"
    full_dir.rename(tmp_path / "r-latency.png")  # the plot beside --report r.md
    cases = [
        (["--report", str(tmp_path / "r.md")], "--report's plot: "),
        (["--json", "b.json", "--report", "b.json"], "--json and --report are one path"),
    ]
    if (PROC / "self").is_dir():
        cases += [
            (["--json", "/proc/sweep.json"], "--json: /proc: cannot write there"),
            (["--report", "/proc/r.md"], "--report: /proc: cannot write there"),
        ]
    for argv, expect in cases:
        assert main(["bench", "--device", "host", "--artifacts", str(export), *argv]) == 2, argv
        assert expect in one_line(capsys), argv
    assert survives(tmp_path / "r-latency.png")
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "b.json").exists()


def test_quantize_scan_out(tmp_path, full_dir, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    full_dir.rename(tmp_path / "scan.json")  # --out tmp_path would replace it by the scan's JSON
    cases = [
        (a_file, f"--out: {a_file}: exists and is not a directory"),
        (tmp_path, "--out's scan.json: "),
    ]
    if (PROC / "self").is_dir():
        cases.append((PROC / "qs", "--out: /proc/qs: cannot write there"))
    for out, expect in cases:
        assert main(["quantize-scan", "--random-weights", "0", "--out", str(out)]) == 2, out
        assert expect in one_line(capsys), out  # one line: the model was not even loaded
    assert a_file.read_text() == "x" and survives(tmp_path / "scan.json")


def test_segment_outputs(photo, tmp_path, fifo, capsys):
    before = photo.read_bytes()
    links = []
    for device in [fifo, Path("/dev/full")]:
        if device.exists():
            links.append(tmp_path / f"link-{device.name}.npy")
            links[-1].symlink_to(device)
    o = str(tmp_path / "o.png")
    cases = [
        (["--out", o, "--mask-out", o], "--out and --mask-out are one path"),
        (["--out", str(photo)], "IMAGE and --out are one path"),
        (["--out", o, "--logits-out", str(fifo)], "--logits-out: "),
    ] + [(["--out", o, "--logits-out", str(link)], "not a regular file") for link in links]
    for argv, expect in cases:
        argv = ["segment", str(photo), "--point", "1,1", "--random-weights", "0", *argv]
        assert main(argv) == 2, argv
        assert expect in one_line(capsys), argv
    assert photo.read_bytes() == before and fifo.is_fifo() and not Path(o).exists()
    assert all(link.is_symlink() for link in links)


def test_export_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "e"
    export = ["export", "--target", "onnx", "--random-weights", "0", "--out", str(out)]
    cases = [
        (["--json", "j.json", "--junit", "j.json"], "--json and --junit are one path"),
        (["--json", str(out / "manifest.json")], "--json and --out's manifest.json"),
        (["--junit", str(out)], "--out and --junit are one path"),
    ]
    for argv, expect in cases:
        assert main([*export, *argv]) == 2, argv
        assert expect in one_line(capsys), argv
    assert not list(tmp_path.iterdir())


SEEDED = ["--random-weights", "0"]  # never a download, should a path get past the check
EMPTY = [
    ["export", *SEEDED, "--target", "onnx", "--out", ""],
    ["export", *SEEDED, "--target", "onnx", "--out", "e", "--json", ""],
    ["export", *SEEDED, "--target", "onnx", "--out", "e", "--junit", ""],
    ["export", *SEEDED, "--target", "onnx", "--out", "e", "--checkpoint", ""],
    ["export", *SEEDED, "--target", "onnx", "--out", "e", "--calibration-dir", ""],
    ["parity", ""],
    ["parity", "d", "--json", ""],
    ["parity", "d", "--junit", ""],
    ["parity", "d", "--checkpoint", ""],
    ["bench", *SEEDED, "--artifacts", ""],
    ["bench", *SEEDED, "--artifacts", "d", "--json", ""],
    ["bench", *SEEDED, "--artifacts", "d", "--report", ""],
    ["bench", *SEEDED, "--artifacts", "d", "--profiles", ""],
    ["bench", *SEEDED, "--artifacts", "d", "--benchmark-model", ""],
    ["bench", *SEEDED, "--artifacts", "d", "--ssh-config", ""],
    ["bench", *SEEDED, "--artifacts", "d", "--checkpoint", ""],
    ["quantize-scan", *SEEDED, "--out", ""],
    ["quantize-scan", *SEEDED, "--out", "q", "--calibration-dir", ""],
    ["quantize-scan", *SEEDED, "--out", "q", "--checkpoint", ""],
    ["segment", *SEEDED, "", "--point", "1,1", "--out", "o.png"],
    ["segment", *SEEDED, "p.png", "--point", "1,1", "--out", ""],
    ["segment", *SEEDED, "p.png", "--point", "1,1", "--out", "o.png", "--mask-out", ""],
    ["segment", *SEEDED, "p.png", "--point", "1,1", "--out", "o.png", "--logits-out", ""],
    ["segment", *SEEDED, "p.png", "--point", "1,1", "--out", "o.png", "--mask-input", ""],
]


@pytest.mark.parametrize("argv", EMPTY, ids=[" ".join(a) for a in EMPTY])
def test_an_empty_path_is_refused(argv, tmp_path, monkeypatch, capsys):
    """``''`` would mean the current directory (export wrote its manifest there)."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "an empty path" in one_line(capsys)
    assert not list(tmp_path.iterdir())
