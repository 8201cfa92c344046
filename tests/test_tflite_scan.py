"""The TFLite int8-full sensitivity scan and mixed-precision search, reduced: conformance weights,
one calibration image, two blocks (figures of a larger run: docs/tflite.md)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from scan_checks import check_block_rows, check_greedy_then_search

from edgesam_deploy import api
from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.cli.app import main
from edgesam_deploy.errors import DeployError
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext, OptionsError
from edgesam_deploy.exporters.tflite.convert import TfliteExporter
from edgesam_deploy.exporters.tflite.options import TfliteOptions
from edgesam_deploy.exporters.tflite.search import int8_full_evaluator
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.quantization import equalize, tflite_sensitivity
from edgesam_deploy.quantization.sensitivity import Block, select_blocks
from edgesam_deploy.quantization.tflite_mixed import run_tflite_scan, tflite_search
from edgesam_deploy.quantization.tflite_scan_report import write_scan
from edgesam_deploy.quantization.tflite_sensitivity import op_scopes
from edgesam_deploy.samples import SEARCH_PHOTOS
from edgesam_deploy.vocabulary import Precision

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

BLOCKS = ["block24", "neck"]
ALPHA = 0.6
ONNX_BLOCKS = ["stem", *(f"block{i}" for i in range(1, 27)), "fuse2", "fuse3", "neck"]


@pytest.fixture(scope="module")
def setup(conformance_model, tmp_path_factory):
    """(evaluator at the int8 gate's target, the two blocks, the export's int8-full encoder)."""
    out = tmp_path_factory.mktemp("tflite-scan")
    ctx = ExportContext(
        conformance_model,
        ModelSource("edgesam", "random", seed=0),
        out,
        ExportOptions(calibration_size=1),
    )
    converted: dict[float, bytes] = {}
    exported, _ = TfliteExporter.equalized_int8_encoder(
        ctx, Precision.INT8_FULL, converted, (ALPHA,)
    )
    search = TfliteOptions(("int8-full",), min_iou=0.95, search_images=1)
    ev = int8_full_evaluator(ctx, converted[ALPHA], search)
    return ev, select_blocks(ev.blocks, BLOCKS), exported


def _int8_scopes(model: bytes) -> set[str]:
    """Scopes of the ops (other than the QUANTIZE ops AEQ puts on the boundaries of int8 regions,
    named after the float tensor they read) whose first output is int8."""
    fb = pytest.importorskip("ai_edge_quantizer.utils.tfl_flatbuffer_utils")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flat = fb.read_model(bytearray(model))
    graph, codes = flat.subgraphs[0], flat.operatorCodes
    return {
        fb.get_op_scope(op, graph.tensors)
        for op in graph.operators
        if codes[op.opcodeIndex].builtinCode != schema.BuiltinOperator.QUANTIZE
        and graph.tensors[op.outputs[0]].type == schema.TensorType.INT8
    }


def _int8_blocks(ev, model: bytes) -> set[str]:
    """Names of the blocks with an int8 op (``_int8_scopes``)."""
    return {b.name for b in ev.blocks for s in _int8_scopes(model) if re.search(b.scope, s)}


def test_blocks_are_the_onnx_blocks(setup):
    ev, blocks, exported = setup
    assert [b.name for b in ev.blocks] == ONNX_BLOCKS
    assert all(b.convs > 0 for b in ev.blocks)
    assert len(op_scopes(ev.source)) > sum(b.convs for b in ev.blocks)
    with pytest.raises(DeployError, match="unknown block block99"):
        select_blocks(ev.blocks, ["block99"])
    # step 0 (no block float) is the export's own int8-full encoder, byte for byte
    assert ev.measure([], "0 float").model == exported
    assert _int8_blocks(ev, exported) == set(ONNX_BLOCKS)
    # only block24 int8: its ops are int8, the neck's (and every other block's) are float
    assert _int8_blocks(ev, ev.only(blocks[0]).model) == {"block24"}


def test_neck_holds_the_ops_after_the_other_blocks(setup):
    """The top-level fusion ADD (the neck's input) and the output TRANSPOSE match no module path:
    they count in the neck, so the blocks cover every quantized op, and with the neck float no
    int8 op is left after fuse2 and fuse3."""
    ev, _, exported = setup
    *others, neck = ev.blocks
    scopes = op_scopes(ev.source)
    outside = [(op, s) for op, s in scopes if not any(re.search(b.scope, s) for b in others)]
    assert [op for op, s in outside if "Sequential_neck" not in s] == ["ADD", "TRANSPOSE"]
    assert outside[0][0] == "ADD" and "RepViTEncoder_encoder;" in outside[0][1]
    assert all(re.search(neck.scope, s) for _, s in outside)
    assert scopes[-1] == outside[-1]  # the TRANSPOSE writes the graph's output
    assert sum(b.convs for b in ev.blocks) == ev.quantizable
    assert {s for op, s in outside if op in ("ADD", "TRANSPOSE")} <= _int8_scopes(exported)
    int8 = _int8_scopes(ev.measure([neck], "neck float").model)
    assert int8 and all(any(re.search(b.scope, s) for b in others) for s in int8)


def test_every_block_float_is_the_fp32_encoder(setup):
    """Every block float leaves AEQ nothing to quantize: that step is the fp32 source, measured
    (in the scan's path) without an error; the search refuses it in one line. Two blocks here:
    the neck and the rest of the encoder as one."""
    ev, _, _ = setup
    *others, neck = ev.blocks
    rest = Block("rest", "|".join(b.scope for b in others), sum(b.convs for b in others))
    two = copy.copy(ev)
    two.blocks = [rest, neck]  # the cache is shared: the same name sets are the same graphs
    fp32 = two.measure(two.blocks, "2 float")
    assert fp32.model == ev.source and fp32.details["recipe"] is None
    assert fp32.metrics["emb_cosine_min"] > 0.9999
    two.target = {"emb_cosine_min": (">=", fp32.metrics["emb_cosine_min"])}
    scan = run_tflite_scan(two, two.blocks, runs=1)
    assert scan.path[-1].model == ev.source and set(scan.path[-1].floated) == {"rest", "neck"}
    assert scan.path[-1].meets and not any(m.meets for m in scan.path[:-1])
    with pytest.raises(DeployError, match="only with every op float, which is the fp32 encoder"):
        tflite_search(two, runs=1)


def test_scan_table(setup, tmp_path):
    ev, blocks, _ = setup
    ev.target = {**ev.target, "mask_iou_mean": (">=", 0.95)}
    scan = run_tflite_scan(ev, blocks, runs=1)
    paths = write_scan(scan, tmp_path)
    table = json.loads(paths[0].read_text())
    check_block_rows(table, BLOCKS)
    assert table["candidates"][0]["label"] == "0 float"
    assert table["target"]["mask_iou_mean"] == [">=", 0.95]
    assert table["target_met"] == table["candidates"][-1]["meets_target"]
    assert table["fp32_latency_ms_median"] > 0
    assert "| rank | block |" in paths[1].read_text()
    assert paths[2].read_bytes()[:4] == b"\x89PNG"


def test_greedy_floats_the_most_sensitive_block_first(setup):
    """A target between step 0 and the most sensitive block kept float: the path stops at step 1
    with exactly that block float; an unreachable target floats both and errors in the search."""
    ev, blocks, _ = setup
    order, details = check_greedy_then_search(ev, blocks, tflite_search)
    assert list(details["float_scopes"]) == [order[0].scope]
    ev.target = {"mask_iou_mean": (">=", 1.01)}
    with pytest.raises(DeployError, match="not met"):
        tflite_search(ev, runs=1, blocks=blocks)


def test_export_records_the_search(conformance_model, monkeypatch, tmp_path: Path):
    """``--min-iou`` on int8-full: the encoder is searched (over two blocks here) and the manifest
    records the choice and the recipe that made the file."""
    real = tflite_sensitivity.tflite_blocks
    monkeypatch.setattr(
        tflite_sensitivity, "tflite_blocks", lambda m: select_blocks(real(m), BLOCKS)
    )
    monkeypatch.setattr(equalize, "ALPHA_CANDIDATES", (ALPHA,))
    out = tmp_path / "out"
    api.export(
        out,
        "tflite",
        precision="int8-full",
        num_points=2,
        calibration_size=1,
        min_iou=0.9,
        search_margin=0.0,
        search_images=1,
        parity=False,
        model=(conformance_model, ModelSource("edgesam", "random", seed=0)),
    )
    (encoder,) = [a for a in Manifest.load(out).artifacts if a.role == "encoder"]
    record = encoder.details["mixed_precision"]
    assert record["target"]["mask_iou_mean"] == [">=", 0.9]
    assert record["search_margin"] == 0.0 and record["scored_on"] == [next(iter(SEARCH_PHOTOS))]
    assert set(record["block_alone_int8"]) == set(BLOCKS)
    assert record["steps"][-1]["meets_target"] and record["steps"][0]["label"] == "0 float"
    assert len(record["float_scopes"]) == len(record["blocks_kept_float"])
    policy = tflite_sensitivity.TflitePolicy(record["float_scopes"])
    assert encoder.details["quantization"]["recipe"] == policy.recipe()


def test_min_iou_option_is_checked():
    assert TfliteOptions(("int8-full",), min_iou=0.97).min_iou == 0.97
    with pytest.raises(OptionsError, match="must be in"):
        TfliteOptions(("int8-full",), min_iou=1.01)


def test_quantize_scan_cli_on_tflite(tmp_path: Path, capsys):
    """``quantize-scan --target tflite``, reduced: one block, one calibration image, one held-out
    photo; the report names the runtime's blocks and photos."""
    out = tmp_path / "scan"
    argv = ["quantize-scan", "--target", "tflite", "--out", str(out), "--blocks", "neck"]
    argv += ["--calibration-size", "1", "--search-images", "1", "--alpha", "0.6", "--runs", "1"]
    assert main([*argv, "--random-weights", "0"]) == 0
    table = json.loads((out / "scan.json").read_text())
    assert [r["block"] for r in table["blocks"]] == ["neck"]
    assert table["candidates"][0]["label"] == "0 float"
    assert "block(s) scanned" in capsys.readouterr().out


def test_quantize_scan_refuses_other_targets(tmp_path: Path, capsys):
    assert main(["quantize-scan", "--target", "coreml", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quantize-scan takes onnx, tflite or executorch" in err[0]
