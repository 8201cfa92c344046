"""Options of the ONNX target: the precisions (the graphs follow the official contract) and the
opt-in mixed-precision search of the int8-static encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...vocabulary import Target
from ..search_options import SearchableOptions


@dataclass
class OnnxOptions(SearchableOptions):
    """The precisions to write; opsets and simplification are fixed by measurement. ``min_iou``
    (``SearchableOptions``): None keeps the hand-picked float blocks of the int8-static encoder."""

    target: ClassVar[Target] = Target.ONNX
