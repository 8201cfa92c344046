"""Manifests are untrusted input: every path stays inside the export directory, every field is
typed, and anything else is one line and exit 2 (parity and bench, before any model is loaded)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from edgesam_deploy.cli.app import main
from edgesam_deploy.errors import DeployError
from edgesam_deploy.exportdir import JOURNAL_NAME, LOCK_NAME, export_transaction, settle
from edgesam_deploy.fileio import sha256_path, size_bytes
from edgesam_deploy.manifest import Manifest, ManifestError
from edgesam_deploy.manifest_schema import MAX_SEED
from edgesam_deploy.runtimes import open_session
from edgesam_deploy.vocabulary import DECODER, ENCODER, GraphSpec, Role

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


def test_json_integer_too_long_to_parse_is_one_line(tmp_path, capsys):
    (tmp_path / "manifest.json").write_bytes(b'{"schema_version": ' + b"9" * 5000 + b"}")
    assert main(["parity", str(tmp_path)]) == 2
    assert "not valid JSON (Exceeds the limit" in _one_line(capsys)


MALFORMED = [
    (_manifest([_record("a.onnx", size_bytes=10**400)]), "size_bytes must be from 0 to"),
    (_manifest([_record("a.onnx", inputs=[5])]), "inputs[0] must be a JSON object, not int"),
    (
        _manifest([_record("a.onnx", inputs=[{"name": "image", "shape": "abc", "dtype": "f"}])]),
        "inputs[0].shape has the wrong type (str)",
    ),
    (
        _manifest(
            [_record("a.onnx", inputs=[{"name": "i", "shape": [1, 3, 1e30, -5], "dtype": "f"}])]
        ),
        "inputs[0].shape must list positive integers",
    ),
    (
        _manifest([_record("a.onnx", outputs=[{"name": "m", "shape": [True], "dtype": "f"}])]),
        "outputs[0].shape must list positive integers",
    ),
    (_manifest([_record("a.onnx", details={"scores": "bogus"})]), "details.scores must be one of"),
    (_manifest([_record("a.onnx", details={"mask_input": 1})]), "mask_input must be true or"),
    (
        _manifest([_record("a.onnx", role="encoder", details={"mask_input": True})]),
        "only a decoder takes mask inputs",
    ),
    (_manifest([_record("a.onnx", details={"point_counts": "12"})]), "point_counts must be a list"),
    (_manifest([_record("a.onnx", precision="palette8")]), "onnx has no such precision"),
    (
        _manifest([], model={"variant": "edgesam", "kind": "random", "seed": 0, "sha256": "zz"}),
        "model.sha256 must be 64 hex digits",
    ),
    (_manifest([], parity={"passed": "maybe"}), "parity.passed has the wrong type (str)"),
    (
        _manifest(
            [],
            parity={
                "passed": True,
                "artifacts": [{"file": "a.onnx", "passed": False, "metrics": {}, "failures": []}],
            },
        ),
        "parity.passed contradicts the verdicts",
    ),
    (
        _manifest([], parity={"artifacts": [{"file": "a.onnx", "passed": True}]}),
        "parity.artifacts[0]: missing field failures, metrics",
    ),
    (_manifest([], preprocessing={"pixel_std": "x"}), "preprocessing.pixel_std must be [58.395"),
    (_manifest([], preprocessing={"pixel_std": [0, 0, 0]}), "pixel_std must be [58.395"),
    (_manifest([], tools={"onnxruntime": 1.2}), "tools must map package names to version"),
]


@pytest.mark.parametrize("data, expect", MALFORMED)
def test_malformed_values_are_one_line_before_any_model(tmp_path, capsys, data, expect):
    export = _write(tmp_path / "exp", data)
    assert main(["parity", str(export)]) == 2
    assert expect in _one_line(capsys)


def test_symlink_loop_is_one_line(tmp_path, capsys):
    export = _write(tmp_path / "exp", _manifest([_record("onnx/decoder.fp32.onnx")]))
    (export / "onnx").mkdir()
    (export / "onnx" / "decoder.fp32.onnx").symlink_to("decoder.fp32.onnx")
    assert main(["parity", str(export)]) == 2
    assert "cannot be resolved (Symlink loop" in _one_line(capsys)


@pytest.mark.parametrize(
    "command",
    [["parity"], ["bench", "--no-parity", "--no-reference", "--artifacts"]],
    ids=["parity", "bench"],
)
def test_manifest_symlinked_outside_is_refused(victim, capsys, command):
    outside = _write(victim / "other", _manifest([_record("onnx/decoder.fp32.onnx")]))
    export = victim / "exp"
    export.mkdir()
    (export / "manifest.json").symlink_to(outside / "manifest.json")
    assert main([*command, str(export)]) == 2
    assert "file 'manifest.json' leads outside the export directory" in _one_line(capsys)


# --- declared interfaces against the artifact's real graph (tiny ONNX graphs, no model) ---


def _graph(path: Path, spec: GraphSpec) -> None:
    """A tiny ONNX graph with the interface of ``spec``: zeros out, inputs unread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = [
        helper.make_tensor_value_info(
            t.name, TensorProto.FLOAT, ["n" if d is None else d for d in t.shape]
        )
        for t in spec.inputs
    ]
    outputs, nodes = [], []
    for t in spec.outputs:
        shape = [d or 1 for d in t.shape]
        outputs.append(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, shape))
        nodes.append(helper.make_node("Constant", [], [f"{t.name}.shape"], value_ints=shape))
        nodes.append(helper.make_node("ConstantOfShape", [f"{t.name}.shape"], [t.name]))
    graph = helper.make_graph(nodes, "tiny", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())


