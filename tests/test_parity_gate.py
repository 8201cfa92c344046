"""The export orchestration and the `parity` CI gate end to end (ONNX fp32, the cheapest target)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import onnx
import pytest
from onnx import numpy_helper

from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.cli.app import main
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.exporters.pipeline import run_export
from edgesam_deploy.manifest import Manifest, ManifestError
from edgesam_deploy.vocabulary import Target


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, random_model):
    out = tmp_path_factory.mktemp("gate")
    _, source = load_model(random_seed=0)
    manifest, results = run_export(
        random_model, source, [Target.ONNX], out, ExportOptions.of(OnnxOptions(("fp32",)))
    )
    assert results and all(r.passed for r in results)
    return out


def test_manifest_records_everything(export_dir):
    m = Manifest.load(export_dir)
    assert m.model["kind"] == "random" and m.model["seed"] == 0
    assert {"torch", "onnx", "onnxruntime", "numpy"} <= set(m.tools)
    assert m.preprocessing["pixel_mean"] == [123.675, 116.28, 103.53]
    roles = {a.role: a for a in m.artifacts}
    assert set(roles) == {"encoder", "decoder"}
    for a in m.artifacts:
        assert (export_dir / a.file).is_file() and len(a.sha256) == 64 and a.size_bytes > 0
    assert [i["name"] for i in roles["decoder"].inputs] == [
        "image_embeddings",
        "point_coords",
        "point_labels",
    ]
    assert m.parity["passed"] and {a["file"] for a in m.parity["artifacts"]} == {
        a.file for a in m.artifacts
    }
    assert not list(export_dir.rglob(".*partial*"))


def test_parity_cli_passes_and_writes_reports(export_dir, tmp_path, capsys):
    code = main(
        [
            "parity",
            str(export_dir),
            "--json",
            str(tmp_path / "p.json"),
            "--junit",
            str(tmp_path / "p.xml"),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["passed"] and len(report["artifacts"]) == 2
    suite = ET.parse(tmp_path / "p.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"


def test_parity_cli_fails_on_tampered_weights(export_dir, tmp_path, capsys):
    bad = tmp_path / "tampered"
    shutil.copytree(export_dir, bad)
    m = Manifest.load(bad)
    enc = next(a for a in m.artifacts if a.role == "encoder")
    model = onnx.load(bad / enc.file)
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data) or 0)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[: arr.size // 4] *= 1.5
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, bad / enc.file)
    code = main(["parity", str(bad), "--junit", str(tmp_path / "bad.xml")])
    assert code == 1
    suite = ET.parse(tmp_path / "bad.xml").getroot()
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert "sha256 differs" in failure.get("message") and "emb_max_abs" in failure.get("message")


def test_parity_cli_bad_input(tmp_path, capsys):
    assert main(["parity", str(tmp_path / "absent")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["parity", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_export_refuses_directory_of_another_model(export_dir, random_model):
    _, other = load_model(random_seed=1)
    with pytest.raises(ManifestError, match="another model"):
        run_export(
            random_model,
            other,
            [Target.ONNX],
            export_dir,
            ExportOptions.of(OnnxOptions(("fp32",))),
            run_parity=False,
        )


def test_export_cli_input_errors(tmp_path, capsys):
    assert (
        main(["export", "--target", "vulkan", "--out", str(tmp_path), "--random-weights", "0"]) == 2
    )
    assert "unknown target" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--target",
                "onnx",
                "--precision",
                "int3",
                "--out",
                str(tmp_path),
                "--random-weights",
                "0",
            ]
        )
        == 2
    )
    assert "unknown precision int3" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "target, module, extra",
    [
        ("coreml", "coremltools", "coreml"),
        ("tflite", "ai_edge_litert", "tflite"),
        ("onnx", "onnxruntime", "onnx"),
    ],
)
def test_missing_extra_names_it(tmp_path, capsys, monkeypatch, target, module, extra):
    monkeypatch.setitem(__import__("sys").modules, module, None)  # import now raises ImportError
    assert (
        main(["export", "--target", target, "--out", str(tmp_path / "x"), "--random-weights", "0"])
        == 2
    )
    err = capsys.readouterr().err
    assert f"edgesam-deploy[{extra}]" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
