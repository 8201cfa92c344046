"""Reduced-precision ONNX graphs: fp16 conversion and int8 quantization with ONNX Runtime's tooling.

The policies (what stays float32, what stays unquantized) were chosen by measuring parity on the
real graphs; docs/onnx.md has the numbers. Graph inputs and outputs always stay float32.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from ..errors import DeployError, first_line
from . import FP16_MAX

Feeds = Iterable[dict[str, np.ndarray]]


class FeedReader(CalibrationDataReader):
    """Calibration feeds (dicts of official input names -> arrays) for ONNX Runtime's calibrators."""

    def __init__(self, feeds: Feeds, input_names: Iterable[str]) -> None:
        names = set(input_names)
        self._feeds: Iterator[dict[str, np.ndarray]] = (
            {k: v for k, v in f.items() if k in names} for f in feeds
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def nodes_fed_only_by(model: onnx.ModelProto, inputs: Iterable[str]) -> list[str]:
    """Names of the nodes that depend on graph ``inputs`` and on no other graph input
    (e.g. the prompt encoding computed from ``point_coords`` / ``point_labels``)."""
    allowed = set(inputs)
    others = {i.name for i in model.graph.input} - allowed
    pure = set(allowed)  # tensors computed from ``allowed`` and constants only
    const = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        ins = [i for i in node.input if i]
        if any(i in others for i in ins) or not all(i in pure or i in const for i in ins):
            continue
        if any(i in pure for i in ins):
            pure.update(node.output)
            out.append(node.name)
        else:
            const.update(node.output)
    return out


def activation_peaks(model: onnx.ModelProto, feeds: Feeds) -> dict[str, float]:
    """max |value| of every float tensor over ``feeds`` (ONNX Runtime's min-max calibrator)."""
    inputs = [i.name for i in model.graph.input]
    with tempfile.TemporaryDirectory(prefix="edgesam-peaks-") as scratch:
        src = Path(scratch) / "in.onnx"
        onnx.save(model, str(src))
        calibrator = create_calibrator(
            src,
            None,
            augmented_model_path=str(Path(scratch) / "aug.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(FeedReader(feeds, inputs))
        ranges = calibrator.compute_data()
    return {
        name: float(max(abs(np.min(r.range_value[0])), abs(np.max(r.range_value[1]))))
        for name, r in ranges.data.items()
    }


def toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reorder nodes topologically in place (the fp16 converter appends its Casts at the end)."""
    ready = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    pending, ordered = list(model.graph.node), []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise DeployError("ONNX graph has a cycle or an undefined input")
        for n in done:
            ready.update(n.output)
        ordered.extend(done)
        pending = rest
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


@dataclass(frozen=True)
class Fp16Policy:
    """What stays float32 in an fp16 graph.

    ``keep_ops``: op type -> reason. ``fp32_inputs``: every node computed from these inputs alone
    stays float32 (reason ``fp32_inputs_reason``). ``headroom``: a node whose float32 output on the
    calibration feeds exceeds FP16_MAX / headroom stays float32 (overflow guard for the actual weights).
    ``exclude_scopes``: nodes whose names start with a key (module scope -> reason) stay float32.
    """

    keep_ops: dict[str, str] = field(default_factory=dict)
    fp32_inputs: tuple[str, ...] = ()
    fp32_inputs_reason: str = ""
    headroom: float = 4.0
    exclude_scopes: dict[str, str] = field(default_factory=dict)


def to_fp16(
    model: onnx.ModelProto,
    policy: Fp16Policy,
    feeds: Feeds,
    peaks: dict[str, float] | None = None,
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """fp16 weights and activations with float32 I/O -> (model, record details). ``peaks``:
    ``activation_peaks(model, feeds)`` when already computed."""
    present = {i.name for i in model.graph.input}
    subgraph = nodes_fed_only_by(model, [i for i in policy.fp32_inputs if i in present])
    limit = FP16_MAX / policy.headroom
    peaks = activation_peaks(model, feeds) if peaks is None else peaks
    hot = sorted(
        {
            n.name
            for n in model.graph.node
            if n.name not in subgraph and any(peaks.get(o, 0.0) > limit for o in n.output)
        }
    )
    scopes = tuple(policy.exclude_scopes)
    scoped = [n.name for n in model.graph.node if scopes and n.name.startswith(scopes)]
    try:
        converted = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(policy.keep_ops),
            node_block_list=subgraph + hot + scoped,
        )
    except Exception as exc:  # the converter raises bare exceptions of many types
        raise DeployError(f"fp16 conversion failed: {first_line(exc)}") from exc
    toposort(converted)
    details: dict[str, Any] = {"fp32_kept_ops": dict(policy.keep_ops)}
    if subgraph:
        details["fp32_kept_subgraph"] = {
            "inputs": list(policy.fp32_inputs),
            "nodes": len(subgraph),
            "reason": policy.fp32_inputs_reason,
        }
    details["fp16_overflow_guard"] = {"limit": limit, "nodes_kept_fp32": hot}
    if scoped:
        details["fp32_kept_scopes"] = {"scopes": dict(policy.exclude_scopes), "nodes": len(scoped)}
    return converted, details


@dataclass(frozen=True)
class Int8Policy:
    """What an int8 graph quantizes: ``op_types`` go to the quantizer; nodes of ``exclude_ops``
    (op type -> reason), nodes whose names start with a key of ``exclude_scopes`` (module scope ->
    reason) and nodes computed from ``fp32_inputs`` alone stay float. Weights are quantized to
    ``weight_bits`` (7: ONNX Runtime's ``reduce_range``; 8: the full int8 range), for the reason
    ``weight_bits_reason``."""

    op_types: tuple[str, ...]
    exclude_ops: dict[str, str] = field(default_factory=dict)
    exclude_scopes: dict[str, str] = field(default_factory=dict)
    fp32_inputs: tuple[str, ...] = ()
    fp32_inputs_reason: str = ""
    weight_bits: int = 8
    weight_bits_reason: str = ""

    @property
    def reduce_range(self) -> bool:
        """ONNX Runtime's quantizer flag for 7-bit weights."""
        return self.weight_bits == 7

    def excluded_nodes(self, model: onnx.ModelProto) -> list[str]:
        present = {i.name for i in model.graph.input}
        subgraph = set(nodes_fed_only_by(model, [i for i in self.fp32_inputs if i in present]))
        scopes = tuple(self.exclude_scopes)
        return [
            n.name
            for n in model.graph.node
            if n.op_type in self.exclude_ops
            or n.name in subgraph
            or (scopes and n.name.startswith(scopes))
        ]

    def details(self, model: onnx.ModelProto) -> dict[str, Any]:
        reasons = {**self.exclude_ops, **self.exclude_scopes}
        if self.fp32_inputs:
            reasons[f"nodes computed from {', '.join(self.fp32_inputs)} alone"] = (
                self.fp32_inputs_reason
            )
        out = {
            "quantized_op_types": list(self.op_types),
            "quantization_exclusions": reasons,
            "excluded_nodes": len(self.excluded_nodes(model)),
        }
        if self.weight_bits_reason:
            out["int8_weights"] = {"bits": self.weight_bits, "why": self.weight_bits_reason}
        return out


def _roundtrip(model: onnx.ModelProto, quantize: Any) -> onnx.ModelProto:
    """Run a path-based ORT quantizer on ``model`` in a scratch directory and load the result."""
    with tempfile.TemporaryDirectory(prefix="edgesam-q-") as scratch:
        src, dst = Path(scratch) / "in.onnx", Path(scratch) / "out.onnx"
        onnx.save(model, str(src))
        quantize(src, dst)
        return onnx.load(str(dst))


def quantize_int8_dynamic(
    model: onnx.ModelProto, policy: Int8Policy
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Weight-only int8 (per-channel); activations are quantized on the fly by the runtime."""
    q = _roundtrip(
        model,
        lambda src, dst: quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=list(policy.op_types),
            per_channel=True,
            reduce_range=policy.reduce_range,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=policy.excluded_nodes(model),
        ),
    )
    return q, {
        "quantization": "dynamic: int8 per-channel weights, activations at run time",
        **policy.details(model),
    }


def spatial_means_to_global_pool(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Replace ReduceMean over axes (2, 3) with keepdims of a 4-D tensor (squeeze-excite's mean) by the
    equivalent GlobalAveragePool, in place; returns the model and how many were replaced.

    In an int8 graph ONNX Runtime runs its convolutions in NHWC, where ReduceMean over H, W measured
    21 ms per encoder run and GlobalAveragePool a fraction of a millisecond."""
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    consts.update(
        {
            n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
            for n in model.graph.node
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
        }
    )
    replaced = 0
    for i, node in enumerate(model.graph.node):
        if node.op_type != "ReduceMean":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in consts:
            axes = consts[node.input[1]].tolist()
        if axes is None or sorted(axes) != [2, 3] or attrs.get("keepdims", 1) != 1:
            continue
        pool = onnx.helper.make_node(
            "GlobalAveragePool",
            [node.input[0]],
            list(node.output),
            name=node.name + "/GlobalAveragePool",
        )
        model.graph.node[i].CopyFrom(pool)
        replaced += 1
    return model, replaced


def graph_outputs(
    model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """``model``'s outputs (name -> array) for each feed (ONNX Runtime, CPU, from memory)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    return [
        dict(zip(outputs, session.run(None, {k: v for k, v in feed.items() if k in names})))
        for feed in feeds
    ]


def first_outputs(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """``model``'s first output for each feed (ONNX Runtime, CPU, from memory)."""
    first = model.graph.output[0].name
    return [out[first] for out in graph_outputs(model, feeds)]


def quantize_int8_static(
    model: onnx.ModelProto, policy: Int8Policy, feeds: Feeds, calibration_cache: Path | None = None
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """QDQ int8: per-channel symmetric int8 weights, uint8 activations calibrated (min-max) on ``feeds``.

    ``calibration_cache``: a JSON file of activation ranges (ONNX Runtime's); written by the first
    call, read by later ones on the same ``model`` (the ranges do not depend on ``policy``'s
    exclusions), so graphs that differ only in what stays float are calibrated once."""
    inputs = [i.name for i in model.graph.input]
    q = _roundtrip(
        model,
        lambda src, dst: quantize_static(
            src,
            dst,
            FeedReader(feeds, inputs),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(policy.op_types),
            per_channel=True,
            reduce_range=policy.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=policy.excluded_nodes(model),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            calibration_cache_path=calibration_cache,
        ),
    )
    return q, {
        "quantization": "static QDQ: int8 per-channel weights, uint8 activations, min-max calibration",
        **policy.details(model),
    }
