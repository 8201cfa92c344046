"""``.pte`` checks that need no delegate at run time: what a lowered graph left outside its
delegates, and the program's inputs and outputs as ExecuTorch's own loader reads them.

The Core ML delegate runs only on Apple platforms, so on Linux its programs are judged by these
checks alone (the parity row says "not measured here").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DeployError, first_line, require
from ...vocabulary import GraphSpec

DELEGATE_CALL = "executorch_call_delegate"
FLOAT32 = 6  # ExecuTorch ScalarType::Float
_BOOKKEEPING = ("getitem", "sym_size", "sym_constrain_range", "_assert")


@dataclass
class Census:
    """``partitions``: delegate calls per backend id; ``outside``: ops left to ExecuTorch's
    portable kernels (edge op name -> count), the ones that cut the graph into partitions."""

    partitions: dict[str, int] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=dict)

    @property
    def total_partitions(self) -> int:
        return sum(self.partitions.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_partitions": self.total_partitions}


def _op_name(target: Any) -> str:
    """``aten.view_copy.default`` from an edge op, ``add`` from a Python builtin."""
    name = getattr(target, "__name__", str(target))
    return str(getattr(target, "_name", name)).replace("::", ".")


def census(graph_module: Any) -> Census:
    """Delegate calls and undelegated ops of a lowered edge graph module."""
    partitions: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node.target)
        if name == DELEGATE_CALL:
            partitions[getattr(graph_module, node.args[0].target).backend_id] += 1
        elif not any(b in name for b in _BOOKKEEPING) and name.startswith(("aten", "dim_order")):
            outside[name] += 1
    return Census(dict(partitions), dict(outside.most_common()))


def _tensor(meta: Any) -> dict[str, Any]:
    return {"shape": list(meta.sizes()), "dtype": int(meta.dtype())}


def program_io(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs of a ``.pte``'s ``forward`` (upper-bound shapes, ScalarType codes),
    read by ExecuTorch's loader without loading the method or its delegates."""
    runtime = require("executorch.runtime", "executorch")
    try:
        program = runtime.Runtime.get().load_program(Path(path))
        meta = program.metadata("forward")
    except (RuntimeError, ValueError) as exc:
        raise DeployError(f"{path}: not a loadable ExecuTorch program ({first_line(exc)})") from exc
    return {
        "inputs": [_tensor(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
        "outputs": [_tensor(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())],
    }


def check_program(path: Path, spec: GraphSpec, max_points: int) -> list[str]:
    """Problems of a written ``.pte`` against the contract ``spec`` (empty: none): input /
    output count, shapes (dynamic N at its upper bound ``max_points``), float32 IO."""
    io = program_io(path)
    problems = []
    for kind, expected in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        found = io[kind]
        if len(found) != len(expected):
            problems.append(f"{len(found)} {kind}, the contract has {len(expected)}")
            continue
        for tensor, want in zip(found, expected, strict=True):
            shape = [max_points if d is None else d for d in want.shape]
            if tensor["shape"] != shape or tensor["dtype"] != FLOAT32:
                problems.append(f"{kind[:-1]} {want.name}: {tensor} != float32 {shape}")
    return problems
