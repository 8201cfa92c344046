"""Options of a target whose int8 encoder the mixed-precision search can choose
(docs/mixed-precision.md): ONNX int8-static and TFLite int8-full."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DeployError
from ..quantization.calibration import scoring_photos
from ..quantization.search_target import SEARCH_IMAGES, check_margin, check_min_iou, default_margin
from ..vocabulary import Precision
from .base import ExportContext, OptionsError, TargetOptions


def calibrated_on(ctx: ExportContext) -> list[str]:
    """The names of the images that calibrate the search's activation ranges (for its record)."""
    source = ctx.calibration_source()
    return source.get("photos", [f"{source['source']} ({source['images']} images)"])


@dataclass(kw_only=True)
class SearchableOptions(TargetOptions):
    """``min_iou``: None keeps the target's own int8 encoder; a value in (0, 1] searches the fewest
    float blocks whose encoder reaches this mean mask IoU, the int8 gate's min-IoU floor raised by
    ``search_margin`` and its cosine floor, on ``search_images`` held-out scoring photos (ONNX:
    the decoder's blocks too, against the decoder gate's floors). The two
    tune the search: None is the default, and a value without ``min_iou`` is an error. Keyword
    only, so that each target's own fields keep their positions."""

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
        """The int8 search's raise of the min-IoU floor (``search_margin`` or the default)."""
        return self.margin_for(Precision.INT8_STATIC)

    def margin_for(self, precision: Precision) -> float:
        """The raise of ``precision``'s min-IoU floor: ``search_margin``, or the default."""
        return default_margin(precision) if self.search_margin is None else self.search_margin

    @property
    def scoring_images(self) -> int:
        """How many held-out photos the search scores on (``search_images`` or the default)."""
        return SEARCH_IMAGES if self.search_images is None else self.search_images
