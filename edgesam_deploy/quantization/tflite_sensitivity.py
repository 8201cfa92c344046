"""int8-full sensitivity of the TFLite encoder's blocks: ranges calibrated on the calibration
images, judged on the held-out scoring photos.

The blocks are the ONNX scan's (``sensitivity.Block``: stem, block1..block26, fuse2, fuse3, neck),
found here from the flatbuffer's tensor names, which carry the PyTorch module path
(``.../RepViTEncoder_encoder/<class>_<attribute>/...``); the neck also holds the ops after the
other blocks that no module path names (``tflite_blocks``), so the blocks cover the graph. A
block kept float is one more ``no_quantize`` rule after the int8-full recipe
(``tflite_quant.recipe_for``; AEQ applies the latest matching rule), so every other op keeps the
export's own treatment, the ``FloatKept`` op types included. The calibration feeds are
preprocessed once; every recipe is calibrated on them afresh, because AEQ's ranges depend on the
recipe (reusing one result changed a boundary tensor's scale: docs/tflite.md), so each measured
graph is byte for byte the graph an export writes. Each graph runs in the LiteRT interpreter on
the scoring photos and is judged by the parity engine (``engine.judge``), as
``sensitivity.Evaluator`` judges the ONNX graphs; never the parity photos.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bench.metrics import timed_interleaved
from ..errors import require
from ..parity.engine import Reference, encoder_case_id, judge
from ..parity.thresholds import Threshold, violations
from ..runtimes.litert import LiteRtSession, encoder_outputs
from ..vocabulary import Precision, Role, Target
from .sensitivity import Block, Measurement, _in_memory_record, floating
from .tflite_quant import EXTRA, FULL_INT8_FLOAT_KEPT, quantize_model, recipe_for

# the first module path of an op's scope (AEQ: its output tensor names joined by ";") inside the
# encoder: <class>_<attribute> of features[i], fuse_stage<k> or neck
_SCOPE = re.compile(r"^[^;]*?RepViTEncoder_encoder/([\w.]+?)_(\d+|fuse_stage\d|neck)[/;]")
NO_QUANTIZE = "no_quantize"
SIGNATURE = "encoder"  # exporters/tflite/convert.ENCODER_SIGNATURE
_KEPT = frozenset(FULL_INT8_FLOAT_KEPT[Role.ENCODER].ops)  # op types int8-full keeps float


def _block_name(attribute: str) -> str:
    """features.0 -> stem, features.<i> -> block<i>, fuse_stage<k> -> fuse<k>, neck -> neck."""
    if attribute.isdigit():
        return "stem" if attribute == "0" else f"block{attribute}"
    return attribute.replace("_stage", "")


def op_scopes(float_model: bytes) -> list[tuple[str, str]]:
    """(op type, AEQ scope) of every op of the flatbuffer's first subgraph, in graph order."""
    fb = require("ai_edge_quantizer.utils.tfl_flatbuffer_utils", EXTRA)
    model = fb.read_model(bytearray(float_model))
    graph = model.subgraphs[0]
    names = {
        code_index: fb.TFL_OP_CODE_TO_NAME.get(code.builtinCode, "?")
        for code_index, code in enumerate(model.operatorCodes)
    }
    return [(names[op.opcodeIndex], fb.get_op_scope(op, graph.tensors)) for op in graph.operators]


def _exact(scope: str) -> str:
    """An AEQ regex that selects the ops whose scope is exactly ``scope``."""
    return f"^{re.escape(scope)}$"


def tflite_blocks(float_model: bytes) -> list[Block]:
    """The encoder's blocks in graph order; ``scope`` is the AEQ regex that selects their ops,
    ``convs`` how many of their ops the int8-full recipe quantizes (op types not ``FloatKept``).

    An op belongs to the block of the first module path of its scope (``_SCOPE``). The ops outside
    every block that come after the last op of every other block belong to the ``neck``: in the
    converted encoder these are the top-level fusion ADD (fuse2 + fuse3, scope
    ``...RepViTEncoder_encoder;;``), which makes the neck's input, and the output TRANSPOSE (NHWC
    to NCHW, scope ``encoder_image_embeddings_output;``), which carries the neck's output to the
    graph output. So keeping the neck float leaves no int8 op downstream of fuse2 and fuse3, and
    every block float leaves nothing to quantize (``TfliteEvaluator.measure``). Their exact scopes
    join the neck's regex as alternatives."""
    counts: dict[str, tuple[str, int]] = {}  # block name -> (regex, quantized ops)
    tail: list[tuple[str, str]] = []  # outside every block, since the last non-neck op
    for op, scope in op_scopes(float_model):
        match = _SCOPE.match(scope)
        if not match:
            tail.append((op, scope))
            continue
        name = _block_name(match.group(2))
        if name != "neck":
            tail = []
        regex = rf"^[^;]*?RepViTEncoder_encoder/{re.escape(match.group(1))}_{match.group(2)}[/;]"
        _, n = counts.get(name, (regex, 0))
        counts[name] = (regex, n + (op not in _KEPT))
    if "neck" in counts and tail:
        regex, n = counts["neck"]
        alternatives = "|".join([regex, *dict.fromkeys(_exact(s) for _, s in tail)])
        counts["neck"] = (alternatives, n + sum(op not in _KEPT for op, _ in tail))
    return [Block(name, regex, n) for name, (regex, n) in counts.items()]


