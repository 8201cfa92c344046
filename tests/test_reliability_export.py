"""Export directories as transactions, with real processes and real signals: an interrupted
(re-)export leaves the previous state, a commit cut short is rolled forward, two exports into one
directory are serialized, stale leftovers are removed, a full or read-only disk is one line.

Exports are ONNX fp32 of the seeded model without the parity run (the cheapest real export); the
re-exports use ``--scores stability``, which changes the decoder's bytes, so old and new differ.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.exportdir import JOURNAL_NAME, LOCK_NAME, export_transaction, settle
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.exporters.pipeline import run_export
from edgesam_deploy.fileio import sha256_path
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.testhook import HOOK_ENV
from edgesam_deploy.vocabulary import Target

REPO = Path(__file__).resolve().parents[1]
FIRST_GRAPH = "written=encoder.fp32.onnx"  # the encoder is the first graph an ONNX export writes


def export_proc(out: Path, hook: str | None = None, *extra: str) -> subprocess.Popen:
    """``edgesam-deploy export`` of ONNX fp32 as a real process (the worktree on PYTHONPATH)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop(HOOK_ENV, None)
    if hook:
        env[HOOK_ENV] = hook
    argv = [
        sys.executable,
        "-m",
        "edgesam_deploy",
        "export",
        "--target",
        "onnx",
        "--precision",
        "fp32",
        "--out",
        str(out),
        "--random-weights",
        "0",
        "--no-parity",
        *extra,
    ]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every visible file -> (inode, size): a replaced file gets a new inode."""
    return {
        str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_size)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    }


def assert_consistent(directory: Path) -> Manifest:
    """The manifest lists exactly the artifact files present, with their SHA-256; no leftovers."""
    m = Manifest.load(directory)
    listed = {a.file for a in m.artifacts}
    present = {k for k in snapshot(directory) if k != "manifest.json"}
    assert listed == present
    for a in m.artifacts:
        assert sha256_path(m.artifact_path(a)) == a.sha256, a.file
    hidden = [p.name for p in directory.rglob(".*") if p.name != LOCK_NAME]
    assert hidden == [], hidden
    return m


@pytest.fixture(scope="module")
def base_export(tmp_path_factory, random_model) -> Path:
    """A finished export (scores iou), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("base") / "export"
    _, source = load_model(random_seed=0)
    run_export(
        random_model,
        source,
        [Target.ONNX],
        out,
        ExportOptions.of(OnnxOptions(("fp32",))),
        run_parity=False,
    )
    assert_consistent(out)
    return out


@pytest.fixture
def existing(base_export, tmp_path) -> Path:
    out = tmp_path / "export"
    shutil.copytree(base_export, out)
    return out


@pytest.mark.parametrize("sig", ["INT", "KILL"])
def test_interrupted_reexport_leaves_previous_state(existing, sig):
    before, manifest = snapshot(existing), (existing / "manifest.json").read_bytes()
    code, err = finish(export_proc(existing, f"{FIRST_GRAPH}:{sig}", "--scores", "stability"))
    if sig == "INT":
        assert code == 130 and "edgesam-deploy: interrupted" in err.splitlines()
        assert "Traceback" not in err
    else:
        assert code == -signal.SIGKILL
    assert snapshot(existing) == before  # same files, same inodes: nothing was replaced
    assert (existing / "manifest.json").read_bytes() == manifest
    if sig == "KILL":  # the killed process's staging directory is left for the next export
        assert [p.name for p in existing.glob(".staging-*")]
    else:
        assert_consistent(existing)


def test_kill_then_reexport_cleans_up_and_commits(existing):
    code, _ = finish(export_proc(existing, f"{FIRST_GRAPH}:KILL", "--scores", "stability"))
    assert code == -signal.SIGKILL and list(existing.glob(".staging-*"))
    old = snapshot(existing)
    code, err = finish(export_proc(existing, None, "--scores", "stability"))
    assert code == 0, err
    m = assert_consistent(existing)  # stale staging (22 MB) removed, manifest = files
    dec = next(a for a in m.artifacts if a.role == "decoder")
    assert dec.details["scores"] == "stability"
    assert all(
        snapshot(existing)[f][0] != old[f][0]
        for f in ("onnx/encoder.fp32.onnx", "onnx/decoder.fp32.onnx")
    )


