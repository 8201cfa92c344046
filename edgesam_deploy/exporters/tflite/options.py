"""Options of the TFLite target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...vocabulary import Target
from ..base import MAX_POINTS, OptionsError, check_max_points
from ..search_options import SearchableOptions


def default_point_counts() -> tuple[int, ...]:
    return tuple(range(1, 17))


@dataclass
class TfliteOptions(SearchableOptions):
    """``point_counts``: the decoder gets one signature per N in it (LiteRT has no dynamic N).

    ``min_iou`` (``SearchableOptions``): None quantizes every encoder block of int8-full
    (docs/tflite.md, docs/mixed-precision.md)."""

    target: ClassVar[Target] = Target.TFLITE
    point_counts: tuple[int, ...] = field(default_factory=default_point_counts)

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
        check_max_points("--num-points", counts[-1])
        self.point_counts = tuple(counts)
        super().__post_init__()
