"""Core ML sessions: the real ``.mlpackage`` on macOS, an fp16 emulation in PyTorch elsewhere.

Core ML predictions exist only on macOS. On Linux ``CoremlSession.open`` returns a
``CoremlEmulationSession`` built from the reference model: the exported graph computed by PyTorch on
the CPU with every op rounded to fp16 except the ops the package keeps in fp32, and with the weights
read (decompressed) from the package itself. Its figures are an emulation, never Core ML's.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DeployError, first_line, require
from ..graphs import build_graph, graph_outputs
from ..manifest import ArtifactRecord
from ..modeling import EdgeSam
from ..vocabulary import ComputeUnit, Precision, ScoreKind
from .base import GraphSession

EMULATION_NOTE = "fp16 emulation on CPU, not Core ML"


def compute_unit(units: str) -> ComputeUnit:
    """A compute-unit name as ``ComputeUnit`` (DeployError naming the choices otherwise)."""
    try:
        return ComputeUnit(units)
    except ValueError:
        choices = ", ".join(ComputeUnit)
        raise DeployError(f"unknown Core ML compute units '{units}'; choose from {choices}") from None


class CoremlSession(GraphSession):
    """A package run by Core ML (macOS) on ``compute_units`` (default: the preference recorded
    at export)."""

    runtime = "coreml"

    def __init__(self, record: ArtifactRecord, path: Path, compute_units: str | None = None) -> None:
        super().__init__(record, path)
        ct = require("coremltools", "coreml")
        self.compute_units = compute_unit(compute_units or record.details.get("compute_units", "ALL"))
        try:
            self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, self.compute_units))
        except Exception as exc:  # Core ML reports compile errors as plain exceptions
            raise DeployError(f"{path}: Core ML cannot load it ({first_line(exc)})") from exc
        self._outputs = [o.name for o in self.model.get_spec().description.output]

    @classmethod
    def open(cls, record: ArtifactRecord, path: Path, model: EdgeSam | None = None, **options: Any) -> GraphSession:
        """The real package on macOS; elsewhere the fp16 emulation (needs ``model``)."""
        if sys.platform == "darwin":
            return cls(record, path, **options)
        if model is None:
            raise DeployError("Core ML predictions need macOS; on Linux the fp16 emulation needs the reference model")
        return CoremlEmulationSession(record, path, model)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.graph.input_names
        out = self.model.predict({k: np.ascontiguousarray(feeds[k], dtype=np.float32) for k in names})
        return {k: np.asarray(out[k], dtype=np.float32) for k in self._outputs}

    def describe(self) -> dict:
        return {"runtime": self.runtime, "compute_units": self.compute_units, "emulation": False}


def _load_package_weights(graph: nn.Module, path: Path) -> tuple[int, list[str]]:
    """Copy the package's (decompressed) weights into ``graph``'s parameters and buffers of the same
    name. -> (number copied, package weights that match no parameter)."""
    from ..quantization.coreml_compress import decompressed_weights, sanitize

    weights = decompressed_weights(path)
    tensors = {sanitize(n): t for n, t in [*graph.named_parameters(), *graph.named_buffers()]}
    copied, unmatched = 0, []
    with torch.no_grad():
        for name, value in weights.items():
            target = tensors.get(name)
            if target is None:
                unmatched.append(name)
                continue
            src = torch.from_numpy(value)
            if src.shape != target.shape and src.ndim >= 2 and src.transpose(0, 1).shape == target.shape:
                src = src.transpose(0, 1)  # conv_transpose layout
            if src.shape != target.shape:
                raise DeployError(f"{path}: weight {name} has shape {tuple(src.shape)}, the graph {tuple(target.shape)}")
            target.copy_(src)
            copied += 1
    return copied, unmatched


class CoremlEmulationSession(GraphSession):
    """What a Core ML package computes, emulated by PyTorch on the CPU (Linux).

    The graph is the exported one (folded encoder / decoder with the recorded score kind); its
    weights come from the package (decompressed for int8 / palettized variants); ops outside the
    recorded fp32 groups are rounded to fp16 (``coreml_fp16.Fp16Emulation``). Not emulated: Core ML's
    own kernels and accumulation order, the Neural Engine's fp16 accumulation, and int8 activations.
    """

    runtime = "coreml-emulation"

    def __init__(self, record: ArtifactRecord, path: Path, model: EdgeSam) -> None:
        super().__init__(record, path)
        from .coreml_fp16 import validate_groups

        scores = ScoreKind(record.details.get("scores", ScoreKind.IOU))
        mask_input = "mask_input" in record.graph.input_names
        self.module: nn.Module = build_graph(model, record.role, scores, mask_input)
        self.fp16 = record.precision != Precision.FP32
        self.fp32_ops = validate_groups(record.details.get("fp32_ops", []))
        self.weights_from_package, unmatched = _load_package_weights(self.module, path)
        notes = [EMULATION_NOTE if self.fp16 else "fp32 PyTorch on CPU, not Core ML"]
        notes.append(f"{self.weights_from_package} weight tensors read from the package")
        if unmatched:
            notes.append(f"{len(unmatched)} package constants not emulated ({', '.join(unmatched[:3])})")
        if record.precision == Precision.INT8_FULL:
            notes.append("int8 activations not emulated (weights only)")
        self.note = "; ".join(notes)
        self.runtime = f"coreml-emulation ({notes[0]})"

    @torch.no_grad()
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .coreml_fp16 import Fp16Emulation

        names = self.graph.input_names
        args = [torch.from_numpy(np.ascontiguousarray(feeds[k], dtype=np.float32)) for k in names]
        if self.fp16:
            with Fp16Emulation(self.module, self.fp32_ops):
                out = self.module(*args)
        else:
            out = self.module(*args)
        return graph_outputs(self.record.role, out)

    def describe(self) -> dict:
        return {"runtime": self.runtime, "emulation": True, "note": self.note, "fp32_ops": self.fp32_ops}


__all__ = ["EMULATION_NOTE", "CoremlEmulationSession", "CoremlSession", "compute_unit"]
