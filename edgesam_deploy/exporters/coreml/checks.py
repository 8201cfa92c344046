"""Core ML package checks that run without macOS: read a saved ``.mlpackage`` back (no predictions),
its inputs and outputs, and the census of its MIL ops."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...errors import DeployError, first_line, require
from ...vocabulary import GraphSpec, Role

# ops a converted graph may contain (weight compression adds constexpr_* ops)
EXPECTED_OPS: dict[Role, frozenset[str]] = {
    Role.ENCODER: frozenset(
        {
            "const",
            "cast",
            "conv",
            "gelu",
            "relu",
            "sigmoid",
            "mul",
            "add",
            "sub",
            "pow",
            "sqrt",
            "real_div",
            "reduce_mean",
            "batch_norm",
            "upsample_bilinear",
        }
    ),
    Role.DECODER: frozenset(
        {
            "const",
            "cast",
            "add",
            "mul",
            "sub",
            "linear",
            "sin",
            "cos",
            "concat",
            "expand_dims",
            "abs",
            "reshape",
            "transpose",
            "matmul",
            "softmax",
            "layer_norm",
            "relu",
            "slice_by_index",
            "conv_transpose",
            "reduce_mean",
            "pow",
            "sqrt",
            "real_div",
            "batch_norm",
            "gelu",
            "stack",
            "greater",
            "reduce_sum",
            "shape",
            "gather",
            "squeeze",
            "tile",
        }
    ),
}
MASK_INPUT_OPS = frozenset({"conv"})
COMPRESSION_OPS = frozenset(
    {
        "constexpr_affine_dequantize",
        "constexpr_lut_to_dense",
        "constexpr_blockwise_shift_scale",
        "constexpr_sparse_to_dense",
        "quantize",
        "dequantize",
    }
)


def load_package(path: Path) -> Any:
    """Load a saved ``.mlpackage`` without compiling it (works on Linux); DeployError if unreadable."""
    ct = require("coremltools", "coreml")
    path = Path(path)
    if not path.exists():
        raise DeployError(f"{path}: no such Core ML package")
    try:
        return ct.models.MLModel(str(path), skip_model_load=True)
    except Exception as exc:  # coremltools raises bare Exceptions for corrupt packages
        raise DeployError(f"{path}: not a readable Core ML package ({first_line(exc)})") from exc


def _feature(f: Any) -> dict:
    arr = f.type.multiArrayType
    ranges = [[int(r.lowerBound), int(r.upperBound)] for r in arr.shapeRange.sizeRanges]
    from coremltools.proto import FeatureTypes_pb2

    return {
        "name": f.name,
        "shape": [int(d) for d in arr.shape],
        "range": ranges or [[int(d), int(d)] for d in arr.shape],
        "dtype": FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower(),
        "description": f.shortDescription,
    }


def io_summary(mlmodel: Any) -> dict[str, list[dict]]:
    """Inputs and outputs of a package: name, default shape, [min, max] per dim, dtype, description.
    A flexible dim has min < max; an output's shape is empty when Core ML leaves it to run time."""
    desc = mlmodel.get_spec().description
    return {
        "inputs": [_feature(f) for f in desc.input],
        "outputs": [_feature(f) for f in desc.output],
    }


def _walk_ops(block: Any) -> Iterable[Any]:
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _walk_ops(inner)


def op_census(mlmodel: Any) -> dict[str, Any]:
    """Op types of the ML program and the precision each computes in (its first output's dtype).

    -> {"opset", "ops": {type: n}, "fp16": {type: n}, "fp32": {type: n}} (consts excluded from the
    precision counts; a cast is counted by what it produces).
    """
    from coremltools.proto import MIL_pb2

    spec = mlmodel.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise DeployError(
            "not an ML program (neuralnetwork packages are not produced by this tool)"
        )
    main = spec.mlProgram.functions["main"]
    ops: Counter[str] = Counter()
    by_dtype: dict[str, Counter[str]] = {"fp16": Counter(), "fp32": Counter()}
    for op in _walk_ops(main.block_specializations[main.opset]):
        ops[op.type] += 1
        if op.type == "const" or not op.outputs:
            continue
        dtype = MIL_pb2.DataType.Name(op.outputs[0].type.tensorType.dataType)
        key = {"FLOAT16": "fp16", "FLOAT32": "fp32"}.get(dtype)
        if key:
            by_dtype[key][op.type] += 1
    return {
        "opset": main.opset,
        "ops": dict(ops),
        "fp16": dict(by_dtype["fp16"]),
        "fp32": dict(by_dtype["fp32"]),
    }


def unexpected_ops(census: dict[str, Any], spec: GraphSpec) -> set[str]:
    """Op types a converted graph of ``spec`` should not contain (e.g. a bicubic resize, gathers);
    a decoder with mask inputs also convolves the previous mask (the mask downscaling)."""
    expected = EXPECTED_OPS[spec.role] | (
        MASK_INPUT_OPS if "mask_input" in spec.input_names else set()
    )
    return set(census["ops"]) - expected - COMPRESSION_OPS


def check_package(path: Path, spec: GraphSpec, max_points: int) -> dict[str, Any]:
    """All Linux checks of one package: loads back, official names and shapes, flexible N,
    op census. -> {"io", "census", "problems": [str]} (empty problems: it passes)."""
    mlmodel = load_package(path)
    io = io_summary(mlmodel)
    census = op_census(mlmodel)
    problems = []
    for kind, expected in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        names = [f["name"] for f in io[kind]]
        if names != [s.name for s in expected]:
            problems.append(f"{kind} {names} != {[s.name for s in expected]}")
    for feat, tensor in zip(io["inputs"], spec.inputs):
        want = [[1, max_points] if d is None else [d, d] for d in tensor.shape]
        if feat["range"] != want:
            problems.append(f"input {feat['name']} range {feat['range']} != {want}")
    bad = unexpected_ops(census, spec)
    if bad:
        problems.append(f"unexpected ops {sorted(bad)}")
    return {"io": io, "census": census, "problems": problems}
