"""Read a ``.tflite`` flatbuffer without running it: op codes and counts, Flex (TF-select) and
custom ops, signatures with their input/output names, tensor types.

Used by the TFLite exporter (record details, the no-Flex gate), the tests and the benchmark.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DeployError, require

FLEX_PREFIX = "Flex"  # TF-select ops are custom ops named "Flex<TfOpName>"


@dataclass
class SignatureInfo:
    """One signature: its key, input and output names (as an app passes them to the signature runner)."""

    key: str
    inputs: list[str]
    outputs: list[str]
    subgraph: int


@dataclass
class TfliteSummary:
    """What a flatbuffer holds. ``op_counts_first``: the operators of the first signature's
    subgraph (one signature's graph)."""

    op_counts_first: Counter = field(default_factory=Counter)
    custom_ops: list[str] = field(default_factory=list)
    signatures: list[SignatureInfo] = field(default_factory=list)
    input_types: dict[str, str] = field(
        default_factory=dict
    )  # "<signature>/<input>" -> tensor type
    tensor_types: Counter = field(
        default_factory=Counter
    )  # type name -> number of tensors (all subgraphs)

    @property
    def flex_ops(self) -> list[str]:
        return [op for op in self.custom_ops if op.startswith(FLEX_PREFIX)]

    @property
    def num_ops(self) -> int:
        """Operators of one signature's graph (what one inference executes)."""
        return sum(self.op_counts_first.values())

    def signature(self, key: str) -> SignatureInfo:
        for sig in self.signatures:
            if sig.key == key:
                return sig
        raise DeployError(
            f"no signature '{key}'; the model has {', '.join(s.key for s in self.signatures)}"
        )


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _str(value: bytes | None) -> str:
    return value.decode("utf-8") if value else ""


def inspect_tflite(path: Path) -> TfliteSummary:
    """Parse ``path`` (a TFLite flatbuffer) into a ``TfliteSummary``; DeployError if it is not one."""
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise DeployError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    model = schema.Model.GetRootAs(buf, 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)

    codes: list[str] = []
    custom: set[str] = set()
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        builtin = max(
            oc.BuiltinCode(), oc.DeprecatedBuiltinCode()
        )  # old files use the deprecated byte
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = _str(oc.CustomCode())
            custom.add(name)
        codes.append(name)

    out = TfliteSummary(custom_ops=sorted(custom))
    per_subgraph: list[Counter] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        counts = Counter(codes[sg.Operators(i).OpcodeIndex()] for i in range(sg.OperatorsLength()))
        per_subgraph.append(counts)
        for t in range(sg.TensorsLength()):
            out.tensor_types[type_names.get(sg.Tensors(t).Type(), "?")] += 1

    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        sg = model.Subgraphs(sd.SubgraphIndex())
        key = _str(sd.SignatureKey())
        inputs = [_str(sd.Inputs(j).Name()) for j in range(sd.InputsLength())]
        for j, name in enumerate(inputs):
            out.input_types[f"{key}/{name}"] = type_names.get(
                sg.Tensors(sd.Inputs(j).TensorIndex()).Type(), "?"
            )
        outputs = [_str(sd.Outputs(j).Name()) for j in range(sd.OutputsLength())]
        out.signatures.append(SignatureInfo(key, inputs, outputs, sd.SubgraphIndex()))
    first = out.signatures[0].subgraph if out.signatures else 0
    out.op_counts_first = per_subgraph[first] if per_subgraph else Counter()
    return out


def require_no_flex(path: Path, summary: TfliteSummary | None = None) -> TfliteSummary:
    """Raise DeployError if ``path`` needs the Flex (TF-select) delegate or any custom op."""
    summary = summary or inspect_tflite(path)
    if summary.custom_ops:
        kind = "Flex (TF-select)" if summary.flex_ops else "custom"
        raise DeployError(
            f"{path}: needs {kind} ops {', '.join(summary.custom_ops)}; the stock LiteRT runtime "
            "lacks them"
        )
    return summary
