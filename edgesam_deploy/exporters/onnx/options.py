"""Options of the ONNX target (only the precisions: the graphs follow the official contract)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...vocabulary import Target
from ..base import TargetOptions


@dataclass
class OnnxOptions(TargetOptions):
    """The precisions to write; opsets and simplification are fixed by measurement."""

    target: ClassVar[Target] = Target.ONNX
