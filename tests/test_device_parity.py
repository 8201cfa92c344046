"""The device-parity protocol: bundle -> device side (torch and PIL blocked) -> judge, corrupted
outputs failing only their row, and the trtexec and benchmark_model conversions."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesam_deploy.bench.device_parity import measure_device_parity
from edgesam_deploy.bench.report import write_markdown
from edgesam_deploy.bench.runners.base import BenchRequest
from edgesam_deploy.bench.runners.local import LocalRunner
from edgesam_deploy.bench.runners.trtexec_parity import (
    export_name,
    trtexec_parity_command,
    trtexec_results,
)
from edgesam_deploy.bench.schema import ArtifactResult, BenchReport, DeviceInfo, ParitySummary
from edgesam_deploy.device.protocol import RESULTS_FILE, Bundle, Settings
from edgesam_deploy.devices import DeviceProfile
from edgesam_deploy.errors import DeviceError
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.parity import Reference, evaluate
from edgesam_deploy.parity.bundle import write_bundle
from edgesam_deploy.parity.judge import judge_device_outputs
from edgesam_deploy.runtimes import open_session

from test_bench_support import make_onnx_export

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "PIL")
# run in a fresh interpreter: torch and PIL cannot be imported, then the device side runs a bundle
DEVICE_SIDE = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked on this device: " + name)
sys.meta_path.insert(0, Block())
try:
    import torch
except ImportError as exc:
    print("torch:", exc)
from edgesam_deploy.device.__main__ import main
code = main(sys.argv[1:])
heavy = {{"torch", "PIL", "skimage", "scipy"}}
print("loaded:", sorted({{m.split(".")[0] for m in sys.modules}} & heavy))
sys.exit(code)
"""


def run_device_side(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DEVICE_SIDE, *args], capture_output=True, text=True, cwd=REPO
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory, random_model) -> Path:
    return make_onnx_export(tmp_path_factory.mktemp("export"), random_model)


@pytest.fixture(scope="module")
def reference(random_model) -> Reference:
    return Reference(random_model, photos=["coffee"])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, export, reference) -> Path:
    directory = tmp_path_factory.mktemp("bundle")
    write_bundle(directory, reference, Manifest.load(export).artifacts, export, Settings(threads=1))
    return directory


@pytest.fixture(scope="module")
def device_run(tmp_path_factory, bundle) -> tuple[Path, subprocess.CompletedProcess[str]]:
    outputs = tmp_path_factory.mktemp("device") / "outputs"
    return outputs, run_device_side(str(bundle), str(outputs))


def test_device_side_imports_neither_torch_nor_pil(device_run):
    outputs, proc = device_run
    assert proc.returncode == 0, proc.stderr
    assert "torch: blocked on this device: torch" in proc.stdout  # the blocker works
    assert "loaded: []" in proc.stdout
    assert "encoder.onnx: 1 case(s)" in proc.stdout and "decoder.onnx: 5 case(s)" in proc.stdout
    assert (outputs / RESULTS_FILE).is_file()


def test_bundle_follows_the_documented_layout(bundle):
    data = json.loads((bundle / "protocol.json").read_text())
    assert data["protocol"] == "edgesam-device-parity" and data["version"] == 1
    assert data["settings"]["threads"] == 1
    enc = next(c for c in data["cases"] if c["id"] == "enc-coffee")
    assert enc["feeds"]["image"] == {
        "file": "feeds/enc-coffee/image.bin",
        "shape": [1, 3, 1024, 1024],
        "dtype": "float32",
    }
    assert (bundle / "feeds/enc-coffee/image.bin").stat().st_size == 4 * 3 * 1024 * 1024
    decoder = next(a for a in data["artifacts"] if a["role"] == "decoder")
    assert decoder["scores"] == "iou" and len(decoder["cases"]) == 5
    assert (bundle / "artifacts" / decoder["file"]).is_file()


def test_device_outputs_are_judged_like_the_host(device_run, bundle, export, reference):
    outputs, _ = device_run
    judged = {r.file: r for r in judge_device_outputs(bundle, outputs, reference)}
    for record in Manifest.load(export).artifacts:
        device, host = (
            judged[record.file],
            evaluate(open_session(record, export, threads=1), reference),
        )
        assert device.passed, device.failures
        assert device.measured_on == "device" and device.runtime.startswith("onnxruntime")
        assert device.metrics.keys() == host.metrics.keys()
        for key, value in host.metrics.items():
            assert device.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


