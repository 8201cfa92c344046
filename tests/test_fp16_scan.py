"""The fp16 sensitivity scan, reduced: conformance weights, one calibration image, one held-out
scoring photo, two blocks (the full scan's figures: docs/mixed-precision.md)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from edgesam_deploy.bench.host import host_machine
from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.cli.app import main
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext
from edgesam_deploy.exporters.onnx.convert import FP16_GUARD_IMAGES, fp16_evaluator, fp16_policy
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.quantization.mixed import greedy, run_scan
from edgesam_deploy.quantization.onnx_quant import to_fp16
from edgesam_deploy.quantization.scan_report import write_scan
from edgesam_deploy.quantization.sensitivity import floating, select_blocks
from edgesam_deploy.samples import SEARCH_PHOTOS
from edgesam_deploy.vocabulary import Precision

BLOCKS = ["block3", "neck"]
FLOAT, HALF = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def scanned(conformance_model, tmp_path_factory):
    """(the scan of two blocks at the fp16 gate's mean IoU on one scoring photo, its evaluator,
    the export's context)."""
    out = tmp_path_factory.mktemp("fp16scan")
    ctx = ExportContext(
        conformance_model,
        ModelSource("edgesam", "random", seed=0),
        out,
        ExportOptions(calibration_size=FP16_GUARD_IMAGES),
    )
    search = OnnxOptions((Precision.FP16,), min_iou=0.99, search_images=1)
    ev = fp16_evaluator(ctx, search, out)
    scan = run_scan(ev, select_blocks(ev.blocks, BLOCKS), ev.base, runs=1)
    return scan, ev, ctx


def _conv_weight_types(model: onnx.ModelProto, scope: str) -> set[int]:
    """Element types of the weights of the convolutions under ``scope``."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    return {
        inits[n.input[1]]
        for n in model.graph.node
        if n.op_type == "Conv" and n.name.startswith(scope) and n.input[1] in inits
    }


def test_step_zero_is_the_exports_fp16_encoder(scanned):
    """Nothing kept float32: byte for byte the export's own fp16 encoder (same policy, same
    overflow guard on the same calibration images)."""
    scan, ev, ctx = scanned
    feeds = [{"image": img} for img in ctx.calibration_images]
    exported, _ = to_fp16(ev.source, fp16_policy(), feeds)
    assert scan.path[0].floated == () and scan.hand_picked.label == "hand-picked"
    for found in (scan.path[0].model, scan.hand_picked.model):
        assert found.SerializeToString() == exported.SerializeToString()


def test_a_floated_block_keeps_float32_weights(scanned):
    """The block kept float: its conv weights stay float32, the others' become fp16, and the
    record names the scope."""
    scan, ev, _ = scanned
    neck = next(b for b in scan.blocks if b.name == "neck")
    other = next(b for b in scan.blocks if b.name == "block3")
    only_block3 = scan.single["block3"]  # every block but block3 float32
    assert _conv_weight_types(only_block3.model, other.scope) == {HALF}
    assert _conv_weight_types(only_block3.model, neck.scope) == {FLOAT}
    assert only_block3.details["fp32_kept_scopes"]["scopes"] == {
        b.scope: floating(fp16_policy(), [b]).exclude_scopes[b.scope]
        for b in ev.blocks
        if b.name != "block3"
    }
    assert _conv_weight_types(scan.path[0].model, neck.scope) == {HALF}


def test_scan_table(scanned, tmp_path):
    scan, _, _ = scanned
    paths = write_scan(scan, tmp_path)
    table = json.loads(paths[0].read_text())
    assert table["precision"] == "fp16" and [r["block"] for r in table["blocks"]] == BLOCKS
    for row in table["blocks"]:
        assert row["profile_fp32_ms"] > 0 and row["profile_fp16_ms"] > 0
        assert 0.0 <= row["mask_iou_min"] <= row["mask_iou_mean"] <= 1.0
    assert table["target"]["mask_iou_min"] == [">=", 0.95]  # the fp16 floor 0.90 + 0.05
    md = paths[1].read_text()
    assert md.startswith("# fp16 sensitivity scan") and "| fp16 ms |" in md


def test_profile_counts_ops_run_between_casts_in_their_block(scanned):
    """ONNX Runtime runs fp16 convolutions in float32 between inserted Casts and renames them:
    they still count in their block, not in ``other`` (most of the fp16 time went there)."""
    scan, _, _ = scanned
    fp16 = scan.profile_ms["fp16"]
    assert fp16["other"] < 0.5 * sum(fp16.values())


def test_greedy_keeps_blocks_float32_until_the_target(scanned):
    """An unreachable target floats every scanned block, in sensitivity order; target 0 none."""
    scan, ev, _ = scanned
    blocks = select_blocks(scan.blocks, scan.order)
    ev.target = {"mask_iou_mean": (">=", 1.01)}
    path = greedy(ev, blocks)
    assert [m.floated for m in path] == [(), (scan.order[0],), tuple(scan.order)]
    ev.target = {"mask_iou_mean": (">=", 0.0)}
    assert [m.floated for m in greedy(ev, blocks)] == [()]

    ev.target = scan.target


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fp16", "--target", "tflite"], "--fp16: the fp16 scan is for onnx"),
        (["--fp16", "--alpha", "0.5"], "--alpha: equalization belongs to the int8 scan"),
        (["--fp16", "--search-margin", "0.15"], "--search-margin 0.15: must be in [0, 0.1]"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path: Path, capsys):
    out = tmp_path / "o"
    assert main(["quantize-scan", *args, "--out", str(out), "--random-weights", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_cli_scan(tmp_path: Path, capsys):
    """A real ``quantize-scan --fp16`` of one block on one photo writes the three files."""
    out = tmp_path / "scan"
    args = ["quantize-scan", "--fp16", "--blocks", "neck", "--search-images", "1"]
    args += ["--calibration-size", "1", "--runs", "1", "--out", str(out), "--random-weights", "0"]
    assert main(args) == 0, capsys.readouterr().err
    table = json.loads((out / "scan.json").read_text())
    assert table["precision"] == "fp16" and [r["block"] for r in table["blocks"]] == ["neck"]
    assert table["facts"]["calibration_images"] == 1
    assert table["facts"]["scored_on"] == list(SEARCH_PHOTOS)[:1]
    assert table["facts"]["search_margin"] == 0.05
    # the latencies say which machine timed them (this host), in the JSON and the Markdown
    machine = host_machine()  # its clock may move between reads: compare the rest
    assert {k: v for k, v in table["machine"].items() if k != "cpu_mhz"} == {
        k: v for k, v in machine.items() if k != "cpu_mhz"
    }
    assert table["facts"]["timed_on"]
    assert f"timed_on {table['facts']['timed_on']}" in (out / "scan.md").read_text()
    assert {p.name for p in out.iterdir()} == {"scan.json", "scan.md", "scan.png"}
