"""One interface for every runtime that executes an artifact: ONNX Runtime, LiteRT, Core ML, PyTorch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DeployError
from ..manifest import ArtifactRecord
from ..vocabulary import GraphSpec, TensorSpec

if TYPE_CHECKING:
    from ..modeling import EdgeSam


Tensors = tuple[TensorSpec, ...]


class NotRunnableHere(DeployError):
    """A valid artifact whose runtime cannot execute on this machine (e.g. an Apple-only delegate
    on Linux): reports say "not measured here" and why, instead of failing."""


class GraphSession(ABC):
    """A loaded encoder or decoder artifact.

    ``run`` takes and returns the official tensor names: encoder ``image`` -> ``image_embeddings``;
    decoder ``image_embeddings``, ``point_coords`` [1, N, 2], ``point_labels`` [1, N] ->
    ``scores`` [1, 4], ``masks`` [1, 4, 256, 256]. Prompts are never padded beyond the official
    single (0, 0, -1) point: extra padding tokens take part in the attention and change the masks.
    """

    runtime: str = ""
    note: str = ""  # caveat for reports, e.g. that a runtime is emulated

    def __init__(self, record: ArtifactRecord, path: Path) -> None:
        self.record = record
        self.path = path

    @classmethod
    def open(
        cls, record: ArtifactRecord, path: Path, model: EdgeSam | None = None, **options: Any
    ) -> GraphSession:
        """Load an artifact. ``model`` (the reference weights) is offered to sessions that need it,
        e.g. Core ML's fp16 emulation where Core ML cannot predict; most ignore it."""
        return cls(record, path, **options)

    @property
    def graph(self) -> GraphSpec:
        """The interface of the loaded graph (names and shapes of its inputs and outputs)."""
        return self.record.graph

    def interfaces(self) -> list[tuple[Tensors, Tensors]]:
        """The inputs and outputs the loaded file really has, one pair per entry point (a LiteRT
        signature); empty where the runtime cannot tell. A dynamic axis is None."""
        return []

    def check_interface(self) -> None:
        """Refuse, in one line naming the file, a graph that is not the contract of its record's
        role (an encoder filed as the decoder, a plain decoder said to take mask inputs) and a
        record whose declared inputs or outputs are not that contract."""
        want = self.graph
        for inputs, outputs in self.interfaces():
            if not (_fits(inputs, want.inputs) and _fits(outputs, want.outputs)):
                raise self._mismatch("found", inputs, outputs)
        declared = tuple(
            tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in tensors)
            for tensors in (self.record.inputs, self.record.outputs)
        )
        if declared != (want.inputs, want.outputs):
            raise self._mismatch("the manifest declares", *declared)

    def _mismatch(self, what: str, inputs: Tensors, outputs: Tensors) -> DeployError:
        want = self.graph
        mask = " (with mask inputs)" if "mask_input" in want.input_names else ""
        return DeployError(
            f"{self.path}: expected the {want.role}{mask} interface {_describe(want.inputs)} -> "
            f"{_describe(want.outputs)}, {what} {_describe(inputs)} -> {_describe(outputs)}"
        )

    def accepts_points(self, n: int) -> bool:
        """Whether the decoder takes a prompt of N points (per-N artifacts override this)."""
        return True

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute once; float32 outputs keyed by official names."""

    def describe(self) -> dict:
        """Runtime facts for reports (provider, delegate, threads ...)."""
        return {"runtime": self.runtime}


def _describe(tensors: Tensors) -> str:
    """E.g. ``image [1, 3, 1024, 1024] float32``; ``?`` marks a dynamic axis."""
    if not tensors:
        return "nothing"
    return ", ".join(
        f"{t.name} [{', '.join('?' if d is None else str(d) for d in t.shape)}] {t.dtype}"
        for t in tensors
    )


def _fits(found: Tensors, want: Tensors) -> bool:
    """Whether tensors ``found`` in a file are those of ``want`` (the same names, dtypes and
    ranks; a fixed axis of ``want`` fixed alike or dynamic in the file)."""
    have = {t.name: t for t in found}
    if len(have) != len(found) or set(have) != {t.name for t in want}:
        return False
    return all(
        have[t.name].dtype == t.dtype
        and len(have[t.name].shape) == len(t.shape)
        and all(w is None or f is None or f == w for f, w in zip(have[t.name].shape, t.shape))
        for t in want
    )
