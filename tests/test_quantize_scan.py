"""The int8 sensitivity scan and the mixed-precision search, reduced: conformance weights, one
calibration image, one held-out scoring photo, two blocks (the full scan's figures:
docs/mixed-precision.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from scan_checks import check_block_rows, check_speed

from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.cli.app import main
from edgesam_deploy.errors import DeployError
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext, OptionsError
from edgesam_deploy.exporters.onnx.convert import (
    encoder_int8_policy,
    hand_picked_int8_encoder,
    int8_evaluator,
)
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.parity.thresholds import thresholds_for
from edgesam_deploy.quantization.mixed import greedy, run_scan, search
from edgesam_deploy.quantization.scan_report import write_scan
from edgesam_deploy.quantization.search_target import SEARCH_MARGIN, search_target
from edgesam_deploy.quantization.sensitivity import select_blocks
from edgesam_deploy.samples import CALIBRATION_PHOTOS, PARITY_PHOTOS, SEARCH_PHOTOS
from edgesam_deploy.vocabulary import Precision, Role

BLOCKS = ["block24", "neck"]


@pytest.fixture(scope="module")
def setup(conformance_model, tmp_path_factory):
    """(evaluator at the int8 gate's mean IoU with the default margin, scoring on one held-out
    photo; the two blocks; the hand-picked int8 model)."""
    out = tmp_path_factory.mktemp("scan")
    options = ExportOptions(calibration_size=1)
    ctx = ExportContext(conformance_model, ModelSource("edgesam", "random", seed=0), out, options)
    policy = encoder_int8_policy()
    hand, _, source = hand_picked_int8_encoder(ctx, policy, alphas=(0.6,))
    search_options = OnnxOptions((Precision.INT8_STATIC,), min_iou=0.95, search_images=1)
    ev = int8_evaluator(ctx, source, policy, search_options, out)
    return ev, select_blocks(ev.blocks, BLOCKS), hand


def test_scored_on_held_out_photos(setup):
    """Ranges come from the calibration image, the judgement from a photo that is neither a
    calibration nor a parity photo."""
    ev, _, _ = setup
    assert ev.calibrated_on == list(CALIBRATION_PHOTOS)[:1]
    assert ev.reference.photo_names == list(SEARCH_PHOTOS)[:1]
    assert {c.name for c in ev.reference.cases} == set(ev.reference.photo_names)
    assert not set(SEARCH_PHOTOS) & (set(CALIBRATION_PHOTOS) | set(PARITY_PHOTOS))


def test_margin_raises_only_the_search_floor(setup):
    """The min-IoU floor of the target is the gate's plus the margin (the gate is unchanged): a
    graph whose min IoU is between the two meets the gate's floor but not the target."""
    ev, _, _ = setup
    gate = thresholds_for(Precision.INT8_STATIC, Role.ENCODER)
    floor = gate["mask_iou_min"][1]
    assert ev.target["mask_iou_min"] == (">=", round(floor + SEARCH_MARGIN, 6))
    assert ev.target["emb_cosine_min"] == gate["emb_cosine_min"] and floor == 0.80
    measured = ev.measure([], "0 float").metrics["mask_iou_min"]
    assert floor + 0.01 < measured  # conformance weights: room for margins either side
    below, above = measured - floor - 0.01, min(measured - floor + 0.01, 0.2)
    fails = {}
    for margin in (below, above):
        ev.target = search_target(0.01, margin)
        fails[margin] = " ".join(ev.measure([], "0 float").failures)
    ev.target = search_target(0.95)  # as the fixture made it, for the tests after this one
    assert "mask_iou_min" not in fails[below] and "mask_iou_min" in fails[above]


def test_blocks_cover_the_encoder(setup):
    ev, _, _ = setup
    names = [b.name for b in ev.blocks]
    assert names[0] == "stem" and names[-1] == "neck" and "block26" in names and "fuse2" in names
    assert all(b.convs > 0 for b in ev.blocks)
    with pytest.raises(DeployError, match="unknown block block99"):
        select_blocks(ev.blocks, ["block99"])


