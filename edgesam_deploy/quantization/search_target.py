"""The target of the mixed-precision search, in the int8 parity gate's own statistics."""

from __future__ import annotations

from ..errors import DeployError
from ..parity.thresholds import Threshold, thresholds_for
from ..vocabulary import Precision, Role


def check_min_iou(value: float) -> float:
    """``value`` if it is a usable mean-IoU target, in (0, 1]; else a DeployError."""
    if not 0.0 < value <= 1.0:
        raise DeployError(f"--min-iou {value:g}: must be in (0, 1]")
    return value


def search_target(
    min_iou: float, precision: Precision = Precision.INT8_STATIC
) -> dict[str, Threshold]:
    """The encoder parity gate of ``precision`` with its mean mask IoU set to ``min_iou``: the
    min-IoU floor (masks of ``MIN_MASK_PIXELS`` and more) and the embedding cosine stay the gate's."""
    target = dict(thresholds_for(precision, Role.ENCODER))
    target["mask_iou_mean"] = (">=", check_min_iou(min_iou))
    return target