def _corrupt_copy(outputs: Path, tmp: Path, how: str) -> Path:
    """A copy of ``outputs`` with the decoder's (artifact 1) output of one case damaged."""
    copy = tmp / "outputs"
    shutil.copytree(outputs, copy)
    masks = copy / "1" / "dec-coffee-one_point" / "masks.bin"
    results = json.loads((copy / RESULTS_FILE).read_text())
    decoder = results["artifacts"][1]
    if how == "truncated":
        masks.write_bytes(masks.read_bytes()[:1000])
    elif how == "nan":
        data = np.fromfile(masks, dtype="<f4")
        data[7] = np.nan
        data.tofile(masks)
    elif how == "shape":
        decoder["outputs"]["dec-coffee-one_point"]["masks"]["shape"] = [1, 4, 128, 512]
    elif how == "missing":
        masks.unlink()
    elif how == "error":
        decoder.update(status="error", error="RuntimeError: out of memory", outputs={})
    (copy / RESULTS_FILE).write_text(json.dumps(results))
    return copy


@pytest.mark.parametrize(
    "how, reason",
    [
        ("truncated", "1000 bytes, shape [1, 4, 256, 256] needs 1048576"),
        ("nan", "output 'masks' has 1 non-finite value(s)"),
        ("shape", "output 'masks' has shape [1, 4, 128, 512], the graph's is [1, 4, 256, 256]"),
        ("missing", "masks.bin: missing"),
        ("error", "did not run on the device: RuntimeError: out of memory"),
    ],
)
def test_a_corrupted_output_fails_only_its_row(
    device_run, bundle, reference, tmp_path, how, reason
):
    outputs = _corrupt_copy(device_run[0], tmp_path, how)
    encoder, decoder = judge_device_outputs(bundle, outputs, reference)
    assert encoder.passed, encoder.failures
    assert not decoder.passed and decoder.metrics == {} and len(decoder.failures) == 1
    assert reason in decoder.failures[0]


def test_unreadable_results_fail_every_row_with_the_reason(device_run, bundle, reference, tmp_path):
    copy = tmp_path / "outputs"
    shutil.copytree(device_run[0], copy)
    (copy / RESULTS_FILE).write_text((copy / RESULTS_FILE).read_text()[:200])
    judged = judge_device_outputs(bundle, copy, reference, "emulated")
    assert [r.passed for r in judged] == [False, False] and {r.measured_on for r in judged} == {
        "emulated"
    }
    assert all(
        "no usable results from the device" in r.failures[0] and "not valid JSON" in r.failures[0]
        for r in judged
    )


