"""The project's vocabulary: roles, targets, precisions, compute units, score kinds and graph specs.

Every module speaks these types instead of bare strings. They are ``StrEnum``s, so they compare
equal to, serialize as and parse from the strings stored in manifests and reports, and Typer shows
them as choices. This module imports neither torch nor PIL: the device side uses it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

IMG_SIZE = 1024  # side of the square encoder input
ProgressFn = Callable[[str], None]  # receives one line per step of a long job


@runtime_checkable
class Progress(Protocol):
    """A ``ProgressFn`` that can also count: ``step(msg, total)`` starts a step of ``total``
    units (None: unknown), ``advance(n)`` marks ``n`` of them done; ``progress(msg)`` names the
    current sub-step and keeps the count."""

    def __call__(self, msg: str) -> None: ...

    def step(self, msg: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...


@dataclass(frozen=True)
class _Lines:
    """A plain ``ProgressFn`` seen as a ``Progress``: one line per step, counts dropped."""

    fn: ProgressFn

    def __call__(self, msg: str) -> None:
        self.fn(msg)

    def step(self, msg: str, total: int | None = None) -> None:
        self.fn(msg)

    def advance(self, n: int = 1) -> None:
        pass


def counting(progress: ProgressFn) -> Progress:
    """``progress`` itself when it can count, else a wrapper whose counts go nowhere."""
    return progress if isinstance(progress, Progress) else _Lines(progress)


class Role(StrEnum):
    """Which of the two deployable graphs an artifact is."""

    ENCODER = "encoder"
    DECODER = "decoder"


class Target(StrEnum):
    """An export target: the file format and the runtime family that executes it."""

    ONNX = "onnx"
    TFLITE = "tflite"
    COREML = "coreml"
    EXECUTORCH = "executorch"


class Precision(StrEnum):
    """Numeric format of an artifact; each target supports a subset (its exporter says which)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8_STATIC = "int8-static"  # ONNX: QDQ, per-channel weights, calibrated activations
    INT8_DYNAMIC = "int8-dynamic"  # int8 weights, activations quantized at run time
    INT8_FULL = "int8-full"  # int8 weights and calibrated activations (TFLite; Core ML on macOS)
    INT8_WEIGHT = "int8-weight"  # Core ML: linear int8 weights, fp16 compute
    PALETTE8 = "palette8"  # Core ML: k-means palettized weights, 8/6/4 bits
    PALETTE6 = "palette6"
    PALETTE4 = "palette4"
    COREML_FP16 = "coreml-fp16"  # ExecuTorch: the Core ML delegate, fp16 compute (Apple only)

    @property
    def is_float(self) -> bool:
        return self in (Precision.FP32, Precision.FP16, Precision.COREML_FP16)


class ComputeUnit(StrEnum):
    """Core ML compute units (coremltools' ``ComputeUnit`` names)."""

    ALL = "ALL"
    CPU_AND_NE = "CPU_AND_NE"
    CPU_AND_GPU = "CPU_AND_GPU"
    CPU_ONLY = "CPU_ONLY"


class ScoreKind(StrEnum):
    """What the decoder's ``scores`` output holds."""

    IOU = "iou"  # the IoU head (official default)
    STABILITY = "stability"  # the stability score of each mask


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic axis) and dtype of one graph input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class GraphSpec:
    """The interface of one deployable graph (the official EdgeSAM export contract)."""

    role: Role
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    def input(self, name: str) -> TensorSpec:
        """The input called ``name`` (KeyError if none)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)


ENCODER = GraphSpec(
    Role.ENCODER,
    inputs=(TensorSpec("image", (1, 3, IMG_SIZE, IMG_SIZE)),),
    outputs=(TensorSpec("image_embeddings", (1, 256, 64, 64)),),
)
DECODER = GraphSpec(
    Role.DECODER,
    inputs=(
        TensorSpec("image_embeddings", (1, 256, 64, 64)),
        TensorSpec("point_coords", (1, None, 2)),
        TensorSpec("point_labels", (1, None)),
    ),
    outputs=(TensorSpec("scores", (1, 4)), TensorSpec("masks", (1, 4, 256, 256))),
)
# the decoder that also takes the previous answer (SAM's names and meaning): ``mask_input`` low-res
# logits in the 1024 frame, ``has_mask_input`` 1 to use them, 0 for today's decoder
DECODER_MASK_INPUT = GraphSpec(
    Role.DECODER,
    inputs=(
        *DECODER.inputs,
        TensorSpec("mask_input", (1, 1, 256, 256)),
        TensorSpec("has_mask_input", (1,)),
    ),
    outputs=DECODER.outputs,
)
GRAPHS: dict[Role, GraphSpec] = {Role.ENCODER: ENCODER, Role.DECODER: DECODER}


def graph_spec(role: Role | str, mask_input: bool = False) -> GraphSpec:
    """The graph spec of ``role`` (the decoder with the mask inputs when ``mask_input``)."""
    if mask_input and Role(role) == Role.DECODER:
        return DECODER_MASK_INPUT
    return GRAPHS[Role(role)]
