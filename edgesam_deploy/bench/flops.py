"""FLOPs of a PyTorch graph, counted once on its forward pass (the one home of FLOP counts).

``torch.utils.flop_counter`` counts 2 x multiply-accumulates of every matmul, linear, convolution
and transposed convolution; elementwise work (norms, activations, softmax) is not counted, as in
the GFLOP figures the issue quotes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def graph_gflop(graph: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """GFLOP of one ``graph(*inputs)`` call."""
    frozen = copy.deepcopy(graph).requires_grad_(False)  # the counter's module hooks need no grads
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        frozen(*inputs)
    return counter.get_total_flops() / 1e9
