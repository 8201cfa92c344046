"""One interface for every runtime that executes an artifact: ONNX Runtime, LiteRT, Core ML, PyTorch."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DeployError
from ..manifest import ArtifactRecord
from ..vocabulary import GraphSpec

if TYPE_CHECKING:
    from ..modeling import EdgeSam


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
    def open(cls, record: ArtifactRecord, path: Path, model: "EdgeSam | None" = None, **options: Any) -> "GraphSession":
        """Load an artifact. ``model`` (the reference weights) is offered to sessions that need it,
        e.g. Core ML's fp16 emulation where Core ML cannot predict; most ignore it."""
        return cls(record, path, **options)

    @property
    def graph(self) -> GraphSpec:
        """The interface of the loaded graph (names and shapes of its inputs and outputs)."""
        return self.record.graph

    def accepts_points(self, n: int) -> bool:
        """Whether the decoder takes a prompt of N points (per-N artifacts override this)."""
        return True

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute once; float32 outputs keyed by official names."""

    def describe(self) -> dict:
        """Runtime facts for reports (provider, delegate, threads ...)."""
        return {"runtime": self.runtime}
