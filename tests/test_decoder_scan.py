"""The ONNX decoder's int8 scan and search, reduced: seeded weights, one calibration image (five
decoder feeds), one held-out scoring photo, two blocks (the full scan: docs/mixed-precision.md,
"Decoder")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgesam_deploy import api
from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.cli.app import main
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext
from edgesam_deploy.exporters.onnx.convert import (
    DECODER_ATTENTION,
    OPSET,
    OnnxExporter,
    decoder_int8_policy,
    decoder_int8_source,
    int8_evaluator,
)
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.quantization import equalize, sensitivity
from edgesam_deploy.quantization.decoder_blocks import BLOCK_ORDER
from edgesam_deploy.quantization.mixed import (
    DECODER_MIN_SPEEDUP,
    greedy,
    run_scan,
    search_decoder,
)
from edgesam_deploy.quantization.onnx_quant import graph_outputs
from edgesam_deploy.quantization.scan_report import write_scan
from edgesam_deploy.quantization.search_target import search_target
from edgesam_deploy.quantization.sensitivity import select_blocks
from edgesam_deploy.samples import SEARCH_PHOTOS
from edgesam_deploy.vocabulary import Precision, Role

BLOCKS = ["layer1.mlp", "upscaling"]
QUANTIZED = ("MatMul", "Gemm")


@pytest.fixture(scope="module")
def setup(random_model, tmp_path_factory):
    """(a decoder evaluator at the int8 gate's mean IoU, scoring on one held-out photo; the fp32
    decoder the export writes)."""
    out = tmp_path_factory.mktemp("decscan")
    seeded = ModelSource("edgesam", "random", seed=0)
    ctx = ExportContext(random_model, seeded, out, ExportOptions(calibration_size=1))
    options = OnnxOptions((Precision.INT8_STATIC,), min_iou=0.95, search_images=1)
    fp32 = OnnxExporter._trace(
        ctx.graph(Role.DECODER, DECODER_ATTENTION), ctx.spec(Role.DECODER), OPSET
    )
    source = decoder_int8_source(ctx, fp32)
    ev = int8_evaluator(ctx, source, decoder_int8_policy(), options, out, Role.DECODER)
    return ev, fp32


@pytest.fixture
def ev(setup):
    return setup[0]


def _quantized_nodes(model) -> list[str]:
    """Names of the MatMul / Gemm nodes that read a DequantizeLinear output (run in int8)."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [
        n.name for n in model.graph.node if n.op_type in QUANTIZED and any(i in dq for i in n.input)
    ]


def test_blocks_cover_every_product(setup):
    """Thirteen blocks in their order, every MatMul / Gemm in exactly one of them, and the
    renaming changes no output."""
    ev, fp32 = setup
    assert [b.name for b in ev.blocks] == list(BLOCK_ORDER)
    products = [n for n in ev.source.graph.node if n.op_type in QUANTIZED]
    assert sum(b.convs for b in ev.blocks) == len(products)
    counts = {b.name: b.convs for b in ev.blocks}
    assert counts["prompt"] == 1 and counts["layer0.mlp"] == counts["layer1.mlp"] == 2
    assert counts["hypernetworks"] == 12 and counts["iou_head"] == 3
    for node in products:
        assert sum(node.name.startswith(b.scope) for b in ev.blocks) == 1, node.name
    feed = next(iter(ev.timing_feeds.values()))
    assert set(ev.timing_feeds) == {"1 point", "16 points"}
    assert feed["point_coords"].shape == (1, 2, 2)  # one click and the padding point
    renamed = [(a.name, b.name) for a, b in zip(fp32.graph.node, ev.source.graph.node)]
    assert all(new == old or new.endswith("/" + old.lstrip("/")) for old, new in renamed)
    a, b = graph_outputs(ev.source, [feed]), graph_outputs(fp32, [feed])
    assert all(np.array_equal(a[0][k], b[0][k]) for k in ("scores", "masks"))


def test_single_block_graph_quantizes_that_block_only(ev):
    """The graph of one block alone int8 runs exactly that block's products in int8; all-int8
    runs every product in int8; and both are judged on the scoring photo's prompt cases."""
    block = select_blocks(ev.blocks, ["layer1.mlp"], Role.DECODER)[0]
    alone = ev.only(block)
    quantized = _quantized_nodes(alone.model)
    assert len(quantized) == block.convs and all(n.startswith(block.scope) for n in quantized)
    everything = ev.measure([], "0 float")
    assert len(_quantized_nodes(everything.model)) == sum(b.convs for b in ev.blocks)
    assert set(alone.statistics()) == {"score_max_abs", "mask_iou_mean", "mask_iou_min"}
    assert 0.0 <= everything.metrics["mask_iou_mean"] <= alone.metrics["mask_iou_mean"] <= 1.0
    assert ev.reference.photo_names == list(SEARCH_PHOTOS)[:1]


def test_target_is_the_decoder_gate(ev):
    assert set(ev.target) == {"mask_iou_mean", "mask_iou_min", "score_max_abs"}
    assert ev.target == search_target(0.95, role=Role.DECODER)
    assert ev.target["mask_iou_min"] == (">=", 0.95)  # the gate's 0.80 plus the default margin