def test_scan_table(setup, tmp_path):
    """The table's structure; its hand-picked graph (ranges calibrated once and cached, as every
    graph of the scan) equals the export's own quantize_int8_static graph."""
    ev, blocks, hand = setup
    scan = run_scan(ev, blocks, ev.base, runs=1)
    as_bytes = lambda m: {i.name: i.raw_data for i in m.graph.initializer}  # noqa: E731
    assert as_bytes(scan.hand_picked.model) == as_bytes(hand)
    assert [n.op_type for n in scan.hand_picked.model.graph.node] == [
        n.op_type for n in hand.graph.node
    ]
    paths = write_scan(scan, tmp_path)
    table = json.loads(paths[0].read_text())
    check_block_rows(table, BLOCKS)
    assert all(row["profile_fp32_ms"] > 0 for row in table["blocks"])
    labels = [c["label"] for c in table["candidates"]]
    assert labels[0] == "0 float" and labels[-1] == "hand-picked"
    assert table["target"]["mask_iou_mean"] == [">=", 0.95]
    assert table["target_met"] == table["candidates"][-2]["meets_target"]
    assert "| rank | block |" in paths[1].read_text()
    assert paths[2].read_bytes()[:4] == b"\x89PNG"


def test_greedy_stops_at_the_first_step_that_meets(setup):
    ev, blocks, _ = setup
    ev.target = {"mask_iou_mean": (">=", 0.0)}
    assert [m.floated for m in greedy(ev, blocks)] == [()]  # target 0: nothing float
    ev.target = {"mask_iou_mean": (">=", 1.01)}
    path = greedy(ev, blocks)
    assert [m.floated for m in path] == [(), ("block24",), ("block24", "neck")]
    assert not any(m.meets for m in path)


def test_search(setup):
    """Target 0: nothing float, the choice and its cost recorded; 1.01: an error."""
    ev, blocks, hand = setup
    ev.target = {"mask_iou_mean": (">=", 0.0)}
    hand_m = ev.judge_model(hand, "hand-picked")
    chosen, details = search(ev, hand_m, runs=1, blocks=blocks)
    assert details["blocks_kept_float"] == [] and len(details["steps"]) == 1
    assert details["calibrated_on"] == ev.calibrated_on
    assert details["scored_on"] == list(SEARCH_PHOTOS)[:1]
    ms = details["latency_ms_median"]
    assert details["kept"] == ("hand-picked" if ms["hand-picked"] < ms["searched"] else "searched")
    assert (chosen is hand_m) == (details["kept"] == "hand-picked")
    check_speed(details, details["kept"])
    assert isinstance(chosen.model, onnx.ModelProto)
    assert set(details["block_alone_int8"]) == set(BLOCKS)
    assert np.isfinite(list(ms.values())).all()
    ev.target = {"mask_iou_mean": (">=", 1.01)}
    with pytest.raises(DeployError, match="not met"):
        search(ev, hand_m, runs=1, blocks=[blocks[0]])


@pytest.mark.parametrize(
    "args, message",
    [
        (["quantize-scan", "--blocks", "block24,nonsense"], "unknown block nonsense"),
        (["quantize-scan", "--min-iou", "1.5"], "--min-iou 1.5: must be in (0, 1]"),
        (["quantize-scan", "--min-iou", "0"], "--min-iou 0: must be in (0, 1]"),
        (["export", "--target", "onnx", "--min-iou", "-0.1"], "must be in (0, 1]"),
        (["quantize-scan", "--search-margin", "0.3"], "--search-margin 0.3: must be in [0, 0.2]"),
        (["quantize-scan", "--search-images", "0"], "--search-images 0: must be in [1, 6]"),
        (["export", "--target", "onnx", "--search-margin", "0.1"], "tune --min-iou: give it"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path: Path, capsys):
    assert main([*args, "--out", str(tmp_path / "o"), "--random-weights", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_min_iou_option_is_checked():
    assert OnnxOptions(("int8-static",), min_iou=0.97).min_iou == 0.97
    with pytest.raises(OptionsError, match="must be in"):
        OnnxOptions(("int8-static",), min_iou=1.01)
    assert (
        OnnxOptions(("int8-static",), min_iou=0.97, search_margin=0.2, search_images=6).margin
        == 0.2
    )
    assert OnnxOptions(("int8-static",), min_iou=0.97).scoring_images == 6
    with pytest.raises(OptionsError, match="--search-images 7"):
        OnnxOptions(("int8-static",), min_iou=0.97, search_images=7)
