"""The rewritten decoder (modeling/decoder_fast.py) computes the reference decoder's function:
both attention formulations, the mask-input graph (the official vectors for every rewrite:
test_conformance.test_decoder_graph_contract)."""

from __future__ import annotations

import pytest
import torch

from edgesam_deploy.bench.flops import graph_gflop
from edgesam_deploy.graphs import DecoderGraph, build_graph, example_inputs
from edgesam_deploy.modeling.decoder_fast import AttentionForm, _input_space
from edgesam_deploy.vocabulary import Role, ScoreKind

TOL = 1e-4  # the conformance README: float32 reimplementation within 1e-4 absolute


def test_attention_form_choice(random_model):
    """auto: input space while T = 5 + n tokens have 8 T < 128 columns (n <= 10 points)."""
    attn = random_model.mask_decoder.transformer.final_attn_token_to_image
    for n in range(1, 25):
        assert _input_space(attn, 5 + n, AttentionForm.AUTO) == (n <= 10)
        assert not _input_space(attn, 5 + n, AttentionForm.PROJECTED)
        assert _input_space(attn, 5 + n, AttentionForm.INPUT_SPACE)


@pytest.mark.parametrize("form", list(AttentionForm))
@pytest.mark.parametrize("n", [1, 2, 10, 11, 16, 24])
def test_every_attention_form_matches_the_reference(random_model, n, form):
    """Each form on both sides of auto's switch (and the final attention on 5 output tokens)."""
    inputs = example_inputs(Role.DECODER, n)
    with torch.no_grad():
        ref = DecoderGraph(random_model).eval()(*inputs)
        fast = DecoderGraph(random_model, rewrite=form).eval()(*inputs)
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
