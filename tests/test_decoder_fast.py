"""The rewritten decoder (modeling/decoder_fast.py) computes the reference decoder's function:
the official conformance vectors within 1e-4, both attention formulations, the mask-input graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesam_deploy.bench.flops import graph_gflop
from edgesam_deploy.graphs import DecoderGraph, build_graph, example_inputs
from edgesam_deploy.modeling.decoder_fast import AttentionForm, _input_space
from edgesam_deploy.vocabulary import Role, ScoreKind

TOL = 1e-4  # the conformance README: float32 reimplementation within 1e-4 absolute
CASES = ("one_point", "three_points", "box", "box_point")


@pytest.mark.parametrize("form", list(AttentionForm))
@pytest.mark.parametrize("kind", ["iou", "stability"])
@pytest.mark.parametrize("case", CASES)
def test_rewritten_decoder_graph_contract(conformance, conformance_model, kind, case, form):
    graph = DecoderGraph(conformance_model, kind, rewrite=form).eval()
    prefix = f"decoder_graph/{kind}/{case}"
    with torch.no_grad():
        scores, masks = graph(
            torch.from_numpy(conformance["bilinear/image_embeddings"]),
            torch.from_numpy(conformance[f"{prefix}/point_coords"]),
            torch.from_numpy(conformance[f"{prefix}/point_labels"]),
        )
    assert np.abs(scores.numpy() - conformance[f"{prefix}/scores"]).max() <= TOL
    assert np.abs(masks.numpy() - conformance[f"decoder_graph/iou/{case}/masks"]).max() <= TOL


@pytest.mark.parametrize("n", [1, 2, 10, 11, 16, 24])
def test_both_attention_formulations_match_the_reference(random_model, n):
    """Input-space attention (T = 5 + n tokens, 8 T < 128) and the projected one (8 T >= 128)."""
    attn = random_model.mask_decoder.transformer.final_attn_token_to_image
    assert _input_space(attn, 5 + n, AttentionForm.AUTO) == (n <= 10)
    assert not _input_space(attn, 5 + n, AttentionForm.PROJECTED)
    inputs = example_inputs(Role.DECODER, n)
    with torch.no_grad():
        ref = DecoderGraph(random_model).eval()(*inputs)
        fast = DecoderGraph(random_model, rewrite=AttentionForm.AUTO).eval()(*inputs)
    for a, b in zip(ref, fast):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL


@pytest.mark.parametrize("form", list(AttentionForm))
@pytest.mark.parametrize("has", [0.0, 1.0])
def test_rewritten_mask_input_graph(random_model, has, form):
    emb, coords, labels, mask, _ = example_inputs(Role.DECODER, 3, mask_input=True)
    args = (emb, coords, labels, mask, torch.tensor([has]))
    with torch.no_grad():
        ref = DecoderGraph(random_model, ScoreKind.IOU, mask_input=True).eval()(*args)
        fast = DecoderGraph(random_model, ScoreKind.IOU, True, rewrite=form).eval()(*args)
    for a, b in zip(ref, fast):
        assert (a - b).abs().max().item() <= TOL


def test_rewrite_does_less_work_with_few_points(random_model):
    """FLOPs counted on the graphs: the reference 3.6 GFLOP (issue #16), the rewrite less at 1 point."""
    inputs = example_inputs(Role.DECODER, 2)
    ref = graph_gflop(build_graph(random_model, Role.DECODER), inputs)
    fast = graph_gflop(DecoderGraph(random_model, rewrite=AttentionForm.AUTO).eval(), inputs)
    assert 3.5 < ref < 3.7
    assert fast < 0.75 * ref


def test_flop_counter_counts_a_linear_layer():
    linear = torch.nn.Linear(64, 32)
    assert graph_gflop(linear, (torch.zeros(10, 64),)) == pytest.approx(2 * 10 * 64 * 32 / 1e9)
