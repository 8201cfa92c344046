"""Reduced-precision ONNX graphs: fp16 conversion and int8 quantization with ONNX Runtime's tooling.

Every policy below (which ops stay float32, which nodes stay unquantized) was chosen by measuring
parity on the real graphs; docs/onnx.md has the numbers. Graph inputs and outputs stay float32.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

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
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from ..errors import DeployError


def nodes_fed_only_by(model: onnx.ModelProto, inputs: Iterable[str]) -> list[str]:
    """Names of the nodes whose values depend on graph ``inputs`` and on no other graph input."""
    graph_inputs = {i.name for i in model.graph.input}
    allowed = set(inputs)
    pure: set[str] = set(allowed)  # tensors computed from ``inputs`` and constants only
    const = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        ins = [i for i in node.input if i]
        if any(i in graph_inputs - allowed for i in ins) or not all(i in pure or i in const for i in ins):
            continue
        if any(i in pure for i in ins):
            pure.update(node.output)
            out.append(node.name)
        else:
            const.update(node.output)
    return out


@dataclass(frozen=True)
class Fp16Policy:
    """What stays float32 in an fp16 graph: op types, and every node computed from the
    ``fp32_inputs`` alone (e.g. the prompt encoding of ``point_coords``), each with its reason."""

    keep_fp32: dict[str, str] = field(default_factory=dict)
    fp32_inputs: tuple[str, ...] = ()
    fp32_inputs_reason: str = ""

    def kept_nodes(self, model: onnx.ModelProto) -> list[str]:
        present = {i.name for i in model.graph.input}
        inputs = [i for i in self.fp32_inputs if i in present]
        return nodes_fed_only_by(model, inputs) if inputs else []

    def details(self, model: onnx.ModelProto) -> dict:
        out: dict = {"fp32_kept_ops": dict(self.keep_fp32)}
        if nodes := self.kept_nodes(model):
            out["fp32_kept_subgraph"] = {"from_inputs": list(self.fp32_inputs), "nodes": len(nodes), "reason": self.fp32_inputs_reason}
        return out


@dataclass(frozen=True)
class Int8Policy:
    """What an int8 graph quantizes.

    ``op_types``: op types handed to the quantizer; ``exclude_op_types``: op type -> reason, nodes of
    these types stay float; ``keep_output_producers``: the nodes that compute graph outputs stay float.
    """

    op_types: tuple[str, ...]
    exclude_op_types: dict[str, str] = field(default_factory=dict)
    keep_output_producers: str = ""  # reason, empty: outputs may be quantized

    def excluded_nodes(self, model: onnx.ModelProto) -> list[str]:
        """Names of the nodes this policy leaves float."""
        outputs = {o.name for o in model.graph.output}
        out = []
        for node in model.graph.node:
            if node.op_type in self.exclude_op_types or (self.keep_output_producers and outputs & set(node.output)):
                out.append(node.name)
        return out

    def details(self, model: onnx.ModelProto) -> dict:
        nodes = self.excluded_nodes(model)
        reasons = dict(self.exclude_op_types)
        if self.keep_output_producers:
            reasons["graph output producers"] = self.keep_output_producers
        return {"quantized_op_types": list(self.op_types), "quantization_exclusions": reasons, "excluded_nodes": nodes}


class FeedReader(CalibrationDataReader):
    """Calibration feeds (dicts of official input names -> arrays) for ``quantize_static``."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]], input_names: Iterable[str]) -> None:
        names = set(input_names)
        self._feeds: Iterator[dict[str, np.ndarray]] = ({k: v for k, v in f.items() if k in names} for f in feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def to_fp16(model: onnx.ModelProto, policy: Fp16Policy) -> onnx.ModelProto:
    """fp16 weights and activations; float32 inputs/outputs and the policy's ops kept float32."""
    try:
        return convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(policy.keep_fp32),
            node_block_list=policy.kept_nodes(model),
        )
    except Exception as exc:  # the converter raises bare exceptions of many types
        raise DeployError(f"fp16 conversion failed: {str(exc).splitlines()[0][:200]}") from exc


def _load(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path), load_external_data=True)


def quantize_int8_dynamic(model: onnx.ModelProto, policy: Int8Policy) -> onnx.ModelProto:
    """Weight-only int8 (per-channel), activations quantized on the fly by the runtime."""
    with tempfile.TemporaryDirectory(prefix="edgesam-q-") as scratch:
        src, dst = Path(scratch) / "in.onnx", Path(scratch) / "out.onnx"
        onnx.save(model, str(src))
        quantize_dynamic(
            src, dst, op_types_to_quantize=list(policy.op_types), per_channel=True,
            weight_type=QuantType.QInt8, nodes_to_exclude=policy.excluded_nodes(model),
        )
        return _load(dst)


def quantize_int8_static(
    model: onnx.ModelProto, policy: Int8Policy, feeds: Iterable[dict[str, np.ndarray]]
) -> onnx.ModelProto:
    """QDQ int8: per-channel symmetric int8 weights, uint8 activations calibrated (min-max) on ``feeds``."""
    inputs = [i.name for i in model.graph.input]
    with tempfile.TemporaryDirectory(prefix="edgesam-q-") as scratch:
        src, dst = Path(scratch) / "in.onnx", Path(scratch) / "out.onnx"
        onnx.save(model, str(src))
        quantize_static(
            src, dst, FeedReader(feeds, inputs),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(policy.op_types), per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=policy.excluded_nodes(model), calibrate_method=CalibrationMethod.MinMax,
            # ranges merged after every run: full-size intermediate tensors are never all held at once
            extra_options={"CalibMaxIntermediateOutputs": 1, "WeightSymmetric": True, "ActivationSymmetric": False},
        )
        return _load(dst)
