"""int8 sensitivity of the ExecuTorch encoder's blocks: pt2e ranges calibrated on the calibration
images, each candidate lowered to XNNPACK and run as a ``.pte`` on the held-out scoring photos.

The blocks are the ONNX scan's (``sensitivity.Block``: stem, block1..block26, fuse2, fuse3, neck),
found from the ``nn_module_stack`` that ``torch.export`` records on every node: a block's ``scope``
is its module path (``encoder.features.<i>``, ``encoder.fuse_stage<k>``, ``encoder.neck``). A block
kept float is a module the XNNPACK quantizer leaves unannotated (``quantize.quantize_int8``), so its
ops run in float inside the delegate between their neighbours' dequantize and quantize. Every
candidate is the export's own pipeline (calibrate, convert, lower, serialize) and is judged as the
program the ExecuTorch runtime runs, by the parity engine (``engine.judge``), as
``sensitivity.Evaluator`` judges the ONNX graphs; never on the parity photos.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import nn

from ...bench.metrics import timed_interleaved
from ...errors import require
from ...parity.engine import Reference, encoder_case_id, judge
from ...parity.thresholds import Threshold, violations
from ...quantization.sensitivity import (
    Block,
    BlockMeasures,
    Measurement,
    _block_name,
    _in_memory_record,
)
from ...runtimes.executorch import _set_threads, program_outputs
from ...vocabulary import GraphSpec, Precision, Target
from .checks import Census
from .lowering import example_feeds, export_graph, lower, xnnpack_partitioner
from .quantize import quantize_int8

# the module path of a block, grouped as sensitivity._SCOPE so that _block_name reads it
_MODULE = re.compile(r"encoder\.(features\.(\d+)|fuse_stage(\d)|neck)")
WEIGHTED = ("aten.conv2d.default", "aten.linear.default")  # ops whose weights become int8


def executorch_blocks(graph: nn.Module, spec: GraphSpec) -> list[Block]:
    """The blocks of the (rewritten) encoder ``graph`` in graph order: ``scope`` is the module path
    a float block leaves unannotated, ``convs`` how many convolutions and linear layers it holds."""
    with torch.no_grad():
        captured = torch.export.export(graph.eval(), example_feeds(spec, 1))
    counts: dict[tuple[str, str], int] = {}
    for node in captured.graph.nodes:
        paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
        match = next((m for m in map(_MODULE.fullmatch, paths) if m), None)
        if node.op == "call_function" and match:
            key = (_block_name(match), match.group(0))
            counts[key] = counts.get(key, 0) + (str(node.target) in WEIGHTED)
    return [Block(name, scope, n) for (name, scope), n in counts.items()]


@dataclass(frozen=True)
class XnnpackPolicy:
    """The export's int8-static quantizer with the modules of ``exclude_scopes`` (module path ->
    reason) left float; ``sensitivity.floating`` sets them per block, as for the ONNX policy."""

    exclude_scopes: dict[str, str] = field(default_factory=dict)


class ExecutorchEvaluator(BlockMeasures):
    """Builds and judges int8-static ``.pte`` encoders of one float encoder ``source`` (the
    equalized encoder after ``rewrites.delegable``, as the export quantizes it) on the cases of
    ``reference`` (the held-out scoring photos): ``only``, ``measure``, ``target``, ``blocks``.

    ``feeds``: the calibration images (1 x 3 x 1024 x 1024), as the export feeds them, and
    ``calibrated_on`` their names; ``target``: thresholds in the parity engine's terms
    (``search_target``)."""

    def __init__(
        self,
        source: nn.Module,
        spec: GraphSpec,
        feeds: list[tuple[torch.Tensor, ...]],
        reference: Reference,
        target: dict[str, Threshold],
        calibrated_on: list[str],
        max_points: int,
    ) -> None:
        self.source = source
        self.spec = spec
        self.feeds = feeds
        self.reference = reference
        self.target = target
        self.calibrated_on = calibrated_on
        self.max_points = max_points
        self.base = XnnpackPolicy()
        self.blocks = executorch_blocks(source, spec)
        self._record = dataclasses.replace(
            _in_memory_record(),
            file="encoder (ExecuTorch sensitivity scan, in memory)",
            target=Target.EXECUTORCH,
            precision=Precision.INT8_STATIC,
        )
        self._measured: dict[frozenset[str], Measurement] = {}

    def program(self, float_modules: Iterable[str] = ()) -> tuple[bytes, Census]:
        """The int8 ``.pte`` with ``float_modules`` float -> (bytes, its delegate census); with
        none float, the export's own int8 encoder of ``source``."""
        quantized = quantize_int8(
            self.source, self.spec, self.feeds, self.max_points, list(float_modules)
        )
        return lower(export_graph(quantized, self.spec, self.max_points), xnnpack_partitioner())

    @cached_property
    def fp32_program(self) -> bytes:
        """The float ``source`` lowered to XNNPACK (the fp32 program of the latency tables)."""
        return lower(export_graph(self.source, self.spec, self.max_points), xnnpack_partitioner())[
            0
        ]

    def judge_model(self, model: bytes, label: str, floated: tuple[str, ...] = ()) -> Measurement:
        """Run the ``.pte`` ``model`` (ExecuTorch runtime, XNNPACK) on the reference's images and
        judge its embeddings."""
        images = [case.tensor for case in self.reference.cases]
        outputs = {
            encoder_case_id(case.name): {"image_embeddings": emb}
            for case, emb in zip(self.reference.cases, program_outputs(model, images))
        }
        metrics = judge(self._record, self.reference, outputs, "executorch").metrics
        return Measurement(label, floated, metrics, violations(metrics, self.target), model)

    def measure_policy(
        self, policy: XnnpackPolicy, label: str, floated: tuple[str, ...] = ()
    ) -> Measurement:
        """Quantize ``source`` with ``policy`` (calibrated on ``feeds``), lower and judge it."""
        data, census = self.program(policy.exclude_scopes)
        found = self.judge_model(data, label, floated)
        found.details = {"census": census, "float_modules": dict(policy.exclude_scopes)}
        return found

    def adopt_default(self, data: bytes, census: Census) -> None:
        """Take the export's default int8 program ``data`` (what ``program()`` builds with no
        block float: a test compares the bytes) as step 0, judged here, instead of building it
        again (a calibration and a lowering)."""
        found = self.judge_model(data, "0 float")
        found.details = {"census": census, "float_modules": {}}
        self._measured[frozenset()] = found

    def latency_ms(self, path: list[Measurement], runs: int) -> dict[str, float]:
        """Median ms of the fp32 program and of every step of ``path``, interleaved, on the first
        calibration image (ExecuTorch runtime, the process's thread pool)."""
        programs = {"fp32": self.fp32_program, **{m.label: m.model for m in path}}
        return program_latency_ms(programs, self.feeds[0], runs)

    @property
    def threads(self) -> int:
        """The size of this process's ExecuTorch thread pool (XNNPACK's threads)."""
        return _set_threads(None)


def program_latency_ms(
    programs: dict[str, bytes], feed: tuple[torch.Tensor, ...], runs: int
) -> dict[str, float]:
    """Median ms per run of each ``.pte`` held in memory on ``feed``, runs interleaved so that
    load on a shared machine falls on each alike."""
    runtime = require("executorch.runtime", "executorch").Runtime.get()
    methods = {k: runtime.load_program(data).load_method("forward") for k, data in programs.items()}
    inputs = list(feed)
    fns = {k: (lambda m=m: m.execute(inputs)) for k, m in methods.items()}
    with torch.no_grad():
        samples = timed_interleaved(fns, runs, warmup=1)
    return {k: float(np.median(v)) for k, v in samples.items()}
