"""Options of the ExecuTorch target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...vocabulary import Target
from ..base import OptionsError
from ..search_options import SearchableOptions

MAX_POINTS = 64


@dataclass
class ExecutorchOptions(SearchableOptions):
    """``max_points``: upper bound of the decoder's dynamic point count N (``torch.export`` Dim
    1..max_points, carried into the ``.pte``); a longer prompt is refused before it runs.

    ``min_iou`` (``SearchableOptions``): None quantizes every encoder block of int8-static
    (docs/executorch.md, docs/mixed-precision.md)."""

    target: ClassVar[Target] = Target.EXECUTORCH
    max_points: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.max_points <= MAX_POINTS:
            raise OptionsError(f"--max-points {self.max_points}: choose 1..{MAX_POINTS}")
        super().__post_init__()
