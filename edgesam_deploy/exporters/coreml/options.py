"""Options of the Core ML target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...vocabulary import ComputeUnit, Target
from ..base import OptionsError, TargetOptions, check_max_points

MIN_IOS = (16, 17, 18)
FP32_OPS_AUTO = "auto"


@dataclass
class CoremlOptions(TargetOptions):
    """``min_ios``: deployment target; ``compute_units``: recorded in the metadata and used by
    runtimes that honour it; ``max_points``: upper bound of the decoder's flexible N;
    ``fp32_ops``: op groups kept in fp32 in fp16 programs (``auto``: chosen by measurement)."""

    target: ClassVar[Target] = Target.COREML
    min_ios: int = 17
    compute_units: ComputeUnit = ComputeUnit.ALL
    max_points: int = 16
    fp32_ops: str | tuple[str, ...] = FP32_OPS_AUTO

    def __post_init__(self) -> None:
        if self.min_ios not in MIN_IOS:
            supported = ", ".join(map(str, MIN_IOS))
            raise OptionsError(f"--min-ios {self.min_ios}: Core ML export supports {supported}")
        check_max_points("--max-points", self.max_points)
        try:
            self.compute_units = ComputeUnit(self.compute_units)
        except ValueError:
            choices = ", ".join(ComputeUnit)
            raise OptionsError(
                f"unknown Core ML compute units '{self.compute_units}'; choose from {choices}"
            ) from None
