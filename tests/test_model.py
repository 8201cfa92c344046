"""Re-parameterization and the seeded random default."""

from __future__ import annotations

import torch
from torch import nn

from edgesam_deploy.checkpoints import load_model, parameter_count
from edgesam_deploy.graphs import EncoderGraph
from edgesam_deploy.modeling import reparameterize_encoder
from edgesam_deploy.processing import (
    decoder_inputs,
    masks_from_logits,
    postprocess_logits,
    preprocess,
)
from edgesam_deploy.samples import load_photo, standard_prompts


def test_parameter_count(random_model):
    assert abs(parameter_count(random_model) - 9.6e6) < 0.1e6


def test_folded_encoder_equals_unfolded(random_model):
    enc = EncoderGraph(random_model, fold=False)
    folded = EncoderGraph(random_model, fold=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())

    def n_conv(m: nn.Module) -> int:
        return sum(isinstance(x, nn.Conv2d) for x in m.modules())

    assert n_conv(folded) < n_conv(enc)
    x = torch.from_numpy(preprocess(load_photo("chelsea")).tensor)
    with torch.no_grad():
        assert (enc(x) - folded(x)).abs().max().item() <= 1e-4


def test_reparameterize_leaves_original_untouched(random_model):
    before = {k: v.clone() for k, v in random_model.image_encoder.state_dict().items()}
    reparameterize_encoder(random_model.image_encoder)
    after = random_model.image_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_random_weights_are_seeded():
    a, src = load_model(random_seed=3)
    b, _ = load_model(random_seed=3)
    c, _ = load_model(random_seed=4)
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])
    assert src.kind == "random" and "RANDOM" in src.label


def test_random_weights_have_realistic_scale(random_model):
    """Unit-order embeddings, non-identity BN statistics, logits well beyond +-1, structured masks."""
    bn = random_model.image_encoder.features[3].channel_mixer.m[0].bn
    assert bn.running_var.std() > 0.1 and bn.running_mean.abs().max() > 0.05
    pre = preprocess(load_photo("coffee"))
    emb = random_model.encode(torch.from_numpy(pre.tensor))
    assert 0.5 < emb.std().item() < 2.0
    for prompt in standard_prompts(*pre.original_size).values():
        coords, labels = decoder_inputs(prompt, pre.original_size, pre.input_size)
        logits, _, stability = random_model.decode(
            emb, torch.from_numpy(coords), torch.from_numpy(labels), num_masks=4
        )
        assert logits.min() < -3 and logits.max() > 3
        masks = masks_from_logits(
            postprocess_logits(logits[0].numpy(), pre.input_size, pre.original_size)
        )
        coverage = masks.mean(axis=(1, 2))
        assert 0.02 < coverage[0] < 0.98, "token 0 (the evaluated mask) is neither empty nor full"
        assert len({m.tobytes() for m in masks}) == 4, (
            "the four mask tokens give four different masks"
        )
        assert stability.max() > 0.1
