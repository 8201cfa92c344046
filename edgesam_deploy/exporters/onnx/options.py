"""Options of the ONNX target: the precisions (the graphs follow the official contract) and the
opt-in mixed-precision search of the int8-static encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...errors import DeployError
from ...quantization.calibration import scoring_photos
from ...quantization.search_target import SEARCH_MARGIN, check_margin, check_min_iou
from ...vocabulary import Target
from ..base import OptionsError, TargetOptions

SEARCH_IMAGES = 6  # every held-out photo: 6 x 5 prompts x 4 masks (docs/mixed-precision.md)


@dataclass
class OnnxOptions(TargetOptions):
    """The precisions to write; opsets and simplification are fixed by measurement.

    ``min_iou``: None keeps the hand-picked float blocks of the int8-static encoder; a value in
    (0, 1] searches the fewest float blocks whose encoder reaches this mean mask IoU, the int8
    gate's min-IoU floor raised by ``search_margin`` and its cosine floor, on ``search_images``
    held-out scoring photos (docs/mixed-precision.md). The two tune the search: None is the
    default, and a value without ``min_iou`` is an error."""

    target: ClassVar[Target] = Target.ONNX
    min_iou: float | None = None
    search_margin: float | None = None
    search_images: int | None = None

    def __post_init__(self) -> None:
        tuning = self.search_margin is not None or self.search_images is not None
        try:
            if self.min_iou is None and tuning:
                raise DeployError("--search-margin and --search-images tune --min-iou: give it")
            if self.min_iou is not None:
                check_min_iou(self.min_iou)
                check_margin(self.margin)
                scoring_photos(self.scoring_images)
        except DeployError as exc:
            raise OptionsError(str(exc)) from exc

    @property
    def margin(self) -> float:
        """The search's raise of the min-IoU floor (``search_margin`` or the default)."""
        return SEARCH_MARGIN if self.search_margin is None else self.search_margin

    @property
    def scoring_images(self) -> int:
        """How many held-out photos the search scores on (``search_images`` or the default)."""
        return SEARCH_IMAGES if self.search_images is None else self.search_images
