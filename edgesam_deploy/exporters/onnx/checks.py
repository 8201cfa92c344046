"""ONNX graph checks: the opset a model imports, and a decoder free of data-dependent shapes."""

from __future__ import annotations

from typing import Any

from ...errors import DeployError

# ops that make shapes data-dependent or hide control flow: NPU compilers and TensorRT reject them
FORBIDDEN_DECODER_OPS = frozenset(
    {"NonZero", "Compress", "Unique", "TopK", "NonMaxSuppression", "Loop", "If", "Scan", "Range"}
)


def opset_of(model: Any) -> int:
    """The default-domain opset a model imports."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def check_static_decoder(model: Any) -> None:
    """Refuse a decoder with data-dependent shapes: forbidden ops or outputs of unknown shape."""
    import onnx

    bad = sorted({n.op_type for n in model.graph.node if n.op_type in FORBIDDEN_DECODER_OPS})
    if bad:
        raise DeployError(
            f"the decoder graph contains {', '.join(bad)}: label selection must be arithmetic"
        )
    inferred = onnx.shape_inference.infer_shapes(model)
    for out in inferred.graph.output:
        dims = [
            d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim
        ]
        if None in dims or not dims:
            raise DeployError(f"the decoder output {out.name} has a data-dependent shape {dims}")
