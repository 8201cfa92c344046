"""Core ML weight compression (coremltools.optimize.coreml) applied to the fp16 ML program.

- ``int8-weight``: linear symmetric int8, per output channel (``constexpr_affine_dequantize``).
- ``palette8`` / ``palette6`` / ``palette4``: k-means look-up table per tensor, 2**n entries
  (``constexpr_lut_to_dense``); needs scikit-learn.
- ``int8-full``: int8 weights and int8 activations. Activation ranges are calibrated by running
  the model, which coremltools can only do on macOS.

Only weights of conv, linear and conv_transpose ops are compressed (tensors of at least 2048
elements); constants such as the decoder's positional encoding stay fp16.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeployError, first_line, require
from ..vocabulary import Precision

WEIGHT_COMPRESSIONS = (
    Precision.INT8_WEIGHT,
    Precision.PALETTE8,
    Precision.PALETTE6,
    Precision.PALETTE4,
)
ACTIVATION_COMPRESSIONS = (Precision.INT8_FULL,)
COMPRESSED_OP_TYPES = ("conv", "linear", "conv_transpose")
WEIGHT_THRESHOLD = 2048
PALETTE_BITS = {Precision.PALETTE8: 8, Precision.PALETTE6: 6, Precision.PALETTE4: 4}
# bits per compressed weight vs 16 for fp16 (look-up tables and scales come on top)
BITS_PER_WEIGHT = {Precision.INT8_WEIGHT: 8, Precision.INT8_FULL: 8, **PALETTE_BITS}
_SUFFIXES = re.compile(r"(_to_fp16)?(_palettized|_quantized)?$")


def _weight_config(precision: Precision) -> Any:
    """OptimizationConfig of a weight compression, restricted to COMPRESSED_OP_TYPES."""
    oc = require("coremltools.optimize.coreml", "coreml")
    if precision in PALETTE_BITS:
        require("sklearn", "coreml")
        op_config = oc.OpPalettizerConfig(
            mode="kmeans",
            nbits=PALETTE_BITS[precision],
            granularity="per_tensor",
            # one k-means worker: forked workers deadlock after torch ran
            weight_threshold=WEIGHT_THRESHOLD,
        )
    elif precision in (Precision.INT8_WEIGHT, Precision.INT8_FULL):
        op_config = oc.OpLinearQuantizerConfig(
            mode="linear_symmetric",
            dtype="int8",
            granularity="per_channel",
            weight_threshold=WEIGHT_THRESHOLD,
        )
    else:
        raise DeployError(f"no Core ML compression named {precision}")
    return oc.OptimizationConfig(op_type_configs={t: op_config for t in COMPRESSED_OP_TYPES})


def compress_weights(mlmodel: Any, precision: Precision) -> Any:
    """fp16 ML program -> a copy with compressed weights (``precision`` in WEIGHT_COMPRESSIONS)."""
    oc = require("coremltools.optimize.coreml", "coreml")
    if precision in PALETTE_BITS:
        return oc.palettize_weights(mlmodel, _weight_config(precision))
    return oc.linear_quantize_weights(mlmodel, _weight_config(precision))


def check_activation_quantization_supported(precision: Precision) -> None:
    """DeployError unless this machine can calibrate activations (macOS: Core ML predictions)."""
    if precision in ACTIVATION_COMPRESSIONS and sys.platform != "darwin":
        raise DeployError(
            f"Core ML {precision} (int8 activations) calibrates by running Core ML predictions, "
            "which need "
            "macOS; on Linux export int8-weight or palette8/6/4 (weight-only) instead"
        )


def quantize_activations(mlmodel: Any, sample_data: list[dict[str, np.ndarray]]) -> Any:
    """fp16 ML program -> int8 activations (calibrated on ``sample_data``) and int8 weights. macOS only."""
    check_activation_quantization_supported(Precision.INT8_FULL)
    oc = require("coremltools.optimize.coreml", "coreml")
    config = oc.OptimizationConfig(
        global_config=oc.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
    )
    with_activations = oc.linear_quantize_activations(mlmodel, config, sample_data)
    return oc.linear_quantize_weights(with_activations, _weight_config(Precision.INT8_FULL))


def sanitize(name: str) -> str:
    """A PyTorch parameter name as coremltools spells its constant (``a.b.0.weight`` -> ``a_b_0_weight``)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def decompressed_weights(path: Path) -> dict[str, np.ndarray]:
    """The compressed weights of a saved package, decompressed: {sanitized torch name: float32 array}."""
    oc = require("coremltools.optimize.coreml", "coreml")
    from ..exporters.coreml.checks import load_package

    mlmodel = load_package(path)
    try:
        weights = oc.get_weights_metadata(
            oc.decompress_weights(mlmodel), weight_threshold=WEIGHT_THRESHOLD
        )
    except Exception as exc:  # coremltools' graph passes raise plain exceptions
        raise DeployError(f"{path}: cannot decompress its weights ({first_line(exc)})") from exc
    return {
        _SUFFIXES.sub("", name): np.asarray(meta.val, dtype=np.float32)
        for name, meta in weights.items()
    }


__all__ = [
    "ACTIVATION_COMPRESSIONS",
    "BITS_PER_WEIGHT",
    "COMPRESSED_OP_TYPES",
    "WEIGHT_COMPRESSIONS",
    "check_activation_quantization_supported",
    "compress_weights",
    "decompressed_weights",
    "quantize_activations",
    "sanitize",
]
