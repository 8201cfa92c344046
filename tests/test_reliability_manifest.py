"""Manifests are untrusted input: every path stays inside the export directory, every field is
typed, and anything else is one line and exit 2 (parity and bench, before any model is loaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgesam_deploy.cli.app import main
from edgesam_deploy.manifest import Manifest, ManifestError
from edgesam_deploy.manifest_schema import MAX_SEED

SHA = "0" * 64


def _record(file: str, **over) -> dict:
    return {
        "file": file,
        "target": "onnx",
        "role": "decoder",
        "precision": "fp32",
        "inputs": [],
        "outputs": [],
        "size_bytes": 3,
        "sha256": SHA,
        "details": {},
        **over,
    }


def _manifest(artifacts: list, **over) -> dict:
    model = {"variant": "edgesam", "kind": "random", "path": None, "sha256": None, "seed": 0}
    return {"model": model, "artifacts": artifacts, "schema_version": 1, **over}


def _write(directory: Path, data) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps(data))
    return directory


@pytest.fixture
def victim(tmp_path) -> Path:
    """Another export directory beside the one under test, with a real file to be lured into."""
    other = tmp_path / "other" / "onnx"
    other.mkdir(parents=True)
    (other / "decoder.fp32.onnx").write_bytes(b"abc")
    return tmp_path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


ESCAPES = [
    "../other/onnx/decoder.fp32.onnx",
    "../../other/onnx/decoder.fp32.onnx",
    "onnx/../../other/onnx/decoder.fp32.onnx",
    "/etc/passwd",
    "//etc/passwd",
    "./onnx/decoder.fp32.onnx",
    "onnx//decoder.fp32.onnx",
    "onnx/",
    "..",
    "",
    "..\\other\\onnx\\decoder.fp32.onnx",
    "C:/Windows/win.ini",
    "onnx/\0decoder.fp32.onnx",
]


@pytest.mark.parametrize("file", ESCAPES)
def test_parity_refuses_paths_outside(victim, capsys, file):
    export = _write(victim / "exp", _manifest([_record(file)]))
    assert main(["parity", str(export)]) == 2
    line = _one_line(capsys)
    assert "is not a relative path inside the export directory" in line


@pytest.mark.parametrize("link_to", ["/etc/passwd", "../other/onnx/decoder.fp32.onnx"])
def test_parity_refuses_symlinked_file_leaving(victim, capsys, link_to):
    export = _write(victim / "exp", _manifest([_record("onnx/decoder.fp32.onnx")]))
    (export / "onnx").mkdir()
    target = (
        link_to
        if link_to.startswith("/")
        else os.path.relpath(victim / "other/onnx/decoder.fp32.onnx", export / "onnx")
    )
    (export / "onnx" / "decoder.fp32.onnx").symlink_to(target)
    assert main(["parity", str(export)]) == 2
    assert "leads outside the export directory" in _one_line(capsys)


def test_symlinked_directory_leaving_is_refused_by_bench_too(victim, capsys):
    export = _write(victim / "exp", _manifest([_record("onnx/decoder.fp32.onnx")]))
    (export / "onnx").symlink_to(victim / "other" / "onnx", target_is_directory=True)
    assert main(["bench", "--artifacts", str(export), "--no-parity", "--no-reference"]) == 2
    assert "leads outside the export directory" in _one_line(capsys)


def test_symlink_inside_the_directory_is_accepted(tmp_path):
    export = _write(tmp_path / "exp", _manifest([_record("onnx/decoder.fp32.onnx")]))
    (export / "store").mkdir()
    (export / "store" / "d.onnx").write_bytes(b"abc")
    (export / "onnx").mkdir()
    (export / "onnx" / "decoder.fp32.onnx").symlink_to("../store/d.onnx")
    m = Manifest.load(export)
    assert m.artifact_path(m.artifacts[0]) == export.resolve() / "onnx" / "decoder.fp32.onnx"


SCHEMA = [
    ([1, 2], "must be a JSON object, not list"),
    ({"artifacts": []}, "missing field model"),
    (_manifest([], evil=1), "unknown field evil"),
    (_manifest([], schema_version=2), "schema_version 2 is not supported"),
    (
        _manifest([], model={"variant": "edgesam", "kind": "random", "seed": "0"}),
        "seed has the wrong type",
    ),
    (
        _manifest([], model={"variant": "edgesam", "kind": "random", "seed": -1}),
        "seed must be an integer",
    ),
    (
        _manifest([], model={"variant": "edgesam", "kind": "random", "seed": MAX_SEED + 1}),
        "seed must be an integer",
    ),
    (
        _manifest([], model={"variant": "edgesam", "kind": "random", "seed": True}),
        "seed has the wrong type",
    ),
    (_manifest([], model={"variant": "edgesam", "kind": "pickle"}), "kind 'pickle' is not one of"),
    (_manifest([_record("a.onnx", target="evil")]), "target 'evil' is not one of"),
    (_manifest([_record("a.onnx", precision="int3")]), "precision 'int3' is not one of"),
    (_manifest([_record("a.onnx", sha256="xyz")]), "sha256 must be 64 hex digits"),
    (_manifest([_record("a.onnx", size_bytes=True)]), "size_bytes has the wrong type"),
    (_manifest([_record("a.onnx", extra=1)]), "unknown field extra"),
    (_manifest([_record("a.onnx"), _record("a.onnx")]), "a.onnx is listed twice"),
    (_manifest({"file": "a"}), "artifacts has the wrong type"),
    (_manifest([["a.onnx"]]), "must be a JSON object, not list"),
]


@pytest.mark.parametrize("data, expect", SCHEMA)
def test_schema_violations_are_one_line(tmp_path, capsys, data, expect):
    export = _write(tmp_path / "exp", data)
    assert main(["parity", str(export)]) == 2
    assert expect in _one_line(capsys)


@pytest.mark.parametrize(
    "raw, expect",
    [
        (b"\xff\xfe{not utf-8", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_unreadable_manifest_bytes(tmp_path, capsys, raw, expect):
    (tmp_path / "manifest.json").write_bytes(raw)
    assert main(["parity", str(tmp_path)]) == 2
    assert expect in _one_line(capsys)


def test_records_resolve_in_one_place(tmp_path):
    export = _write(tmp_path / "exp", _manifest([_record("onnx/decoder.fp32.onnx")]))
    m = Manifest.load(export)
    m.artifacts[0].file = "../escape.onnx"  # a record changed after validation is still refused
    with pytest.raises(ManifestError, match="not a relative path"):
        m.artifact_path(m.artifacts[0])


def test_fifo_or_device_is_refused_before_it_is_read(tmp_path, capsys):
    export = _write(tmp_path / "exp", _manifest([_record("onnx/decoder.fp32.onnx")]))
    (export / "onnx").mkdir()
    os.mkfifo(export / "onnx" / "decoder.fp32.onnx")  # reading it would block the gate forever
    assert main(["parity", str(export)]) == 2
    assert "is not a regular file or directory" in _one_line(capsys)


def test_link_to_the_directory_itself_is_refused(tmp_path, capsys):
    export = _write(tmp_path / "exp", _manifest([_record("onnx/decoder.fp32.onnx")]))
    (export / "onnx").mkdir()
    (export / "onnx" / "decoder.fp32.onnx").symlink_to("..", target_is_directory=True)
    assert main(["parity", str(export)]) == 2
    assert "leads outside the export directory" in _one_line(capsys)


def test_export_into_a_directory_with_a_hostile_manifest_writes_nothing(victim, capsys):
    export = _write(victim / "exp", _manifest([_record("../other/onnx/decoder.fp32.onnx")]))
    before = sorted(p.name for p in export.iterdir())
    args = ["export", "--target", "onnx", "--precision", "fp32", "--random-weights", "0"]
    assert main([*args, "--no-parity", "--out", str(export)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "is not a relative path inside" in err[-1] and "Traceback" not in "".join(err)
    assert sorted(p.name for p in export.iterdir()) == sorted([*before, ".edgesam-deploy.lock"])