def _artifact(root: Path, file: str, spec: GraphSpec, graph: GraphSpec | None = None) -> dict:
    """The faithful record of ``file``, a tiny graph of ``graph`` (default: of ``spec``) that the
    record declares to be ``spec``."""
    _graph(root / file, graph or spec)
    details = {"scores": "iou", "mask_input": False} if spec.role == Role.DECODER else {}
    return _record(
        file,
        role=str(spec.role),
        inputs=[t.as_dict() for t in spec.inputs],
        outputs=[t.as_dict() for t in spec.outputs],
        size_bytes=size_bytes(root / file),
        sha256=sha256_path(root / file),
        details=details,
    )


def _opened(root: Path, records: list[dict]) -> list:
    _write(root, _manifest(records))
    manifest = Manifest.load(root)
    return [open_session(r, root) for r in manifest.artifacts]


def test_faithful_records_open(tmp_path):
    records = [_artifact(tmp_path, f"onnx/{s.role}.onnx", s) for s in (ENCODER, DECODER)]
    assert [s.graph.role for s in _opened(tmp_path, records)] == ["encoder", "decoder"]


CONTRADICTIONS = {  # id: (the record's field changed, its new value, what the line says)
    "no-inputs": (("inputs",), [], ["the manifest declares nothing -> scores"]),
    "input-name": (("inputs", 0, "name"), "bogus", ["declares bogus [1, 256, 64, 64] float32"]),
    "input-dtype": (("inputs", 0, "dtype"), "int8", ["image_embeddings [1, 256, 64, 64] int8"]),
    "output-name": (("outputs", 0, "name"), "bogus", ["-> bogus [1, 4] float32"]),
    "size": (("size_bytes",), 1, ["bytes where the manifest records 1: the file changed"]),
    "mask-input": (
        ("details", "mask_input"),
        True,
        ["expected the decoder (with mask inputs) interface", "found image_embeddings"],
    ),
}


@pytest.mark.parametrize("field, value, expect", CONTRADICTIONS.values(), ids=CONTRADICTIONS)
def test_record_contradicting_its_file_is_refused_when_opened(tmp_path, field, value, expect):
    record = _artifact(tmp_path, "onnx/decoder.onnx", DECODER)
    *parents, last = field
    entry = record
    for key in parents:
        entry = entry[key]
    entry[last] = value
    with pytest.raises(DeployError) as refused:
        _opened(tmp_path, [record])
    assert all(e in str(refused.value) for e in expect), refused.value


def test_encoder_and_decoder_swapped_is_one_line(tmp_path, capsys):
    """Decoder bytes filed as the encoder, with their true size and sha256: one line naming the
    file, what its role takes and what the file takes (not an internal error)."""
    records = [
        _artifact(tmp_path, "onnx/encoder.onnx", ENCODER, graph=DECODER),
        _artifact(tmp_path, "onnx/decoder.onnx", DECODER, graph=ENCODER),
    ]
    _write(tmp_path, _manifest(records))
    assert main(["--quiet", "parity", str(tmp_path)]) == 2
    line = _one_line(capsys)
    assert "onnx/encoder.onnx: expected the encoder interface image [1, 3, 1024, 1024]" in line
    assert "found image_embeddings [1, 256, 64, 64] float32, point_coords [1, ?, 2]" in line


