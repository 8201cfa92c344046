"""The one exporter interface (after Hugging Face optimum): a target module implements ``export``."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from ..checkpoints import ModelSource
from ..errors import DeployError, require
from ..fileio import sha256_path, size_bytes
from ..graphs import DecoderGraph, EncoderGraph, build_graph
from ..manifest import ArtifactRecord
from ..modeling import EdgeSam
from ..modeling.decoder_fast import AttentionForm
from ..samples import CALIBRATION_PHOTOS
from ..vocabulary import (
    GraphSpec,
    Precision,
    ProgressFn,
    Role,
    ScoreKind,
    Target,
    counting,
    graph_spec,
)

T = TypeVar("T")


class OptionsError(DeployError):
    """An export option has a value its target cannot use."""


MIN_POINTS = 2  # decoder points of the shortest prompt: one click and the padding point, or a box
MAX_POINTS = 64


def check_max_points(option: str, n: int) -> None:
    """``n``, the most decoder points an export takes (``option`` names it), must hold the shortest
    prompt and stay within ``MAX_POINTS``; OptionsError otherwise."""
    if not MIN_POINTS <= n <= MAX_POINTS:
        raise OptionsError(
            f"{option} {n}: choose {MIN_POINTS}..{MAX_POINTS} (the shortest prompt, one point or a "
            f"box, takes {MIN_POINTS} decoder points: a click and the padding point, or two corners)"
        )


@dataclass
class TargetOptions:
    """Options of one target; each exporter subclasses it with the fields only it reads."""

    target: ClassVar[Target]
    precisions: tuple[str, ...] | None = None  # precision names or aliases; None: the defaults


@dataclass
class ExportOptions:
    """Options every target shares, and each target's own (absent: that target's defaults)."""

    scores: ScoreKind = ScoreKind.IOU
    calibration_dir: Path | None = None
    calibration_size: int = 8
    mask_input: bool = False  # the decoder takes a previous mask (click-by-click refinement)
    targets: dict[Target, TargetOptions] = field(default_factory=dict)

    @classmethod
    def of(cls, *per_target: TargetOptions, **shared: Any) -> ExportOptions:
        """``ExportOptions.of(OnnxOptions((Precision.FP32,)), calibration_size=4)``."""
        return cls(targets={o.target: o for o in per_target}, **shared)


@dataclass
class ExportContext:
    """Everything an exporter needs. One context serves every target of an export: the graphs,
    the calibration data and the equalization search are computed once and shared."""

    model: EdgeSam
    source: ModelSource
    out_dir: Path
    options: ExportOptions = field(default_factory=ExportOptions)
    progress: ProgressFn = lambda msg: None
    _graphs: dict[tuple[Role, AttentionForm | None], Any] = field(default_factory=dict, repr=False)
    _equalized: dict[float, tuple[EncoderGraph, dict[str, Any]]] = field(
        default_factory=dict, repr=False
    )

    def graph(self, role: Role, rewrite: AttentionForm | None = None) -> Any:
        """The deployable graph of ``role`` (folded bilinear encoder, or decoder; with ``rewrite``
        the rewritten one, ``graphs.DecoderGraph``), built once."""
        key = (role, rewrite if role == Role.DECODER else None)
        if key not in self._graphs:
            mask_input = self.options.mask_input
            self._graphs[key] = build_graph(
                self.model, role, self.options.scores, mask_input, key[1]
            )
        return self._graphs[key]

    def spec(self, role: Role) -> GraphSpec:
        """The interface of ``role``'s graph in this export."""
        return graph_spec(role, self.options.mask_input)

    def stem(self, role: Role) -> str:
        """File stem of ``role``'s artifacts: ``encoder``, ``decoder`` or ``decoder-mask-input``."""
        return (
            "decoder-mask-input" if role == Role.DECODER and self.options.mask_input else str(role)
        )

    @property
    def encoder_graph(self) -> EncoderGraph:
        return self.graph(Role.ENCODER)

    @property
    def decoder_graph(self) -> DecoderGraph:
        return self.graph(Role.DECODER)

    def target_options(self, target: Target, kind: type[TargetOptions]) -> Any:
        """The options of ``target`` (an instance of ``kind``), its defaults when none were given."""
        options = self.options.targets.get(target) or kind()
        if not isinstance(options, kind):
            raise DeployError(
                f"{target} options must be {kind.__name__}, got {type(options).__name__}"
            )
        return options

    def calibration_source(self) -> dict[str, Any]:
        """Where the calibration images came from (recorded with every calibrated artifact)."""
        count = len(self.calibration_images)
        if self.options.calibration_dir is not None:
            return {"source": str(self.options.calibration_dir), "images": count}
        photos = list(CALIBRATION_PHOTOS)[:count]
        return {"source": "scikit-image sample photos", "photos": photos, "images": count}

    @cached_property
    def calibration_images(self) -> list[np.ndarray]:
        """Preprocessed calibration images, each 1 x 3 x 1024 x 1024 float32."""
        from ..quantization.calibration import calibration_images

        return calibration_images(self.options.calibration_dir, self.options.calibration_size)

    @cached_property
    def calibration_embeddings(self) -> list[np.ndarray]:
        """The float encoder's output on each calibration image, 1 x 256 x 64 x 64 float32."""
        with torch.no_grad():
            return [
                self.encoder_graph(torch.from_numpy(x)).numpy() for x in self.calibration_images
            ]

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

    def best_equalized(
        self,
        build: Callable[[EncoderGraph, float], T],
        embed: Callable[[T, list[np.ndarray]], list[np.ndarray]],
        alphas: tuple[float, ...] | None = None,
    ) -> tuple[T, dict[str, Any]]:
        """The int8 encoder built from the best-equalized encoder (``quantization.equalize``'s
        search on the calibration images, over ``alphas`` or its default strengths) and its
        record."""
        from ..quantization.equalize import ALPHA_CANDIDATES, search_equalization

        return search_equalization(
            self.equalized_encoder,
            build,
            embed,
            self.calibration_images,
            self.calibration_embeddings,
            alphas or ALPHA_CANDIDATES,
        )

    @cached_property
    def calibration_decoder_feeds(self) -> list[dict[str, np.ndarray]]:
        """Decoder calibration feeds from the calibration images (embeddings + varied prompts)."""
        from ..quantization.calibration import decoder_calibration_feeds, with_previous_masks

        feeds = decoder_calibration_feeds(self.encoder_graph, self.calibration_images)
        if self.options.mask_input:
            plain = build_graph(self.model, Role.DECODER, self.options.scores)
            feeds = with_previous_masks(plain, feeds)
        return feeds


