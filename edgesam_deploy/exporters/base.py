"""The one exporter interface (after Hugging Face optimum): a target module implements ``export``."""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np
import torch

from ..checkpoints import ModelSource
from ..errors import DeployError, require
from ..fileio import sha256_path, size_bytes
from ..graphs import DecoderGraph, EncoderGraph, ScoreKind, TensorSpec
from ..manifest import ArtifactRecord
from ..modeling import EdgeSam

ProgressFn = Callable[[str], None]
T = TypeVar("T")


@dataclass
class ExportOptions:
    """Options shared by all targets; a target ignores what does not apply to it."""

    precisions: list[str] | None = None  # None: the target's defaults
    scores: ScoreKind = "iou"
    calibration_dir: Path | None = None
    calibration_size: int = 8
    num_points: int = 16  # largest N with its own decoder signature where N cannot be dynamic (TFLite)
    max_points: int = 16  # upper bound of a flexible N (Core ML)
    min_ios: int = 17
    compute_units: str = "ALL"
    target_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportContext:
    """Everything an exporter needs; graphs are built once and shared by all targets."""

    model: EdgeSam
    source: ModelSource
    out_dir: Path
    options: ExportOptions = field(default_factory=ExportOptions)
    progress: ProgressFn = lambda msg: None
    _equalized: dict[float, tuple[EncoderGraph, dict[str, Any]]] = field(default_factory=dict, repr=False)

    @cached_property
    def encoder_graph(self) -> EncoderGraph:
        """Re-parameterized, bilinear encoder (eval)."""
        return EncoderGraph(self.model, fold=True).eval()

    @cached_property
    def decoder_graph(self) -> DecoderGraph:
        return DecoderGraph(self.model, scores=self.options.scores).eval()

    @cached_property
    def calibration_images(self) -> list[np.ndarray]:
        """Preprocessed calibration images, each 1 x 3 x 1024 x 1024 float32."""
        from ..quantization.calibration import calibration_images

        return calibration_images(self.options.calibration_dir, self.options.calibration_size)

    @cached_property
    def calibration_embeddings(self) -> list[np.ndarray]:
        """The float encoder's output on each calibration image, 1 x 256 x 64 x 64 float32."""
        with torch.no_grad():
            return [self.encoder_graph(torch.from_numpy(x)).numpy() for x in self.calibration_images]

    @cached_property
    def stream_peaks(self) -> list[torch.Tensor]:
        """Per residual stream of the encoder, max |x| per channel on the calibration images."""
        from ..quantization.equalize import stream_peaks

        return stream_peaks(self.encoder_graph.encoder, self.calibration_images)

    def equalized_encoder(self, alpha: float) -> tuple[EncoderGraph, dict[str, Any]]:
        """A copy of the encoder graph with its residual streams equalized (same function within
        float32 rounding; the source of int8 encoders) and the record of what was done."""
        from ..quantization.equalize import equalize_

        if alpha not in self._equalized:
            graph = copy.deepcopy(self.encoder_graph)
            self._equalized[alpha] = (graph, equalize_(graph.encoder, self.stream_peaks, alpha))
        return self._equalized[alpha]

    def best_equalized(self, build: Callable[[EncoderGraph, float], T],
                       embed: Callable[[T, list[np.ndarray]], list[np.ndarray]]) -> tuple[T, dict[str, Any]]:
        """Build an int8 encoder from the encoder equalized with each of ``ALPHA_CANDIDATES`` and keep
        the one whose embeddings of the calibration images are closest to the float encoder's
        (highest lowest cosine). ``embed(artifact, images)`` runs it. Returns it and its record."""
        from ..parity.metrics import cosine
        from ..quantization.equalize import ALPHA_CANDIDATES

        best: tuple[float, T, dict[str, Any]] | None = None
        trials = {}
        for alpha in ALPHA_CANDIDATES:
            graph, record = self.equalized_encoder(alpha)
            artifact = build(graph, alpha)
            outputs = embed(artifact, self.calibration_images)
            score = min(cosine(ref, out) for ref, out in zip(self.calibration_embeddings, outputs))
            trials[str(alpha)] = round(score, 6)
            if best is None or score > best[0]:
                best = (score, artifact, record)
        assert best is not None
        return best[1], {**best[2], "images": len(self.calibration_images), "calibration_cosine_by_alpha": trials}

    @cached_property
    def calibration_decoder_feeds(self) -> list[dict[str, np.ndarray]]:
        """Decoder calibration feeds from the calibration images (embeddings + varied prompts)."""
        from ..quantization.calibration import decoder_calibration_feeds

        return decoder_calibration_feeds(self.encoder_graph, self.calibration_images)


class Exporter(ABC):
    """Writes the encoder and decoder graphs of one target in each requested precision."""

    target: ClassVar[str]
    extra: ClassVar[str]
    required_modules: ClassVar[tuple[str, ...]]
    precisions: ClassVar[tuple[str, ...]]
    default_precisions: ClassVar[tuple[str, ...]]

    def check_dependencies(self) -> None:
        """Raise MissingDependencyError naming the pip extra if a converter is missing."""
        for module in self.required_modules:
            require(module, self.extra)

    def resolve_precisions(self, requested: list[str] | None) -> list[str]:
        chosen = list(requested) if requested else list(self.default_precisions)
        unknown = [p for p in chosen if p not in self.precisions]
        if unknown:
            raise DeployError(
                f"{self.target} has no precision {', '.join(unknown)}; choose from {', '.join(self.precisions)}"
            )
        return chosen

    @abstractmethod
    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        """Write the artifacts under ``ctx.out_dir`` (atomically) and describe them."""

    def make_record(
        self,
        ctx: ExportContext,
        path: Path,
        role: str,
        precision: str,
        inputs: tuple[TensorSpec, ...] | list[TensorSpec],
        outputs: tuple[TensorSpec, ...] | list[TensorSpec],
        **details: Any,
    ) -> ArtifactRecord:
        """Manifest record of a finished artifact (size and SHA-256 read from disk)."""
        return ArtifactRecord(
            file=str(Path(path).relative_to(ctx.out_dir)),
            target=self.target,
            role=role,
            precision=precision,
            inputs=[s.as_dict() for s in inputs],
            outputs=[s.as_dict() for s in outputs],
            size_bytes=size_bytes(path),
            sha256=sha256_path(path),
            details={"scores": ctx.options.scores, **details} if role == "decoder" else details,
        )
