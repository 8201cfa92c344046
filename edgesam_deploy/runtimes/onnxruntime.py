"""ONNX Runtime session (CPU by default; CUDA / TensorRT providers when installed and asked for)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DeployError, first_line, require
from ..manifest import ArtifactRecord
from ..vocabulary import TensorSpec
from .base import GraphSession, Tensors

# ONNX Runtime's names of the dtypes that numpy spells otherwise
_DTYPES = {"float": "float32", "double": "float64"}


class OrtSession(GraphSession):
    runtime = "onnxruntime"

    def __init__(
        self,
        record: ArtifactRecord,
        path: Path,
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        super().__init__(record, path)
        ort = require("onnxruntime", "onnx")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise DeployError(
                f"ONNX Runtime here lacks {', '.join(missing)} (available: {', '.join(available)})"
            )
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DeployError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)})") from exc
        self.providers = self.session.get_providers()
        self.threads = threads
        self._outputs = [o.name for o in self.session.get_outputs()]

    def interfaces(self) -> list[tuple[Tensors, Tensors]]:
        return [(_tensors(self.session.get_inputs()), _tensors(self.session.get_outputs()))]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = {i.name for i in self.session.get_inputs()}
        out = self.session.run(self._outputs, {k: v for k, v in feeds.items() if k in names})
        return {k: np.asarray(v, dtype=np.float32) for k, v in zip(self._outputs, out)}

    def describe(self) -> dict:
        return {"runtime": self.runtime, "providers": self.providers, "threads": self.threads}


def _tensors(args: list) -> Tensors:
    """ONNX Runtime's ``NodeArg``s (shape entries: int, or a name or None where dynamic)."""
    out = []
    for arg in args:
        dtype = arg.type.removeprefix("tensor(").removesuffix(")")
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape or ())
        out.append(TensorSpec(arg.name, shape, _DTYPES.get(dtype, dtype)))
    return tuple(out)