def test_greedy_stops_at_the_first_step_that_meets(ev):
    blocks = select_blocks(ev.blocks, BLOCKS, Role.DECODER)
    saved = ev.target
    try:
        ev.target = {"mask_iou_mean": (">=", 1.01)}
        path = greedy(ev, blocks)
        assert len(path) == 3 and not any(m.meets for m in path)
        assert [len(m.floated) for m in path] == [0, 1, 2]
        means = [m.metrics["mask_iou_mean"] for m in path]
        # a target between the all-int8 graph and the best step: greedy stops at the first step
        # reaching it
        goal = max(means[1:])
        assert goal > means[0]
        ev.target = {"mask_iou_mean": (">=", goal)}
        stop = next(k for k, m in enumerate(means) if m >= goal)
        assert len(greedy(ev, blocks)) == stop + 1
    finally:
        ev.target = saved


def test_search_keeps_fp32_unless_met_and_faster(ev):
    saved, saved_blocks = ev.target, ev.blocks
    ev.blocks = select_blocks(ev.blocks, BLOCKS, Role.DECODER)
    try:
        ev.target = {"mask_iou_mean": (">=", 1.01)}
        chosen, details = search_decoder(ev, runs=1)
        assert chosen is None and details["kept"] == "fp32"
        assert details["note"].startswith("fp32 decoder kept: no int8 decoder met the target")
        ev.target = {"mask_iou_mean": (">=", 0.0)}
        chosen, details = search_decoder(ev, runs=1)
        ms = details["latency_ms_median_by_feed"]
        assert set(ms) == {"1 point", "16 points"}
        faster = all(v["fp32"] >= DECODER_MIN_SPEEDUP * v["searched"] for v in ms.values())
        assert (chosen is not None) == faster
        assert details["kept"] == ("searched" if faster else "fp32")
        assert details["blocks_kept_float"] == [] and len(details["steps"]) == 1
        assert ("note" in details) == (not faster)
    finally:
        ev.target, ev.blocks = saved, saved_blocks


def test_scan_table(ev, tmp_path):
    scan = run_scan(ev, select_blocks(ev.blocks, BLOCKS, Role.DECODER), None, runs=1)
    paths = write_scan(scan, tmp_path)
    table = json.loads(paths[0].read_text())
    assert table["graph"] == "decoder"
    assert [r["block"] for r in table["blocks"]] == BLOCKS
    assert all(r["matmuls"] > 0 and 0 <= r["score_max_abs"] for r in table["blocks"])
    assert set(table["latency_ms_median_by_feed"]) == {"1 point", "16 points"}
    assert [c["label"] for c in table["candidates"]][0] == "0 float"
    assert all(
        set(c["speedup_vs_fp32_by_feed"]) == {"1 point", "16 points"} for c in table["candidates"]
    )
    md = paths[1].read_text()
    assert "| rank | block | matmuls | score max abs |" in md and "| 16 points ms |" in md


def test_export_records_the_decoder_search(conformance_model, monkeypatch, tmp_path: Path):
    """``export --precision int8-static --min-iou``: the decoder is searched too (two blocks here,
    the encoder over its neck), and the file written is the one the record says it kept: the
    int8 decoder only where it met the target and ran faster, else the fp32 decoder with why."""
    real = sensitivity.graph_blocks
    keep = {Role.ENCODER: ["neck"], Role.DECODER: BLOCKS}

    def few(model, op_types, role=Role.ENCODER):
        return [b for b in real(model, op_types, role) if b.name in keep[role]]

    monkeypatch.setattr(sensitivity, "graph_blocks", few)
    monkeypatch.setattr(equalize, "ALPHA_CANDIDATES", (0.6,))
    out = tmp_path / "out"
    api.export(
        out,
        "onnx",
        precision="int8-static",
        calibration_size=1,
        min_iou=0.5,
        search_margin=0.0,
        search_images=1,
        parity=False,
        model=(conformance_model, ModelSource("edgesam", "random", seed=0)),
    )
    (decoder,) = [a for a in Manifest.load(out).artifacts if a.role == "decoder"]
    record = decoder.details["mixed_precision"]
    assert record["target"] == {
        "mask_iou_mean": [">=", 0.5],
        "mask_iou_min": [">=", 0.8],
        "score_max_abs": ["<=", 0.05],
    }
    assert set(record["block_alone_int8"]) == set(BLOCKS)
    assert set(record["latency_ms_median_by_feed"]) == {"1 point", "16 points"}
    assert record["scored_on"] == list(SEARCH_PHOTOS)[:1]
    written = onnx.load(str(out / decoder.file))
    int8 = any(n.op_type == "DequantizeLinear" for n in written.graph.node)
    assert int8 == (record["kept"] == "searched")
    assert (decoder.details.get("weights") == "float32") == (not int8)
    if not int8:
        assert decoder.details["int8_decoder"] == record["note"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--graph", "decoder", "--blocks", "upscaling,neck"], "unknown block neck"),
        (
            ["--graph", "decoder", "--target", "tflite"],
            "--graph decoder: scanned for --target onnx",
        ),
        (["--graph", "head"], "--graph head: quantize-scan takes encoder or decoder"),
        (["--graph", "decoder", "--alpha", "0.5"], "the encoder's scan options"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path: Path, capsys):
    out = str(tmp_path / "o")
    assert main(["quantize-scan", *args, "--out", out, "--random-weights", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