@dataclass(frozen=True)
class TflitePolicy:
    """The encoder's int8-full recipe with the ops under ``exclude_scopes`` (AEQ scope regex ->
    reason) kept float; ``sensitivity.floating`` sets them per block, as for the ONNX policy."""

    exclude_scopes: dict[str, str] = field(default_factory=dict)

    def recipe(self) -> list[dict[str, Any]]:
        """The AEQ recipe: ``recipe_for(int8-full, encoder)`` then one ``no_quantize`` rule."""
        recipe = recipe_for(Precision.INT8_FULL, Role.ENCODER)
        if self.exclude_scopes:
            scope = "|".join(self.exclude_scopes)
            recipe.append({"regex": scope, "operation": "*", "algorithm_key": NO_QUANTIZE})
        return recipe


class TfliteEvaluator:
    """Builds and judges int8-full encoders of one fp32 flatbuffer ``source`` (the equalized
    encoder) on the cases of ``reference`` (the held-out scoring photos), like
    ``sensitivity.Evaluator`` for ONNX: ``only``, ``measure``, ``target``, ``blocks``.

    ``feeds``: the calibration feeds ({"image": 1 x 3 x 1024 x 1024}), preprocessed once, and
    ``calibrated_on`` their names; ``target``: thresholds in the parity engine's terms
    (``search_target``)."""

    def __init__(
        self,
        source: bytes,
        feeds: list[dict[str, np.ndarray]],
        reference: Reference,
        target: dict[str, Threshold],
        calibrated_on: list[str],
        threads: int = 2,
    ) -> None:
        self.source = source
        self.calibrated_on = calibrated_on
        self.base = TflitePolicy()
        self.feeds = feeds
        self.reference = reference
        self.target = target
        self.threads = threads
        self.blocks = tflite_blocks(source)
        # ops the int8-full recipe quantizes when no block is float
        self.quantizable = sum(op not in _KEPT for op, _ in op_scopes(source))
        self._record = dataclasses.replace(
            _in_memory_record(),
            file="encoder (TFLite sensitivity scan, in memory)",
            target=Target.TFLITE,
            precision=Precision.INT8_FULL,
        )
        self._measured: dict[frozenset[str], Measurement] = {}

    def judge_model(self, model: bytes, label: str, floated: tuple[str, ...] = ()) -> Measurement:
        """Run ``model`` (LiteRT interpreter, XNNPACK) on the reference's images and judge it."""
        images = [case.tensor for case in self.reference.cases]
        outputs = {
            encoder_case_id(case.name): {"image_embeddings": emb}
            for case, emb in zip(self.reference.cases, encoder_outputs(model, images, self.threads))
        }
        metrics = judge(self._record, self.reference, outputs, "litert").metrics
        return Measurement(label, floated, metrics, violations(metrics, self.target), model)

    def measure_policy(
        self, policy: TflitePolicy, label: str, floated: tuple[str, ...] = ()
    ) -> Measurement:
        """Quantize ``source`` with ``policy`` (calibrated on ``feeds``) and judge it."""
        recipe = policy.recipe()
        model = quantize_model(self.source, recipe, {SIGNATURE: self.feeds}, self.threads)
        found = self.judge_model(model, label, floated)
        found.details = {"recipe": recipe, "float_blocks": dict(policy.exclude_scopes)}
        return found

    def measure(self, floated: Iterable[Block], label: str) -> Measurement:
        """The int8-full encoder with exactly ``floated`` kept float (measured once per set).

        When ``floated`` holds every op the recipe would quantize (every block float: the blocks
        cover the whole graph, ``tflite_blocks``), nothing is left to quantize (AEQ would raise
        for want of calibration statistics): that candidate is the fp32 ``source`` itself, which
        is measured as it is, with ``details["recipe"]`` None."""
        kept = list(floated)
        key = frozenset(b.name for b in kept)
        if key not in self._measured:
            names = tuple(b.name for b in kept)
            policy = floating(self.base, kept)
            if sum(b.convs for b in kept) == self.quantizable:
                found = self.judge_model(self.source, label, names)
                found.details = {"recipe": None, "float_blocks": dict(policy.exclude_scopes)}
            else:
                found = self.measure_policy(policy, label, names)
            self._measured[key] = found
        found = self._measured[key]
        failures = violations(found.metrics, self.target)  # the target may have changed since
        return dataclasses.replace(found, label=label, failures=failures)

    def only(self, block: Block) -> Measurement:
        """Only ``block`` int8, every other block float."""
        return self.measure([b for b in self.blocks if b != block], block.name)


def latency_ms(
    models: dict[str, bytes], feed: dict[str, np.ndarray], runs: int, threads: int = 2
) -> dict[str, float]:
    """Median ms per run of each encoder flatbuffer on ``feed`` (LiteRT, XNNPACK, ``threads``),
    runs interleaved so that load on a shared machine falls on each alike."""
    with tempfile.TemporaryDirectory(prefix="edgesam-tflite-scan-") as scratch:
        sessions = {}
        for i, (key, data) in enumerate(models.items()):
            path = Path(scratch) / f"encoder{i}.tflite"
            path.write_bytes(data)
            record = dataclasses.replace(_in_memory_record(), file=path.name)
            sessions[key] = LiteRtSession(record, path, threads=threads)
        fns = {key: (lambda s=s: s.run(feed)) for key, s in sessions.items()}
        ms = timed_interleaved(fns, runs, warmup=1)
    return {k: float(np.median(v)) for k, v in ms.items()}
