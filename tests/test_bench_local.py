"""`bench --device host` on a small ONNX export: every metric, JSON, Markdown report and plot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgesam_deploy.bench.host import cpu_details, cpu_summary
from edgesam_deploy.bench.schema import BenchReport, Stats
from edgesam_deploy.cli.app import main
from edgesam_deploy.fileio import sha256_path

from test_bench_support import make_onnx_export


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, random_model) -> Path:
    root = make_onnx_export(tmp_path_factory.mktemp("onnx-export"), random_model)
    (root / "encoder.mlpackage").write_bytes(
        b"not measured here"
    )  # a target without a session here
    from edgesam_deploy.manifest import ArtifactRecord, Manifest

    manifest = Manifest.load(root)
    manifest.add(
        [
            ArtifactRecord(
                "encoder.mlpackage",
                "coreml",
                "encoder",
                "fp16",
                [],
                [],
                17,
                sha256_path(root / "encoder.mlpackage"),
            )
        ]
    )
    manifest.save(root)
    return root


def test_host_bench_measures_every_artifact_and_writes_reports(export_dir, tmp_path, capsys):
    out, md = tmp_path / "bench.json", tmp_path / "report" / "report.md"
    code = main(
        [
            "bench",
            "--artifacts",
            str(export_dir),
            "--runs",
            "2",
            "--warmup",
            "1",
            "--threads",
            "2",
            "--json",
            str(out),
            "--report",
            str(md),
            "--no-reference",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = BenchReport.from_dict(json.loads(out.read_text()))
    assert (
        report.device.name == "host"
        and report.device.runner == "local"
        and report.settings["runs"] == 2
    )
    assert report.model["kind"] == "random" and "onnxruntime" in report.versions
    by_file = {a.file: a for a in report.artifacts}
    enc, dec, other = by_file["encoder.onnx"], by_file["decoder.onnx"], by_file["encoder.mlpackage"]
    assert enc.measured and dec.measured and not other.measured and "macOS" in other.reason
    assert (
        enc.latency["encoder"].runs == 2
        and enc.latency["encoder"].min <= enc.latency["encoder"].p50
    )
    assert set(dec.latency) == {"decoder_1_click", "decoder_16_points"} and dec.clicks_per_s > 0
    for a in (enc, dec):
        assert (
            a.load_ms > 0
            and a.peak_rss_mib > 0
            and a.size_bytes > 0
            and a.runtime_details["threads"] == 2
        )
        assert a.parity is not None and a.parity.source == "computed"
        assert a.parity.evaluated_with.startswith("onnxruntime")
        assert a.parity.passed, a.parity.failures
        assert a.parity_measured_on == a.parity.measured_on == "host"  # through the protocol
    assert other.parity is None and other.parity_measured_on == "not measured"
    assert "iPhone app" in other.parity_reason
    (pipe,) = report.pipelines
    assert (
        pipe.measured
        and pipe.fps > 0
        and pipe.time_to_first_mask_ms > 0
        and pipe.end_to_end.runs == 2
    )
    text = md.read_text()
    assert "encoder.onnx" in text and "not measured" in text and "report-latency.png" in text
    assert "| host: pass (IoU 1.0000) | this row |" in text
    cpu = cpu_summary(cpu_details())
    assert report.device.details["processor"] and (not cpu or f"; CPU: {cpu}" in text)
    assert (md.parent / "report-latency.png").read_bytes()[:4] == b"\x89PNG"
    assert "Benchmark on host" in captured.out


def test_stats_percentiles_are_nearest_rank():
    stats = Stats.from_samples([5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0, 7.0, 8.0, 9.0])
    assert (stats.p50, stats.p90, stats.min, stats.max, stats.runs) == (5.0, 9.0, 1.0, 10.0, 10)


def test_session_options_match_the_session_classes():
    """The benchmark's per-runtime options are keyword arguments the sessions accept."""
    import inspect

    from edgesam_deploy.bench.sessions import session_options
    from edgesam_deploy.runtimes.litert import LiteRtSession
    from edgesam_deploy.runtimes.onnxruntime import OrtSession

    for target, cls in (("onnx", OrtSession), ("tflite", LiteRtSession)):
        accepted = set(inspect.signature(cls.__init__).parameters)
        assert set(session_options(target, 2)) <= accepted, target


def test_host_bench_adopts_the_exports_record_and_judges_only_the_rest(
    export_dir, tmp_path, monkeypatch
):
    """A file the export judged on this host is not judged again (its record is the row's parity);
    a file without a record goes through the device-parity protocol as before."""
    import shutil

    from edgesam_deploy import api
    from edgesam_deploy.bench.runners.local import LocalRunner
    from edgesam_deploy.device.protocol import Bundle
    from edgesam_deploy.manifest import Manifest

    root = tmp_path / "export"
    shutil.copytree(export_dir, root)
    manifest = Manifest.load(root)
    recorded = {"mask_iou_mean": 0.987, "embedding_cosine_min": 0.9991}
    manifest.parity = {
        "artifacts": [
            {
                "file": "encoder.onnx",
                "passed": True,
                "metrics": recorded,
                "failures": [],
                "runtime": "onnxruntime",
            }
        ]
    }
    manifest.save(root)
    judged: list[list[str]] = []
    run_parity = LocalRunner.run_parity

    def spy(self, bundle, outputs, request):
        judged.append([a.file for a in Bundle.load(bundle).artifacts])
        return run_parity(self, bundle, outputs, request)

    monkeypatch.setattr(LocalRunner, "run_parity", spy)
    report = api.bench(root, "host", runs=1, warmup=0, threads=1, reference=False)
    by_file = {a.file: a for a in report.artifacts}
    enc, dec = by_file["encoder.onnx"], by_file["decoder.onnx"]
    assert enc.parity is not None and enc.parity.source == "manifest"
    assert enc.parity.metrics == recorded and enc.parity_measured_on == "host"
    assert enc.host_parity is None  # the host column says "this row"
    assert dec.parity is not None and dec.parity.source == "computed" and dec.parity.passed
    assert judged == [["decoder.onnx"]]


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["--threads", "100000"], "--threads must be from 1 to 256"),  # the runtime would hang
        (["--checkpoint", "{tmp}/text.pth"], "text.pth: not a PyTorch checkpoint"),
    ],
)
def test_bench_refuses_before_measuring(export_dir, tmp_path, capsys, argv, expect):
    """A thread count no runtime can start and a checkpoint named but unusable are refused up
    front, even where the reference would not be needed (--no-reference, parity recorded)."""
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    base = ["bench", "--artifacts", str(export_dir), "--runs", "1", "--warmup", "0"]
    code = main([*base, "--no-reference", *(a.format(tmp=tmp_path) for a in argv)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expect in err[0], err


def _dangle(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("gone"))


@pytest.mark.parametrize(
    "change, expect",
    [
        (lambda p: p.write_bytes(p.read_bytes()[::-1]), "sha256 differs from the manifest"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "18 bytes where the manifest records 17"),
        (_dangle, "listed in the manifest but missing"),
    ],
)
def test_bench_refuses_an_artifact_changed_after_export(
    export_dir, tmp_path, capsys, change, expect
):
    """Other bytes of the same size, another size, a link to nothing: bench would time (or fail
    on) a file the manifest does not describe."""
    changed = tmp_path / "changed"
    shutil.copytree(export_dir, changed)
    change(changed / "encoder.mlpackage")
    argv = ["bench", "--artifacts", str(changed), "--runs", "1", "--warmup", "0"]
    assert main([*argv, "--no-reference"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress lines
    assert last.startswith("edgesam-deploy: error: ") and expect in last, last
