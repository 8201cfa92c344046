"""Residual-stream equalization: same function, evened-out channel ranges (small inputs)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgesam_deploy.graphs import EncoderGraph
from edgesam_deploy.processing import preprocess
from edgesam_deploy.quantization.equalize import equalize_, segments, stream_peaks
from edgesam_deploy.samples import load_photo


def _small(photo: str) -> np.ndarray:
    """A real photo, preprocessed, shrunk to 1 x 3 x 256 x 256 (the encoder is fully convolutional)."""
    x = torch.from_numpy(preprocess(load_photo(photo)).tensor)
    return F.interpolate(x, size=(256, 256), mode="area").numpy()


@pytest.fixture(scope="module")
def folded(random_model):
    return EncoderGraph(random_model, fold=True).encoder


def test_segments_cover_every_block(folded):
    segs = segments(folded)
    assert [s.channels for s in segs] == [48, 96, 192, 384]
    assert [i for s in segs for i in s.blocks] == list(range(1, len(folded.features)))


def test_equalization_keeps_the_function_and_evens_the_streams(folded):
    calib = [_small("coffee"), _small("chelsea")]
    before = stream_peaks(folded, calib)
    eq = copy.deepcopy(folded)
    details = equalize_(eq, before, alpha=0.5)
    probe = torch.from_numpy(_small("camera"))  # not a calibration image
    with torch.no_grad():
        ref, out = folded(probe), eq(probe)
    assert float((ref - out).abs().max()) < 1e-4
    after = stream_peaks(eq, calib)
    for b, a, rec in zip(before, after, details["streams"]):
        spread_b, spread_a = float(b.max() / b.median()), float(a.max() / a.median())
        assert spread_a < spread_b
        assert rec["peak_over_median_before"] == pytest.approx(spread_b, rel=1e-2)
    widest = max(range(4), key=lambda k: float(before[k].max() / before[k].median()))
    assert float(after[widest].max() / after[widest].median()) < 0.5 * float(
        before[widest].max() / before[widest].median()
    )


def test_alpha_zero_changes_nothing(folded):
    eq = copy.deepcopy(folded)
    equalize_(eq, stream_peaks(folded, [_small("coffee")]), alpha=0.0)
    for (name, a), b in zip(folded.state_dict().items(), eq.state_dict().values()):
        assert torch.equal(a, b), name