class Exporter(ABC):
    """Writes the encoder and decoder graphs of one target in each requested precision."""

    target: ClassVar[Target]
    extra: ClassVar[str]
    required_modules: ClassVar[tuple[str, ...]]
    precisions: ClassVar[tuple[Precision, ...]]
    default_precisions: ClassVar[tuple[Precision, ...]]
    options_class: ClassVar[type[TargetOptions]] = TargetOptions
    # names a user can guess ("int8") -> this target's recommended variant of that kind
    aliases: ClassVar[dict[str, Precision]] = {}

    def check_dependencies(self) -> None:
        """Raise MissingDependencyError naming the pip extra if a converter is missing."""
        for module in self.required_modules:
            require(module, self.extra)

    def options(self, ctx: ExportContext) -> Any:
        """This target's options in ``ctx`` (an ``options_class``)."""
        return ctx.target_options(self.target, self.options_class)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is one of this target's precisions or aliases."""
        return name in self.precisions or name in self.aliases

    def resolve_precisions(self, requested: tuple[str, ...] | None) -> list[Precision]:
        """The requested precisions (aliases resolved, validated, in order, no repeats), or this
        target's defaults."""
        names = list(requested) if requested else list(self.default_precisions)
        unknown = [str(p) for p in names if not self.knows(p)]
        if unknown:
            choices = ", ".join([*self.precisions, *self.aliases])
            raise DeployError(
                f"{self.target} has no precision {', '.join(unknown)}; choose from {choices}"
            )
        return list(dict.fromkeys(Precision(self.aliases.get(p, p)) for p in names))

    def alias_of(self, ctx: ExportContext, precision: Precision) -> str | None:
        """The alias the user asked for that resolved to ``precision``, if any."""
        requested = self.options(ctx).precisions or ()
        return next((a for a in requested if self.aliases.get(a) == precision), None)

    @abstractmethod
    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        """Write the artifacts under ``ctx.out_dir`` (atomically) and describe them."""

    def make_record(
        self, ctx: ExportContext, path: Path, role: Role, precision: Precision, **details: Any
    ) -> ArtifactRecord:
        """Manifest record of a finished artifact (size and SHA-256 read from disk); one more
        conversion done for ``ctx.progress``."""
        counting(ctx.progress).advance()
        spec = ctx.spec(role)
        if role == Role.DECODER:
            details = {
                "scores": ctx.options.scores,
                "mask_input": ctx.options.mask_input,
                **details,
            }
        alias = self.alias_of(ctx, precision)
        if alias:
            details = {"requested_as": alias, **details}
        return ArtifactRecord(
            file=str(Path(path).relative_to(ctx.out_dir)),
            target=self.target,
            role=role,
            precision=precision,
            inputs=[s.as_dict() for s in spec.inputs],
            outputs=[s.as_dict() for s in spec.outputs],
            size_bytes=size_bytes(path),
            sha256=sha256_path(path),
            details=details,
        )
