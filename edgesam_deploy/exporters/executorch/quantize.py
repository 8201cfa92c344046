"""int8 through PyTorch's pt2e flow with ExecuTorch's XNNPACK quantizer: symmetric int8
activations (calibrated), per-channel int8 weights, on the ``torch.export`` graph.

The quantized module has quantize / dequantize nodes around float ops; lowering fuses them into
XNNPACK's int8 kernels (PyTorch runs the unlowered module about 100x slower, so candidates are
judged as ``.pte`` programs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from ...vocabulary import GraphSpec
from .lowering import dynamic_shapes, example_feeds

QUANTIZER = "XNNPACKQuantizer, symmetric, per-channel weights, static activations (pt2e)"


def quantize_int8(
    graph: nn.Module,
    spec: GraphSpec,
    feeds: list[tuple[torch.Tensor, ...]],
    max_points: int,
    float_modules: Iterable[str] = (),
) -> nn.Module:
    """``graph`` quantized by pt2e and calibrated on ``feeds`` (positional inputs of ``spec``);
    the ops under ``float_modules`` (module paths such as ``encoder.features.24``) are left
    unannotated, so they stay float between the dequantize and quantize of their neighbours."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    kept = [get_module_name_filter(name) for name in float_modules]
    if kept:  # set_module_name(name, None) is refused by this quantizer ("not supported yet")
        quantizer.set_filter_function(lambda node: not any(f(node) for f in kept))
    inputs = example_feeds(spec, max_points)
    shapes = dynamic_shapes(spec, max_points)
    with torch.no_grad():
        captured = torch.export.export(graph.eval(), inputs, dynamic_shapes=shapes).module()
        prepared = prepare_pt2e(captured, quantizer)
        for feed in feeds:
            prepared(*feed)
        return convert_pt2e(prepared)


def calibration_feeds(images: list[np.ndarray]) -> list[tuple[torch.Tensor, ...]]:
    """The calibration images (each 1 x 3 x 1024 x 1024) as the encoder's positional inputs."""
    return [(torch.from_numpy(x),) for x in images]


def quantizer_record() -> dict[str, Any]:
    """What the int8 variant is, for the manifest."""
    return {
        "tool": "torchao pt2e",
        "quantizer": QUANTIZER,
        "float_kept": "ops the quantizer "
        "does not annotate (GELU, LayerNorm arithmetic) run in float between dequantize / quantize",
    }
