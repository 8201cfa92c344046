"""Post-training quantization of the fp32 TFLite graphs with ai-edge-quantizer (AEQ).

Every variant starts from the converted fp32 flatbuffer, so the graph is converted once per role:

- ``fp16``: weights of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / TRANSPOSE_CONV stored as
  float16 and dequantized at load time (half the size; XNNPACK computes in fp32 on x86).
- ``int8-dynamic``: AEQ's legacy dynamic-range recipe: int8 per-channel weights of layers with at
  least 1024 weights, activations quantized on the fly by the kernels, I/O float.
- ``int8-full``: static int8 activations and weights calibrated on real photos, except the layers in
  ``FULL_INT8_FLOAT_KEPT`` that measurably broke under int8 (see docs/tflite.md); I/O stays float.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DeployError, require
from ..processing import PAD_LABEL
from ..vocabulary import Precision, Role

EXTRA = "tflite"
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE")
_FLOAT_IO = (
    "INPUT",
    "OUTPUT",
)  # graph inputs and outputs stay float32 (int8 coordinates lose ~4 px)
_STATIC_INT8 = {
    "activation_tensor_config": {
        "num_bits": 8,
        "symmetric": False,
        "granularity": "TENSORWISE",
        "dtype": "INT",
    },
    "weight_tensor_config": {
        "num_bits": 8,
        "symmetric": True,
        "granularity": "CHANNELWISE",
        "dtype": "INT",
    },
    "compute_precision": "INTEGER",
    "explicit_dequantize": False,
}
_DYNAMIC_INT8 = {
    "weight_tensor_config": {
        "num_bits": 8,
        "symmetric": True,
        "granularity": "CHANNELWISE",
        "dtype": "INT",
    },
    "compute_precision": "INTEGER",
    "explicit_dequantize": False,
    "min_weight_elements": 1024,
}
_FP16_WEIGHTS = {
    "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
    "compute_precision": "FLOAT",
    "explicit_dequantize": True,
}


@dataclass(frozen=True)
class FloatKept:
    """Which part of a graph stays float under int8-full: ops inside ``scope`` (a regex over TFLite
    tensor names, which carry the PyTorch module path) are int8 except the op types in ``ops``;
    everything outside the scope is float."""

    scope: str
    ops: tuple[str, ...]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"int8_scope": self.scope, "float_op_types": list(self.ops), "reason": self.reason}


# Chosen by measurement on the parity photos (docs/tflite.md, "int8-full: what stays float").
FULL_INT8_FLOAT_KEPT: dict[Role, FloatKept] = {
    Role.ENCODER: FloatKept(
        scope=".*",
        ops=("MEAN", "SUB", "SQRT", "DIV", "GELU", "LOGISTIC"),
        reason="LayerNorm2d of the neck and the squeeze-excite means stay float for accuracy; GELU and "
        "sigmoid because int8 there made the encoder slower and no more accurate (docs/tflite.md)",
    ),
    Role.DECODER: FloatKept(
        scope="TwoWayAttentionBlock|final_attn",
        ops=(
            "SOFTMAX",
            "MEAN",
            "SQUARED_DIFFERENCE",
            "RSQRT",
            "SUB",
            "SQRT",
            "DIV",
            "BATCH_MATMUL",
            "GELU",
            "ADD",
            "MUL",
            "RESHAPE",
            "TRANSPOSE",
            "CONCATENATION",
            "SLICE",
        ),
        reason="only the attention/MLP fully-connected layers are int8: int8 on the whole decoder or on the "
        "attention blocks lost too much mask IoU (docs/tflite.md); the prompt encoder, output "
        "upscaling and "
        "hypernetwork MLPs stay float, and XNNPACK has no int8 BATCH_MATMUL (it fell back)",
    ),
}


def recipe_for(precision: Precision, role: Role) -> list[dict[str, Any]]:
    """The AEQ recipe (a JSON-able list) of a quantized precision for ``role``."""
    if precision == Precision.FP16:
        return [
            {
                "regex": ".*",
                "operation": op,
                "algorithm_key": "float_casting",
                "op_config": _FP16_WEIGHTS,
            }
            for op in _WEIGHT_OPS
        ]
    if precision == Precision.INT8_DYNAMIC:
        return [
            {
                "regex": ".*",
                "operation": "*",
                "algorithm_key": "min_max_uniform_quantize",
                "op_config": _DYNAMIC_INT8,
            }
        ]
    if precision == Precision.INT8_FULL:
        kept = FULL_INT8_FLOAT_KEPT[role]
        return (
            [
                {
                    "regex": kept.scope,
                    "operation": "*",
                    "algorithm_key": "min_max_uniform_quantize",
                    "op_config": _STATIC_INT8,
                }
            ]
            + [
                {"regex": kept.scope, "operation": op, "algorithm_key": "no_quantize"}
                for op in kept.ops
            ]
            + [{"regex": ".*", "operation": op, "algorithm_key": "no_quantize"} for op in _FLOAT_IO]
        )
    raise DeployError(f"no TFLite quantization recipe for precision '{precision}'")


def quantize_model(
    float_model: bytes,
    recipe: list[dict[str, Any]],
    calibration: dict[str, list[dict[str, np.ndarray]]] | None = None,
    threads: int = 2,
) -> bytes:
    """Apply ``recipe`` to a float flatbuffer; ``calibration`` maps signature key -> feeds
    (input name -> array) and is required by static recipes."""
    aeq = require("ai_edge_quantizer.quantizer", EXTRA)
    qt = aeq.Quantizer(bytearray(float_model), recipe)
    result = None
    if qt.need_calibration:
        if not calibration:
            raise DeployError("int8-full needs calibration images")
        result = qt.calibrate(calibration, num_threads=threads)
    root = logging.getLogger()
    root.addFilter(_shared_weight_notice)
    try:
        return bytes(qt.quantize(result, enable_progress_report=False).quantized_model)
    finally:
        root.removeFilter(_shared_weight_notice)


def _shared_weight_notice(record: logging.LogRecord) -> bool:
    """Drop AEQ's 'overriding previously quantized data in buffer' warning: the decoder's signatures
    share their weights, which AEQ quantizes once per signature with identical results (no shared
    buffer of an exported decoder carries two different scales)."""
    return "is overriding other previously quantized data" not in record.getMessage()


def fit_points(coords: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut or pad (with (0, 0) label -1) a prompt [1, M, 2] / [1, M] to exactly ``n`` points.

    Only for calibration ranges of a fixed-N signature; it changes the prompt's meaning."""
    m = coords.shape[1]
    if m >= n:
        return coords[:, :n], labels[:, :n]
    pad = n - m
    return (
        np.concatenate([coords, np.zeros((1, pad, 2), np.float32)], axis=1),
        np.concatenate([labels, np.full((1, pad), PAD_LABEL, np.float32)], axis=1),
    )


def decoder_calibration(
    feeds: Iterable[dict[str, np.ndarray]], signatures: dict[int, str]
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration feeds per decoder signature (point count -> key), prompts fitted to each N."""
    feeds = list(feeds)
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for n, key in signatures.items():
        out[key] = []
        for f in feeds:
            c, lab = fit_points(f["point_coords"], f["point_labels"], n)
            out[key].append(
                {"image_embeddings": f["image_embeddings"], "point_coords": c, "point_labels": lab}
            )
    return out
