"""The target of the mixed-precision search, in the int8 parity gate's own statistics."""

from __future__ import annotations

from ..errors import DeployError
from ..parity.thresholds import Threshold, thresholds_for
from ..vocabulary import Precision, Role

# The min-IoU floor of the search is the gate's raised by this much: a greedy search stops with
# almost no room on its binding statistic, and the minimum over unseen photos sits lower than over
# the scoring photos (measured: docs/mixed-precision.md).
SEARCH_MARGIN = 0.15
SEARCH_IMAGES = 6  # every held-out photo: 6 x 5 prompts x 4 masks (docs/mixed-precision.md)


def check_min_iou(value: float) -> float:
    """``value`` if it is a usable mean-IoU target, in (0, 1]; else a DeployError."""
    if not 0.0 < value <= 1.0:
        raise DeployError(f"--min-iou {value:g}: must be in (0, 1]")
    return value


def _room(precision: Precision) -> float:
    """How far the encoder gate's min-IoU floor of ``precision`` is below 1."""
    return round(1.0 - thresholds_for(precision, Role.ENCODER)["mask_iou_min"][1], 6)


def default_margin(precision: Precision = Precision.INT8_STATIC) -> float:
    """``SEARCH_MARGIN`` where it keeps the floor below 1 (int8: 0.80 -> 0.95), else half the
    room above ``precision``'s min-IoU floor (fp16: 0.90 -> 0.95)."""
    room = _room(precision)
    return SEARCH_MARGIN if SEARCH_MARGIN < room else room / 2


def check_margin(value: float, precision: Precision = Precision.INT8_STATIC) -> float:
    """``value`` if the gate's min-IoU floor raised by it stays in [floor, 1]; else a DeployError."""
    room = _room(precision)
    if not 0.0 <= value <= room:
        raise DeployError(f"--search-margin {value:g}: must be in [0, {room:g}]")
    return value


def search_target(
    min_iou: float,
    margin: float = SEARCH_MARGIN,
    precision: Precision = Precision.INT8_STATIC,
    role: Role = Role.ENCODER,
) -> dict[str, Threshold]:
    """The parity gate of ``precision`` for ``role`` with its mean mask IoU set to ``min_iou`` and
    its min-IoU floor (masks of ``MIN_MASK_PIXELS`` and more) raised by ``margin``; the other
    floors (an encoder's embedding cosine, a decoder's score error) stay the gate's."""
    target = dict(thresholds_for(precision, role))
    target["mask_iou_mean"] = (">=", check_min_iou(min_iou))
    op, floor = target["mask_iou_min"]
    target["mask_iou_min"] = (op, round(floor + check_margin(margin, precision), 6))
    return target
