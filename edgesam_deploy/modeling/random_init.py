"""Seeded random weights of realistic scale: the embedded default when no checkpoint is at hand.

PyTorch's default initialization gives mask logits around +-0.1, so every mask is noise at the
threshold. Here, as in the conformance vectors' weights: conv/linear weights keep PyTorch's
fan-in uniform init, norm scales are U(0.5, 1.5), biases and BN running means N(0, 0.1) clipped,
BN running variances U(0.5, 1.5), embeddings and the Fourier matrix N(0, 1), and the output layers of
the four hypernetwork MLPs N(0, 1) (they set the logit scale). Mask logits then span several units
on both sides of 0 and masks have structure.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .edgesam import EdgeSam


def _small(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    return (torch.randn(shape, generator=g) * 0.1).clamp(-0.3, 0.3)


def _unit_scale(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=g) + 0.5


@torch.no_grad()
def randomize_(model: EdgeSam, seed: int) -> EdgeSam:
    """Fill ``model`` in place with seeded weights of realistic scale; returns it in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            bound = module.weight[0].numel() ** -0.5  # PyTorch's fan-in for all three layer types
            module.weight.copy_((torch.rand(module.weight.shape, generator=g) * 2 - 1) * bound)
            if module.bias is not None:
                module.bias.copy_((torch.rand(module.bias.shape, generator=g) * 2 - 1) * bound)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, LayerNorm2d)):
            module.weight.copy_(_unit_scale(module.weight.shape, g))
            module.bias.copy_(_small(module.bias.shape, g))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(_small(module.running_mean.shape, g))
                module.running_var.copy_(_unit_scale(module.running_var.shape, g))
                module.num_batches_tracked.fill_(1000)
        elif isinstance(module, nn.Embedding):
            module.weight.copy_(torch.randn(module.weight.shape, generator=g))
    pe = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    pe.copy_(torch.randn(pe.shape, generator=g))
    for mlp in model.mask_decoder.output_hypernetworks_mlps:
        last = mlp.layers[-1].weight
        last.copy_(torch.randn(last.shape, generator=g))
    return model.eval()