def test_a_bad_bundle_is_one_line_and_exit_2(tmp_path):
    proc = run_device_side(str(tmp_path), str(tmp_path / "out"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "protocol.json: missing" in proc.stderr


class _CorruptingRunner(LocalRunner):
    """The local runner, with the decoder's outputs damaged on the way back (or the device lost)."""

    lose_device = False

    def run_parity(self, bundle: Path, outputs: Path, request: BenchRequest) -> None:
        if self.lose_device:
            raise DeviceError("device 'host': connection closed")
        super().run_parity(bundle, outputs, request)
        masks = next((outputs / "1").glob("*/masks.bin"))
        masks.write_bytes(b"\0" * 7)


@pytest.mark.parametrize("lose_device", [False, True])
def test_bench_rows_say_what_went_wrong_and_the_bench_goes_on(export, reference, lose_device):
    manifest = Manifest.load(export)
    rows = [
        ArtifactResult(r.file, r.target, r.role, r.precision, r.size_bytes, measured=True)
        for r in manifest.artifacts
    ]
    runner = _CorruptingRunner(DeviceProfile("host", "local"))
    runner.lose_device = lose_device
    request = BenchRequest(export, manifest, manifest.artifacts, 1, 0, threads=1)
    measure_device_parity(runner, request, rows, lambda: reference, Settings(threads=1))
    encoder, decoder = rows
    if lose_device:
        assert encoder.parity is None and decoder.parity is None
        assert (
            "device parity did not complete: device 'host': connection closed"
            in decoder.parity_reason
        )
        return
    assert encoder.parity.passed and encoder.parity_measured_on == "host"
    assert not decoder.parity.passed and "7 bytes" in decoder.parity.failures[0]


def _trtexec_json(tensors: dict[str, np.ndarray], nan_at: int | None = None) -> str:
    """An --exportOutput file as trtexec's exportJSONOutput lays it out (C++ spells NaN 'nan')."""
    parts = []
    for i, (name, value) in enumerate(tensors.items()):
        cells = [f"{v:g}" for v in value.ravel()]
        if nan_at is not None and name == "masks":
            cells[nan_at] = "nan"
        dims = "x".join(str(d) for d in value.shape)
        sep = "  " if i == 0 else ", "
        head = f'{sep}{{ "name" : "{name}"\n  , "dimensions" : "{dims}"\n'
        parts.append(head + f'  , "values" : [ {", ".join(cells)} ]\n  }}\n')
    return "[\n" + "".join(parts) + "]\n"


def test_trtexec_parity_command_loads_inputs_and_exports_outputs():
    feeds = {
        "image_embeddings": "b/feeds/emb-coffee/image_embeddings.bin",
        "point_coords": "b/pc.bin",
        "point_labels": "b/pl.bin",
    }
    argv = trtexec_parity_command(
        "trtexec", "a/decoder.onnx.fp16.engine", feeds, "p/trtexec/1-x.json", 2
    )
    assert argv[:2] == ["trtexec", "--loadEngine=a/decoder.onnx.fp16.engine"]
    assert (
        "--loadInputs=image_embeddings:b/feeds/emb-coffee/image_embeddings.bin,"
        "point_coords:b/pc.bin,point_labels:b/pl.bin" in argv
    )
    assert "--exportOutput=p/trtexec/1-x.json" in argv and "--iterations=1" in argv
    assert argv[-1] == "--shapes=point_coords:1x2x2,point_labels:1x2"


def test_trtexec_exports_become_judged_outputs(bundle, device_run, reference, tmp_path):
    """The device's own outputs, re-expressed as trtexec JSON, judge the same; a NaN and a truncated
    export fail the decoder's row only."""
    parsed, outputs = Bundle.load(bundle), device_run[0]
    from edgesam_deploy.device.protocol import Results, read_tensor

    device = Results.load(outputs)
    for damage in (None, "nan", "truncated"):
        exports = tmp_path / f"exports-{damage}"
        exports.mkdir()
        for index, artifact in enumerate(parsed.artifacts):
            for case_id in artifact.cases:
                specs = device.artifacts[index].outputs[case_id]
                tensors = {n: read_tensor(outputs, s) for n, s in specs.items()}
                text = _trtexec_json(tensors, nan_at=5 if damage == "nan" else None)
                (exports / export_name(index, case_id)).write_text(
                    text[:-40] if damage == "truncated" and index else text
                )
        converted = tmp_path / f"converted-{damage}"
        trtexec_results(parsed, exports, converted, {}, {"system": "test"}, {"runtime": "tensorrt"})
        encoder, decoder = judge_device_outputs(bundle, converted, reference)
        assert encoder.passed, encoder.failures
        if damage is None:
            assert decoder.passed, decoder.failures
        else:
            reason = (
                "non-finite value" if damage == "nan" else "trtexec output is not complete JSON"
            )
            assert not decoder.passed and reason in decoder.failures[0]


def test_rows_outside_the_protocol_say_why_and_nothing_runs(export):
    manifest = Manifest.load(export)
    decoder = next(r for r in manifest.artifacts if r.role == "decoder")
    refining = dataclasses.replace(decoder, details={**decoder.details, "mask_input": True})
    rows = [ArtifactResult(refining.file, "onnx", "decoder", "fp32", 1, measured=True)]
    request = BenchRequest(export, manifest, [refining], 1, 0)

    def no_reference() -> Reference:
        raise AssertionError("nothing to run: the reference must not be built")

    measure_device_parity(
        LocalRunner(DeviceProfile("host", "local")), request, rows, no_reference, Settings()
    )
    assert rows[0].parity is None and "no previous-mask cases" in rows[0].parity_reason


def test_report_puts_host_and_device_side_by_side(tmp_path):
    """An fp16 encoder that passes on the host and drifts on the ARM board: both, flagged."""
    host = ParitySummary(
        True, {"emb_cosine_min": 0.999998, "mask_iou_mean": 0.9986}, [], "ort", "computed"
    )
    board = ParitySummary(
        False, {"emb_cosine_min": 0.99712, "mask_iou_mean": 0.9712}, ["emb_cosine_min 0.99712"],
        "ort", "computed", "device",
    )  # fmt: skip
    row = ArtifactResult("onnx/encoder.fp16.onnx", "onnx", "encoder", "fp16", 11_000_000)
    row.parity, row.host_parity, row.parity_measured_on = board, host, "device"
    unmeasured = ArtifactResult("onnx/decoder.fp16.onnx", "onnx", "decoder", "fp16", 1)
    unmeasured.parity_reason = "benchmark_model runs .tflite artifacts only"
    report = BenchReport(
        DeviceInfo("board", "ssh"), {"runs": 1, "warmup": 0}, {}, {}, [row, unmeasured]
    )
    write_markdown(tmp_path / "r.md", report)
    text = (tmp_path / "r.md").read_text()
    assert "| device: FAIL: emb_cosine_min 0.99712 (IoU 0.9712) | pass (IoU 0.9986) |" in text
    assert "not measured: benchmark_model runs .tflite artifacts only" in text
    assert "## Parity on this host and on the device" in text
    assert "| 0.999998 / 0.997120 |" in text and "pass / FAIL  <- missed on the host |" in text
