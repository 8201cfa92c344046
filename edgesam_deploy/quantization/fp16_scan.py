"""fp16 sensitivity of the ONNX encoder's blocks: the int8 scan's machinery (``sensitivity``,
``mixed.run_scan``) with the export's fp16 conversion (``onnx_quant.to_fp16``) in place of int8
quantization. A block kept "float" stays float32; every other node is converted as the export
converts it (its op-type and overflow-guard exclusions included), so step 0 of the path is the
export's own fp16 encoder.

The graphs run on ONNX Runtime's CPU kernels, which compute most fp16 ops in float32 between
Casts: the scan measures fp16 storage of weights and activations, not fp16 accumulation (what a
phone's GPU or NPU adds on top is measured on the device: docs/device-parity.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..parity.engine import Reference
from ..parity.thresholds import Threshold
from ..vocabulary import Precision
from .onnx_quant import Fp16Policy, activation_peaks, to_fp16
from .sensitivity import Evaluator, Policy


class Fp16Evaluator(Evaluator):
    """Builds and judges fp16 encoders of the fp32 ``source`` (the traced export graph): the
    overflow guard's peaks from ``guard_feeds`` (computed once), judged on ``reference``'s scoring
    photos. Blocks are the module scopes that hold convolutions, as in the int8 scan."""

    precision = Precision.FP16
    block_ops = ("Conv",)

    def __init__(
        self,
        source: onnx.ModelProto,
        base: Fp16Policy,
        guard_feeds: list[dict[str, np.ndarray]],
        reference: Reference,
        target: dict[str, Threshold],
        scratch: Path,
        calibrated_on: list[str],
    ) -> None:
        super().__init__(source, base, guard_feeds, reference, target, scratch, calibrated_on)
        self._peaks: dict[str, float] | None = None

    def convert(self, policy: Policy) -> tuple[onnx.ModelProto, dict[str, Any]]:
        """``source`` in fp16 under ``policy`` (an ``Fp16Policy``) -> (model, details)."""
        if self._peaks is None:
            self._peaks = activation_peaks(self.source, self.feeds)
        assert isinstance(policy, Fp16Policy)
        return to_fp16(self.source, policy, self.feeds, self._peaks)
