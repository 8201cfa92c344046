"""Options of the ONNX target: the precisions (the graphs follow the official contract) and the
opt-in mixed-precision search of the int8-static encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...errors import DeployError
from ...quantization.search_target import check_min_iou
from ...vocabulary import Target
from ..base import OptionsError, TargetOptions


@dataclass
class OnnxOptions(TargetOptions):
    """The precisions to write; opsets and simplification are fixed by measurement.

    ``min_iou``: None keeps the hand-picked float blocks of the int8-static encoder; a value in
    (0, 1] searches the fewest float blocks whose encoder reaches this mean mask IoU (and the int8
    gate's other floors) on the calibration images (docs/mixed-precision.md)."""

    target: ClassVar[Target] = Target.ONNX
    min_iou: float | None = None

    def __post_init__(self) -> None:
        if self.min_iou is not None:
            try:
                check_min_iou(self.min_iou)
            except DeployError as exc:
                raise OptionsError(str(exc)) from exc
