"""Checks every runtime's sensitivity scan and search share (ONNX, TFLite, ExecuTorch tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgesam_deploy.quantization.mixed import greedy
from edgesam_deploy.samples import SEARCH_PHOTOS


def check_block_rows(table: dict[str, Any], names: list[str]) -> None:
    """A scan table has one row per scanned block, ranked, with statistics in range."""
    assert [r["block"] for r in table["blocks"]] == names
    assert sorted(r["sensitivity_rank"] for r in table["blocks"]) == list(range(1, len(names) + 1))
    for row in table["blocks"]:
        assert 0.0 <= row["mask_iou_min"] <= 1.0 and 0.0 <= row["mask_iou_mean"] <= 1.0
        assert -1.0 <= row["emb_cosine_min"] <= 1.0


def check_greedy_then_search(ev: Any, blocks: list[Any], search: Any) -> tuple[list, dict]:
    """A target between step 0 and the most sensitive block kept float: the greedy path stops at
    step 1 with exactly that block float, and ``search(ev, runs=1, blocks=blocks)`` chooses and
    records the same, scored on held-out photos and timed. -> (blocks by sensitivity, details)."""
    order = sorted(blocks, key=lambda b: ev.only(b).metrics["mask_iou_mean"])
    step0 = ev.measure([], "0 float").metrics["mask_iou_mean"]
    step1 = ev.measure(order[:1], "1 float").metrics["mask_iou_mean"]
    assert step1 > step0, "keeping the most sensitive block float did not raise the mean IoU"
    ev.target = {"mask_iou_mean": (">=", (step0 + step1) / 2)}
    path = greedy(ev, order)
    assert [m.floated for m in path] == [(), (order[0].name,)]
    assert [m.meets for m in path] == [False, True]
    chosen, details = search(ev, runs=1, blocks=blocks)
    assert chosen.floated == (order[0].name,) and details["blocks_kept_float"] == [order[0].name]
    assert details["sensitivity_order"] == [b.name for b in order]
    assert details["scored_on"] == ev.reference.photo_names == [next(iter(SEARCH_PHOTOS))]
    assert not set(details["scored_on"]) & set(details["calibrated_on"])
    assert set(details["latency_ms_median"]) == {"fp32", "0 float", "1 float"}
    assert np.isfinite(list(details["latency_ms_median"].values())).all()
    check_speed(details, "1 float")
    return order, details


def check_speed(details: dict[str, Any], chosen: str) -> None:
    """The chosen graph's speed-up over fp32 from the search's own timing; the note iff slower."""
    ms = details["latency_ms_median"]
    assert details["speedup_vs_fp32"] == pytest.approx(ms["fp32"] / ms[chosen], rel=2e-3)
    assert ("slower_than_fp32" in details) == (details["speedup_vs_fp32"] < 1)