def test_kill_inside_commit_is_rolled_forward(existing, capsys):
    from edgesam_deploy.cli.app import main

    code, _ = finish(export_proc(existing, "moved:KILL", "--scores", "stability"))
    assert code == -signal.SIGKILL
    assert (existing / JOURNAL_NAME).exists()  # past the commit point, before the manifest moved
    assert (
        json.loads((existing / "manifest.json").read_text())["artifacts"][1]["details"]["scores"]
        == "iou"
    )
    # parity (and bench) settle the directory first; "--file nope" stops before loading a model
    assert main(["parity", str(existing), "--file", "nope"]) == 2
    assert "not in the manifest" in capsys.readouterr().err
    m = assert_consistent(existing)
    assert next(a for a in m.artifacts if a.role == "decoder").details["scores"] == "stability"


def test_ctrl_c_inside_commit_finishes_it(existing):
    """Past the commit point an interrupt completes the commit before exiting 130."""
    code, err = finish(export_proc(existing, "moved:INT", "--scores", "stability"))
    assert code == 130 and "edgesam-deploy: interrupted" in err.splitlines(), err
    m = assert_consistent(existing)
    assert next(a for a in m.artifacts if a.role == "decoder").details["scores"] == "stability"


def test_concurrent_export_is_refused_and_nothing_is_lost(tmp_path):
    out, marker = tmp_path / "export", tmp_path / "paused"
    first = export_proc(out, f"{FIRST_GRAPH}:pause:{marker}")
    try:
        while not marker.exists():
            assert first.poll() is None, first.communicate()
            time.sleep(0.2)
        code, err = finish(export_proc(out))
        assert code == 2
        assert err.strip().splitlines()[-1] == (
            f"edgesam-deploy: error: {out} is being written by another export (pid {first.pid}); "
            "wait for it to finish or choose another --out"
        )
    finally:
        marker.unlink(missing_ok=True)
    code, err = finish(first)
    assert code == 0, err
    m = assert_consistent(out)
    assert sorted(a.file for a in m.artifacts) == [
        "onnx/decoder.fp32.onnx",
        "onnx/encoder.fp32.onnx",
    ]


def test_stale_leftovers_of_dead_processes_are_removed(existing):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_partial = existing / "onnx" / f".encoder.fp32.onnx.partial-{dead.pid}"
    stale_partial.write_bytes(b"x" * 1000)
    stale_staging = existing / f".staging-{dead.pid}" / "onnx"
    stale_staging.mkdir(parents=True)
    (stale_staging / "encoder.fp32.onnx").write_bytes(b"x")
    live_partial = existing / f".manifest.json.partial-{os.getpid()}"  # a live writer's: kept
    live_partial.write_bytes(b"{")
    with export_transaction(existing):  # what every export runs first
        pass
    assert not stale_partial.exists() and not stale_staging.parent.exists()
    assert live_partial.exists()
    live_partial.unlink()
    assert_consistent(existing)


@pytest.mark.parametrize(
    "journal, expect",
    [
        ({"staging": ".staging-1", "files": ["../../outside"]}, "not a relative path inside"),
        ({"staging": "../x", "files": []}, "damaged commit journal"),
        ("not json", "damaged commit journal"),
    ],
)
def test_damaged_or_hostile_journal_is_one_line(existing, capsys, journal, expect):
    from edgesam_deploy.cli.app import main

    (existing / JOURNAL_NAME).write_text(
        journal if isinstance(journal, str) else json.dumps(journal)
    )
    assert main(["parity", str(existing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0]


def test_settle_without_journal_writes_nothing(base_export):
    before = snapshot(base_export)
    settle(base_export)  # parity on a read-only checkout must not need to write
    assert snapshot(base_export) == before
