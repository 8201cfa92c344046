"""The ExecuTorch int8-static sensitivity scan and mixed-precision search, reduced: conformance
weights, one calibration image, one held-out photo, two blocks, every candidate a lowered ``.pte``
(figures of a larger run: docs/executorch.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scan_checks import check_greedy_then_search

from edgesam_deploy import api
from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.cli.app import main
from edgesam_deploy.errors import DeployError
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext, OptionsError
from edgesam_deploy.exporters.executorch import convert, search
from edgesam_deploy.exporters.executorch.convert import ExecutorchExporter
from edgesam_deploy.exporters.executorch.options import ExecutorchOptions
from edgesam_deploy.exporters.executorch.quantize import quantize_int8
from edgesam_deploy.exporters.executorch.search import int8_evaluator, write_scan
from edgesam_deploy.exporters.onnx.convert import INT8_OPSET, OnnxExporter, encoder_int8_policy
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.quantization.mixed import path_search, run_path_scan
from edgesam_deploy.quantization.search_target import search_target
from edgesam_deploy.quantization.sensitivity import graph_blocks, select_blocks
from edgesam_deploy.samples import SEARCH_PHOTOS
from edgesam_deploy.vocabulary import Precision, Role

pytest.importorskip("executorch.runtime")
pytest.importorskip("torchao")

BLOCKS = ["block24", "neck"]
ALPHA = 0.5
SOURCE = ModelSource("edgesam", "random", seed=0)
# slow: each candidate is a full calibration and lowering of the encoder (35 s idle); the export
# and CLI tests reuse the module's evaluator (``reuse_evaluator``), so its candidates are lowered
# once for the whole module


@pytest.fixture(scope="module")
def setup(conformance_model, tmp_path_factory):
    """(evaluator at mean IoU 0.95, the two blocks, the export's own int8-static encoder, its
    context)."""
    out = tmp_path_factory.mktemp("executorch-scan")
    ctx = ExportContext(conformance_model, SOURCE, out, ExportOptions(calibration_size=1))
    search = ExecutorchOptions((Precision.INT8_STATIC,), min_iou=0.95, search_images=1)
    exported, _, details = ExecutorchExporter.int8_encoder(ctx, search, (ALPHA,))
    assert details["equalization"]["alpha"] == ALPHA
    ev = int8_evaluator(ctx, ALPHA, search)
    return ev, select_blocks(ev.blocks, BLOCKS), exported, ctx


@pytest.fixture
def reuse_evaluator(setup, monkeypatch):
    """The export and the CLI judge with the module's evaluator (the same weights, calibration
    image and scoring photo; its candidates already lowered) under their own target, instead of
    calibrating and lowering every candidate again."""
    ev = setup[0]

    def reuse(ctx, alpha, options):
        assert alpha == ALPHA and options.search_images == 1
        ev.target = search_target(options.min_iou, options.margin)
        return ev

    monkeypatch.setattr(search, "int8_evaluator", reuse)
    return ev


def _int8_blocks(ev, float_modules: list[str]) -> set[str]:
    """Names of the blocks of the pt2e-quantized encoder (``float_modules`` float) that hold an
    int8 weight (read through a per-channel dequantize) or an activation quantized between two
    of their own ops; the quantize / dequantize on a float block's borders belong to its
    neighbours."""
    graph = quantize_int8(ev.source, ev.spec, ev.feeds, ev.max_points, float_modules)

    def block_of(node) -> str | None:
        paths = {p for p, _ in node.meta.get("nn_module_stack", {}).values()}
        return next((b.name for b in ev.blocks if b.scope in paths), None)

    found = set()
    for node in graph.graph.nodes:
        block = block_of(node)
        if node.op != "call_function" or block is None:
            continue
        weights = any("dequantize_per_channel" in str(a.target) for a in node.all_input_nodes)
        inner = any(
            str(q.target).startswith("quantized_decomposed.quantize_")
            and any(block_of(v) == block for dq in q.users for v in dq.users)
            for q in node.users
        )
        if weights or inner:
            found.add(block)
    return found


@pytest.mark.slow
def test_blocks_are_the_onnx_blocks(setup):
    """The blocks, named from ``torch.export``'s module paths, are the ONNX encoder's (found from
    its node scopes; each graph lists them in its own topological order)."""
    ev, _, _, ctx = setup
    traced = OnnxExporter._trace(ctx.encoder_graph, ctx.spec(Role.ENCODER), INT8_OPSET)
    onnx_names = [b.name for b in graph_blocks(traced, encoder_int8_policy().op_types)]
    names = [b.name for b in ev.blocks]
    assert sorted(names) == sorted(onnx_names) and len(set(names)) == len(names) == 30
    assert all(b.convs > 0 for b in ev.blocks)
    assert ev.blocks[-1].scope == "encoder.neck" and ev.blocks[0].scope == "encoder.features.0"
    with pytest.raises(DeployError, match="unknown block block99"):
        select_blocks(ev.blocks, ["block99"])


@pytest.mark.slow
def test_a_float_block_has_no_int8_op(setup):
    """In the quantized graph (before lowering): every block int8 by default; block24 float
    leaves it no int8 weight and no quantized activation inside, the others unchanged; every
    other block float leaves only block24 int8."""
    ev, (block24, _), _, _ = setup
    names = {b.name for b in ev.blocks}
    assert _int8_blocks(ev, []) == names
    assert _int8_blocks(ev, [block24.scope]) == names - {"block24"}
    others = [b.scope for b in ev.blocks if b != block24]
    assert _int8_blocks(ev, others) == {"block24"}


@pytest.mark.slow
def test_step0_is_the_exported_encoder(setup):
    """Step 0 (no block float) is the export's own int8-static ``.pte``, byte for byte, and the
    single-block candidate is a different, larger program (a float block keeps fp32 weights)."""
    ev, (block24, _), exported, _ = setup
    step0 = ev.measure([], "0 float")
    assert step0.model == exported
    alone = ev.only(block24)
    assert alone.model != exported and len(alone.model) > len(exported)
    assert set(alone.details["float_modules"]) == {b.scope for b in ev.blocks if b != block24}
    assert alone.details["census"].partitions == {"XnnpackBackend": 1}


@pytest.mark.slow
def test_greedy_floats_the_most_sensitive_block_first(setup, tmp_path):
    """A target between step 0 and the most sensitive block kept float: the path stops at step 1
    with exactly that block float; the scan's table records the same path; an unreachable target
    floats both and errors in the search."""
    ev, blocks, _, _ = setup
    order, _ = check_greedy_then_search(ev, blocks, path_search)
    table = json.loads(write_scan(run_path_scan(ev, blocks, runs=1), tmp_path)[0].read_text())
    assert [c["floated"] for c in table["candidates"]] == [[], [order[0].name]]
    assert table["target_met"] and "ExecuTorch" in table["runtime"]
    assert "| rank | block |" in (tmp_path / "scan.md").read_text()
    ev.target = {"mask_iou_mean": (">=", 1.01)}
    with pytest.raises(DeployError, match="not met"):
        path_search(ev, runs=1, blocks=blocks)


@pytest.mark.slow
def test_export_records_the_search(conformance_model, reuse_evaluator, monkeypatch, tmp_path: Path):
    """``--min-iou`` on int8-static: the encoder is searched (over two blocks here) and the
    manifest records the choice and the float modules of the written program."""
    real = search.path_search
    monkeypatch.setattr(
        search,
        "path_search",
        lambda ev, runs, progress: real(ev, runs, progress, select_blocks(ev.blocks, BLOCKS)),
    )
    monkeypatch.setattr(convert, "INT8_ALPHAS", (ALPHA,))
    out = tmp_path / "out"
    api.export(
        out,
        "executorch",
        precision="int8-static",
        max_points=2,
        calibration_size=1,
        min_iou=0.5,
        search_margin=0.0,
        search_images=1,
        parity=False,
        model=(conformance_model, SOURCE),
    )
    (encoder,) = [a for a in Manifest.load(out).artifacts if a.role == "encoder"]
    record = encoder.details["mixed_precision"]
    assert record["target"]["mask_iou_mean"] == [">=", 0.5]
    assert record["search_margin"] == 0.0 and record["scored_on"] == [next(iter(SEARCH_PHOTOS))]
    assert set(record["block_alone_int8"]) == set(BLOCKS)
    assert record["steps"][-1]["meets_target"] and record["steps"][0]["label"] == "0 float"
    assert len(record["float_modules"]) == len(record["blocks_kept_float"])
    assert encoder.details["quantization"]["float_modules"] == record["float_modules"]
    assert encoder.details["total_partitions"] == 1


def test_min_iou_option_is_checked():
    assert ExecutorchOptions(("int8-static",), min_iou=0.97).min_iou == 0.97
    assert ExecutorchOptions(("int8-static",), 8).max_points == 8
    with pytest.raises(OptionsError, match="must be in"):
        ExecutorchOptions(("int8-static",), min_iou=1.01)
    with pytest.raises(OptionsError, match="tune --min-iou"):
        ExecutorchOptions(("int8-static",), search_images=2)


@pytest.mark.slow
def test_quantize_scan_cli_on_executorch(reuse_evaluator, tmp_path: Path, capsys):
    """``quantize-scan --target executorch``, reduced: one block, one calibration image, one
    held-out photo; the report names the runtime's blocks, step 0 and the fp32 timing."""
    out = tmp_path / "scan"
    argv = ["quantize-scan", "--target", "executorch", "--out", str(out), "--blocks", "neck"]
    argv += ["--calibration-size", "1", "--search-images", "1", "--alpha", "0.5", "--runs", "1"]
    assert main([*argv, "--random-weights", "0"]) == 0
    table = json.loads((out / "scan.json").read_text())
    assert [r["block"] for r in table["blocks"]] == ["neck"]
    assert table["candidates"][0]["label"] == "0 float"
    assert table["fp32_latency_ms_median"] > 0 and table["facts"]["equalization_alpha"] == 0.5
    assert "block(s) scanned" in capsys.readouterr().out
