"""Options of the ONNX target: the precisions (the graphs follow the official contract), the
width of the int8 weights, and the opt-in mixed-precision search of the int8-static encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from ...vocabulary import Target
from ..base import OptionsError
from ..search_options import SearchableOptions


class Int8Weights(StrEnum):
    """How wide the int8 graphs' weights are (docs/onnx.md, "7-bit or 8-bit weights").

    ``7-bit``: right on every CPU. x86 CPUs without VNNI multiply u8 x s8 with ``vpmaddubsw``,
    which adds pairs of products in 16 bits: 8-bit weights can saturate there.
    ``8-bit``: the full range (one more bit), the same kernels' speed; for x86 CPUs with VNNI
    (AVX512-VNNI, AVX-VNNI) and ARM CPUs (SDOT/UDOT), which add in 32 bits.
    """

    SEVEN_BIT = "7-bit"
    EIGHT_BIT = "8-bit"

    @property
    def bits(self) -> int:
        return 7 if self == Int8Weights.SEVEN_BIT else 8


@dataclass
class OnnxOptions(SearchableOptions):
    """The precisions to write; opsets and simplification are fixed by measurement.
    ``int8_weights``: the int8 graphs' weight width (``Int8Weights``; None: 7-bit, and an int8
    precision need not be among those written). ``min_iou`` (``SearchableOptions``): None keeps
    the hand-picked float blocks of the int8-static encoder."""

    target: ClassVar[Target] = Target.ONNX
    int8_weights: Int8Weights | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        try:
            if self.int8_weights is not None:
                self.int8_weights = Int8Weights(self.int8_weights)
        except ValueError:
            choices = ", ".join(w.value for w in Int8Weights)
            raise OptionsError(
                f"int8 weights must be one of {choices}, got {self.int8_weights!r}"
            ) from None
        super().__post_init__()

    @property
    def weights(self) -> Int8Weights:
        """The int8 weight width the graphs get (``int8_weights``, or 7-bit)."""
        return self.int8_weights or Int8Weights.SEVEN_BIT
