"""The export pipeline: targets resolved from the vocabulary, one context shared by every target."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.errors import DeployError
from edgesam_deploy.exporters import ExportOptions, base
from edgesam_deploy.exporters.base import ExportContext, Exporter
from edgesam_deploy.exporters.pipeline import resolve_targets, run_export
from edgesam_deploy.fileio import atomic_output
from edgesam_deploy.manifest import ArtifactRecord, Manifest
from edgesam_deploy.vocabulary import Precision, Role, Target


class CountingExporter(Exporter):
    """Writes a small file per role from the shared graphs and calibration data (no converter)."""

    extra = "none"
    required_modules = ()
    precisions = (Precision.FP32,)
    default_precisions = (Precision.FP32,)

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        records = []
        images = ctx.calibration_images  # shared: computed once per export
        for role in Role:
            graph = ctx.graph(role)
            path = ctx.out_dir / str(self.target) / f"{role}.fp32.bin"
            with atomic_output(path) as tmp:
                tmp.write_text(f"{type(graph).__name__} {len(images)}")
            records.append(self.make_record(ctx, path, role, Precision.FP32))
        return records


def _exporter_for(target: Target) -> type[Exporter]:
    return type(f"Counting{target}", (CountingExporter,), {"target": target})


@pytest.fixture
def counting_exporters(monkeypatch):
    """Every target's exporter replaced by a CountingExporter; returns the build counters."""
    from edgesam_deploy.exporters import pipeline
    from edgesam_deploy.quantization import calibration

    counts = {"graphs": 0, "calibration": 0}
    build_graph, calibration_images = base.build_graph, calibration.calibration_images

    def counted_graph(*args, **kwargs):
        counts["graphs"] += 1
        return build_graph(*args, **kwargs)

    def counted_calibration(directory, size):
        counts["calibration"] += 1
        return calibration_images(directory, 1)

    monkeypatch.setattr(base, "build_graph", counted_graph)
    monkeypatch.setattr(calibration, "calibration_images", counted_calibration)
    monkeypatch.setattr(pipeline, "get_exporter", lambda target: _exporter_for(Target(target))())
    return counts


def test_all_targets_share_one_context(counting_exporters, random_model, tmp_path: Path):
    targets = resolve_targets("all")
    assert targets == [Target.ONNX, Target.TFLITE, Target.COREML, Target.EXECUTORCH]
    source = ModelSource("edgesam", "random", seed=0)
    manifest, _ = run_export(
        random_model, source, targets, tmp_path, ExportOptions(), run_parity=False
    )
    assert counting_exporters == {"graphs": 2, "calibration": 1}  # one encoder, one decoder graph
    assert len(Manifest.load(tmp_path).artifacts) == len(manifest.artifacts) == 2 * len(Target)
    assert {(a.target, a.role) for a in manifest.artifacts} == {
        (t, r) for t in Target for r in Role
    }


@pytest.mark.parametrize(
    "text, message",
    [
        (",", "name at least one"),
        ("onnx,tensorrt", "unknown target 'tensorrt'"),
        ("", "at least one"),
    ],
)
def test_bad_target_lists(text: str, message: str):
    with pytest.raises(DeployError, match=message):
        resolve_targets(text)


def test_target_list_keeps_order_and_drops_repeats():
    assert resolve_targets("tflite, onnx,tflite") == [Target.TFLITE, Target.ONNX]


def test_cli_exports_every_target_in_one_run(monkeypatch, tmp_path: Path):
    """`export --target all` makes one run_export call with each target's own options."""
    from edgesam_deploy import api
    from edgesam_deploy.cli.app import main
    from edgesam_deploy.exporters.coreml.options import CoremlOptions
    from edgesam_deploy.exporters.tflite.options import TfliteOptions

    calls = []

    def recording_run_export(model, source, targets, out, options, run_parity, progress):
        calls.append((targets, options, run_parity))
        return Manifest(model=source.as_dict()), []

    monkeypatch.setattr(api, "run_export", recording_run_export)
    argv = [
        "export",
        "--target",
        "all",
        "--out",
        str(tmp_path),
        "--random-weights",
        "0",
        "--num-points",
        "3",
        "--min-ios",
        "18",
        "--compute-units",
        "CPU_AND_NE",
        "--no-parity",
    ]
    assert main(argv) == 0
    [(targets, options, run_parity)] = calls
    assert targets == list(Target) and run_parity is False
    assert options.targets[Target.TFLITE] == TfliteOptions(None, (1, 2, 3))
    coreml = options.targets[Target.COREML]
    assert isinstance(coreml, CoremlOptions) and (coreml.min_ios, coreml.compute_units) == (
        18,
        "CPU_AND_NE",
    )


def test_cli_rejects_bad_choices_as_usage_errors(tmp_path: Path, capsys):
    from edgesam_deploy.cli.app import main

    argv = ["export", "--target", "coreml", "--out", str(tmp_path), "--compute-units", "NPU"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'NPU' is not one of 'ALL', 'CPU_AND_NE', 'CPU_AND_GPU', 'CPU_ONLY'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "target, expected",
    [(Target.ONNX, "int8-static"), (Target.TFLITE, "int8-dynamic"), (Target.COREML, "int8-weight")],
)
def test_int8_alias_resolves_per_target(target: Target, expected: str):
    from edgesam_deploy.exporters import get_exporter

    exporter = get_exporter(target)
    assert exporter.resolve_precisions(("fp32", "int8", expected)) == ["fp32", expected]


def test_cli_precision_aliases_reach_every_target(monkeypatch, tmp_path: Path):
    from edgesam_deploy import api
    from edgesam_deploy.cli.app import main

    calls = []
    monkeypatch.setattr(
        api,
        "run_export",
        lambda model, source, targets, out, options, **kw: (
            calls.append(options) or (Manifest(model=source.as_dict()), [])
        ),
    )
    argv = [
        "export",
        "--target",
        "onnx,coreml",
        "--out",
        str(tmp_path),
        "--random-weights",
        "0",
        "--precision",
        "fp16,int8",
        "--no-parity",
    ]
    assert main(argv) == 0
    assert {t: o.precisions for t, o in calls[0].targets.items()} == {
        Target.ONNX: ("fp16", "int8"),
        Target.COREML: ("fp16", "int8"),
    }
    assert main([*argv[:-3], "--precision", "int4", "--no-parity"]) == 2


def test_alias_is_recorded_in_the_manifest(monkeypatch, random_model, tmp_path: Path):
    from edgesam_deploy.exporters import pipeline
    from edgesam_deploy.exporters.onnx.options import OnnxOptions

    class AliasExporter(_exporter_for(Target.ONNX)):
        precisions = (Precision.FP32, Precision.INT8_STATIC)
        aliases = {"int8": Precision.INT8_STATIC}

        def export(self, ctx):
            path = ctx.out_dir / "onnx" / "encoder.int8-static.bin"
            with atomic_output(path) as tmp:
                tmp.write_text("x")
            precision = self.resolve_precisions(self.options(ctx).precisions)[0]
            return [self.make_record(ctx, path, Role.ENCODER, precision)]

    monkeypatch.setattr(pipeline, "get_exporter", lambda target: AliasExporter())
    options = ExportOptions.of(OnnxOptions(("int8",)))
    source = ModelSource("edgesam", "random", seed=0)
    manifest, _ = run_export(
        random_model, source, [Target.ONNX], tmp_path, options, run_parity=False
    )
    [record] = manifest.artifacts
    assert record.precision == "int8-static" and record.details["requested_as"] == "int8"