# --- the commit journal may only rename inside the export directory ---


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` -> its symlink target or its content."""
    return {
        str(p.relative_to(root)): os.readlink(p)
        if p.is_symlink()
        else ("<dir>" if p.is_dir() else p.read_text())
        for p in sorted(root.rglob("*"))
    }


def _staged(export: Path, files: dict[str, str]) -> None:
    """``files`` (relative path -> text) written in the staging directory ``.staging-7``."""
    for rel, text in files.items():
        (export / ".staging-7" / rel).parent.mkdir(parents=True, exist_ok=True)
        (export / ".staging-7" / rel).write_text(text)


def _link_staging(export: Path, outside: Path) -> list[str]:
    (export / ".staging-7").symlink_to(outside, target_is_directory=True)
    return ["a.txt"]


def _link_staged_dir(export: Path, outside: Path) -> list[str]:
    _staged(export, {"manifest.json": "{}"})
    (export / ".staging-7" / "onnx").symlink_to(outside, target_is_directory=True)
    return ["onnx/a.txt"]


def _link_staged_file(export: Path, outside: Path) -> list[str]:
    _staged(export, {"manifest.json": "{}"})
    (export / ".staging-7" / "a.txt").symlink_to(outside / "a.txt")
    return ["a.txt"]


def _link_destination_dir(export: Path, outside: Path) -> list[str]:
    _staged(export, {"onnx/b.txt": "new", "manifest.json": "{}"})
    (export / "onnx").symlink_to(outside, target_is_directory=True)
    return ["onnx/b.txt"]


def _staging_is_a_file(export: Path, outside: Path) -> list[str]:
    (export / ".staging-7").write_text("x")
    return ["a.txt"]


def _link_staged_manifest(export: Path, outside: Path) -> list[str]:
    _staged(export, {"b.txt": "new"})
    (export / ".staging-7" / "manifest.json").symlink_to(outside / "a.txt")
    return ["b.txt"]


def _link_journal(export: Path, outside: Path) -> list[str]:
    _staged(export, {"b.txt": "new"})
    (outside / "journal.json").write_text(json.dumps({"staging": ".staging-7", "files": []}))
    (export / JOURNAL_NAME).symlink_to(outside / "journal.json")
    return []


@pytest.mark.parametrize(
    "hostile",
    [
        _link_staging,
        _link_staged_dir,
        _link_staged_file,
        _link_destination_dir,
        _staging_is_a_file,
        _link_staged_manifest,
        _link_journal,
    ],
)
def test_hostile_journal_moves_nothing(tmp_path, capsys, hostile):
    """parity (which rolls a journal forward) and export refuse a journal that would move a file
    across a symlink, in one line, before anything moves."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("secret")
    export = _write(tmp_path / "exp", _manifest([]))
    files = hostile(export, outside)
    if not (export / JOURNAL_NAME).is_symlink():
        (export / JOURNAL_NAME).write_text(json.dumps({"staging": ".staging-7", "files": files}))
    before, outside_before = _tree(export), _tree(outside)
    assert main(["parity", str(export)]) == 2
    assert re.search("damaged commit journal|leads outside the export", _one_line(capsys))
    with pytest.raises(DeployError):
        with export_transaction(export):  # what every export runs first
            pass
    assert _tree(outside) == outside_before
    assert _tree(export) == {**before, LOCK_NAME: str(os.getpid())}


def test_journal_inside_the_directory_is_rolled_forward(tmp_path):
    export = _write(tmp_path / "exp", _manifest([]))
    staged = json.dumps(_manifest([_record("onnx/d.onnx")]))
    _staged(export, {"onnx/d.onnx": "abc", "manifest.json": staged})
    (export / JOURNAL_NAME).write_text(
        json.dumps({"staging": ".staging-7", "files": ["onnx/d.onnx"]})
    )
    settle(export)
    assert _tree(export) == {
        LOCK_NAME: str(os.getpid()),
        "manifest.json": staged,
        "onnx": "<dir>",
        "onnx/d.onnx": "abc",
    }


# --- a failed export leaves no directory behind that it created ---


def test_failed_export_removes_the_directory_it_created(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    for out in (tmp_path / "new" / "out", existing / "out"):
        with pytest.raises(DeployError, match="no calibration images"):
            with export_transaction(out):
                raise DeployError("no calibration images")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
    assert list(existing.iterdir()) == []


def test_commit_never_replaces_a_users_directory_with_a_file(tmp_path):
    """A directory where the export would put a file is refused before the commit point: the
    user's files in it survive and the directory is as it was."""
    out = tmp_path / "out"
    (out / "onnx" / "d.onnx").mkdir(parents=True)
    (out / "onnx" / "d.onnx" / "notes.txt").write_text("mine")
    with pytest.raises(DeployError, match="is a directory"):
        with export_transaction(out) as tx:
            (tx.staging / "onnx").mkdir()
            (tx.staging / "onnx" / "d.onnx").write_bytes(b"graph")
            tx.commit(Manifest({}), ["onnx/d.onnx"])
    assert (out / "onnx" / "d.onnx" / "notes.txt").read_text() == "mine"
    assert not (out / JOURNAL_NAME).exists() and not (out / "manifest.json").exists()
