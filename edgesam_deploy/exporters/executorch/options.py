"""Options of the ExecuTorch target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...vocabulary import Target
from ..base import check_max_points
from ..search_options import SearchableOptions


@dataclass
class ExecutorchOptions(SearchableOptions):
    """``max_points``: upper bound of the decoder's dynamic point count N (``torch.export`` Dim
    1..max_points, carried into the ``.pte``); a longer prompt is refused before it runs.

    ``min_iou`` (``SearchableOptions``): None quantizes every encoder block of int8-static
    (docs/executorch.md, docs/mixed-precision.md)."""

    target: ClassVar[Target] = Target.EXECUTORCH
    max_points: int = 16

    def __post_init__(self) -> None:
        check_max_points("--max-points", self.max_points)
        super().__post_init__()
