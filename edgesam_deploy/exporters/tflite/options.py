"""Options of the TFLite target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...errors import DeployError
from ...quantization.search_target import check_min_iou
from ...vocabulary import Target
from ..base import OptionsError, TargetOptions

MAX_POINTS = 64


def default_point_counts() -> tuple[int, ...]:
    return tuple(range(1, 17))


@dataclass
class TfliteOptions(TargetOptions):
    """``point_counts``: the decoder gets one signature per N in it (LiteRT has no dynamic N).

    ``min_iou``: None quantizes every encoder block of int8-full; a value in (0, 1] keeps float the
    fewest blocks whose encoder reaches this mean mask IoU (and the int8 gate's other floors) on
    the calibration images (docs/tflite.md, docs/mixed-precision.md)."""

    target: ClassVar[Target] = Target.TFLITE
    point_counts: tuple[int, ...] = field(default_factory=default_point_counts)
    min_iou: float | None = None

    def __post_init__(self) -> None:
        try:
            counts = sorted({int(n) for n in self.point_counts})
        except (TypeError, ValueError):
            raise OptionsError(
                f"tflite point_counts must be whole numbers, got {self.point_counts!r}"
            ) from None
        if not counts or counts[0] < 1 or counts[-1] > MAX_POINTS:
            raise OptionsError(
                f"tflite point counts must lie in 1..{MAX_POINTS}, got {counts or 'none'}"
            )
        self.point_counts = tuple(counts)
        if self.min_iou is not None:
            try:
                check_min_iou(self.min_iou)
            except DeployError as exc:
                raise OptionsError(str(exc)) from exc
