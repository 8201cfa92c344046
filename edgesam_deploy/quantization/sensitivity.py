"""int8 sensitivity of the ONNX encoder's and decoder's blocks, measured on held-out scoring photos.

A block is the group of graph nodes under one module scope: for the encoder the stem, each RepViT
block, each fusion conv and the neck; for the decoder the scopes ``decoder_blocks`` gives its nodes
(the prompt encoder, each attention and MLP of the two-way layers, the final attention, the
upscaling, the hypernetworks, the IoU head). Every measurement builds the real QDQ graph ONNX
Runtime will run (``onnx_quant.quantize_int8_static``; activation ranges calibrated once on the
calibration images, or the decoder feeds made from them, and cached), runs it on the scoring
photos (``calibration.scoring_photos``: not the calibration images, so the ranges are judged out
of sample) and judges it with the parity engine (``engine.judge``: the int8 gate's statistics; an
encoder's embeddings through the reference decoder, a decoder's masks and scores from the
reference embeddings, with the standard prompts). The parity photos are never used here.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..bench.metrics import SETTLE_S, timed_interleaved
from ..errors import DeployError
from ..graphs import example_inputs
from ..manifest import ArtifactRecord
from ..modeling import EdgeSam
from ..modeling.image_encoder import REPVIT_M1_BLOCKS
from ..parity.engine import (
    Reference,
    decoder_case_id,
    decoder_cases,
    decoder_feeds,
    encoder_case_id,
    judge,
)
from ..parity.thresholds import Threshold, violations
from ..vocabulary import GraphSpec, Precision, Role, ScoreKind, Target, graph_spec
from . import decoder_blocks
from .calibration import scoring_photos
from .onnx_quant import Fp16Policy, Int8Policy, graph_outputs, quantize_int8_static

# module scopes of the traced encoder that make a block: features.<i>, fuse_stage<k>, neck
_SCOPE = re.compile(r"^/encoder/(features\.(\d+)|fuse_stage(\d)|neck)/")
_DECODER_SCOPE = re.compile(
    rf"^{decoder_blocks.SCOPE_PREFIX}({decoder_blocks.BLOCK_NAME.pattern})/"
)
# the encoder's blocks: features[0] (stem), features[1..26] (RepViT blocks), the fusions, the neck
ENCODER_BLOCKS = (
    "stem",
    *(f"block{i}" for i in range(1, len(REPVIT_M1_BLOCKS) + 1)),
    "fuse2",
    "fuse3",
    "neck",
)
BLOCK_NAME = {  # what a block of each role can be called
    Role.ENCODER: re.compile("|".join(ENCODER_BLOCKS)),
    Role.DECODER: decoder_blocks.BLOCK_NAME,
}
BLOCK_HELP = {
    Role.ENCODER: f"stem, block1..block{len(REPVIT_M1_BLOCKS)}, fuse2, fuse3 and neck",
    Role.DECODER: ", ".join(decoder_blocks.BLOCK_ORDER),
}
SEARCH_REASON = "kept float by the sensitivity search (--min-iou; docs/mixed-precision.md)"
SUMMARY_KEYS = ("emb_cosine_min", "mask_iou_mean", "mask_iou_min")  # an encoder's statistics
DECODER_SUMMARY_KEYS = ("score_max_abs", "mask_iou_mean", "mask_iou_min")  # a decoder's
# what a decoder is timed at -> its N: one click with the padding point, and 16 points (as
# benchmarks/bench_decoder.py times it)
DECODER_TIMING_POINTS = {"1 point": 2, "16 points": 16}
OTHER = "other"  # profile time of nodes outside every block (layout reorders, transposes)
# ONNX Runtime renames a node it runs in float32 between inserted Casts (fp16 ops it has no
# kernel for) with this prefix: the node still belongs to its block
ORT_CAST_PREFIX = "InsertedPrecisionFreeCast_"
Policy = Int8Policy | Fp16Policy  # what a block scan reduces; ``exclude_scopes`` keeps blocks float


@dataclass(frozen=True)
class Block:
    """A group of encoder nodes: ``scope`` is their name prefix, ``convs`` how many of them the
    int8 policy quantizes."""

    name: str
    scope: str
    convs: int


def _block_name(match: re.Match[str]) -> str:
    """The block a ``_SCOPE``-shaped match names (group 2: features index, 3: fusion stage)."""
    if match.group(2) is not None:
        i = int(match.group(2))
        return "stem" if i == 0 else f"block{i}"
    return f"fuse{match.group(3)}" if match.group(3) else "neck"


def _encoder_block(node_name: str) -> tuple[str, str] | None:
    """(block name, scope) of an encoder node, or None outside every block."""
    match = _SCOPE.match(node_name)
    return None if match is None else (_block_name(match), match.group(0))


def _decoder_block(node_name: str) -> tuple[str, str] | None:
    """(block name, scope) of a node of a ``decoder_blocks.scoped_decoder`` graph, or None."""
    match = _DECODER_SCOPE.match(node_name)
    return None if match is None else (match.group(1), match.group(0))


_BLOCK_OF: dict[Role, Callable[[str], tuple[str, str] | None]] = {
    Role.ENCODER: _encoder_block,
    Role.DECODER: _decoder_block,
}


def graph_blocks(
    model: onnx.ModelProto, op_types: Iterable[str], role: Role = Role.ENCODER
) -> list[Block]:
    """The blocks of a traced encoder (or scoped decoder) that hold nodes of ``op_types``, in
    graph order (the decoder's in ``decoder_blocks.BLOCK_ORDER``)."""
    quantized = set(op_types)
    counts: dict[tuple[str, str], int] = {}
    for node in model.graph.node:
        found = _BLOCK_OF[role](node.name)
        if found and node.op_type in quantized:
            counts[found] = counts.get(found, 0) + 1
    blocks = [Block(name, scope, n) for (name, scope), n in counts.items()]
    if role == Role.DECODER:
        blocks.sort(key=lambda b: decoder_blocks.BLOCK_ORDER.index(b.name))
    return blocks


def check_block_names(names: Iterable[str], role: Role = Role.ENCODER) -> list[str]:
    """``names`` if each could name a block of ``role`` (before any graph exists); else a
    DeployError."""
    out = list(names)
    bad = [n for n in out if not BLOCK_NAME[role].fullmatch(n)]
    if bad:
        raise DeployError(f"unknown block {', '.join(bad)}; blocks are {BLOCK_HELP[role]}")
    return out


def select_blocks(
    blocks: list[Block], names: Iterable[str] | None, role: Role = Role.ENCODER
) -> list[Block]:
    """The blocks called ``names`` (in graph order; None: all); an unknown name is a DeployError."""
    if names is None:
        return blocks
    wanted = list(dict.fromkeys(names))
    known = {b.name for b in blocks}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise DeployError(
            f"unknown block {', '.join(unknown)}; the {role}'s blocks are "
            f"{', '.join(b.name for b in blocks)}"
        )
    return [b for b in blocks if b.name in wanted]


def floating(base: Policy, blocks: Iterable[Block]) -> Policy:
    """``base`` with exactly ``blocks`` kept float (its own scope exclusions dropped)."""
    return dataclasses.replace(base, exclude_scopes={b.scope: SEARCH_REASON for b in blocks})


@dataclass
class Measurement:
    """One int8 graph judged on the scoring photos: the parity engine's metrics
    (``emb_cosine_min`` or ``score_max_abs``, ``mask_iou_mean``, ``mask_iou_min`` ...) and the
    target's violations."""

    label: str
    floated: tuple[str, ...]  # block names kept float (empty for a policy given whole)
    metrics: dict[str, float]
    failures: list[str]
    model: onnx.ModelProto = field(repr=False)
    details: dict[str, Any] = field(default_factory=dict, repr=False)  # the quantizer's record
    role: Role = Role.ENCODER

    @property
    def meets(self) -> bool:
        return not self.failures

    def statistics(self) -> dict[str, float]:
        """The role's summary statistics (``SUMMARY_KEYS`` or ``DECODER_SUMMARY_KEYS``), rounded."""
        keys = SUMMARY_KEYS if self.role == Role.ENCODER else DECODER_SUMMARY_KEYS
        return {k: round(self.metrics[k], 6) for k in keys}

    def summary(self) -> dict[str, Any]:
        """What a table or a manifest records (no model)."""
        return {
            "label": self.label,
            "floated": list(self.floated),
            **self.statistics(),
            "meets_target": self.meets,
        }


class BlockMeasures(ABC):
    """What every runtime's evaluator shares: ``measure`` and ``only`` over its ``blocks``, each
    set of float blocks measured once (``measure_policy`` of ``floating(base, blocks)``) and judged
    against the current ``target``. A subclass sets ``base``, ``blocks``, ``target`` and
    ``_measured`` (empty)."""

    base: Any
    blocks: list[Block]
    target: dict[str, Threshold]
    _measured: dict[frozenset[str], Measurement]

    @abstractmethod
    def measure_policy(self, policy: Any, label: str, floated: tuple[str, ...] = ()) -> Measurement:
        """Reduce the source with ``policy`` and judge it."""

    def measure(self, floated: Iterable[Block], label: str) -> Measurement:
        """The reduced graph with exactly ``floated`` kept float (measured once per set)."""
        kept = list(floated)
        names = tuple(b.name for b in kept)
        key = frozenset(names)
        if key not in self._measured:
            self._measured[key] = self.measure_policy(floating(self.base, kept), label, names)
        found = self._measured[key]
        failures = violations(found.metrics, self.target)  # the target may have changed since
        return dataclasses.replace(found, label=label, floated=names, failures=failures)

    def only(self, block: Block) -> Measurement:
        """Only ``block`` reduced, every other block float."""
        return self.measure([b for b in self.blocks if b != block], block.name)


class Evaluator(BlockMeasures):
    """Builds and judges int8 graphs of one float ``source`` model (the equalized encoder traced
    for int8, or the ``decoder_blocks.scoped_decoder``): activation ranges from ``feeds``, judged
    on the scoring photos of ``reference``.

    ``feeds``: the calibration feeds ({"image": 1 x 3 x 1024 x 1024}, or the decoder's inputs),
    ``calibrated_on`` the names of the images they come from; ``target``: thresholds in the parity
    engine's terms (``search_target``); ``record``: how the parity engine sees the graph
    (``_in_memory_record``; default the encoder's). Subclasses reduce to another precision by
    overriding ``precision``, ``block_ops`` and ``convert``."""

    precision = Precision.INT8_STATIC
    block_ops: tuple[str, ...] | None = None  # op types a block must hold; None: the policy's

    def __init__(
        self,
        source: onnx.ModelProto,
        base: Policy,
        feeds: list[dict[str, np.ndarray]],
        reference: Reference,
        target: dict[str, Threshold],
        scratch: Path,
        calibrated_on: list[str],
        record: ArtifactRecord | None = None,
    ) -> None:
        self.source = source
        self.base = base
        self.feeds = feeds
        self.calibrated_on = calibrated_on
        self.reference = reference
        self.target = target
        self.cache = scratch / "calibration-ranges.json"
        self._record = record or _in_memory_record(self.precision)
        self.role = Role(self._record.role)
        self.blocks = graph_blocks(source, self.block_ops or base.op_types, self.role)
        self._measured: dict[frozenset[str], Measurement] = {}

    def judge_model(
        self,
        model: onnx.ModelProto,
        label: str,
        floated: tuple[str, ...] = (),
        details: dict[str, Any] | None = None,
    ) -> Measurement:
        """Run ``model`` (ONNX Runtime, CPU) on the scoring photos' cases and judge its outputs."""
        cases = self._cases()
        outputs = dict(zip(cases, graph_outputs(model, list(cases.values()))))
        metrics = judge(self._record, self.reference, outputs, "onnxruntime").metrics
        failures = violations(metrics, self.target)
        return Measurement(label, floated, metrics, failures, model, details or {}, self.role)

    def _cases(self) -> dict[str, dict[str, np.ndarray]]:
        """Parity case id -> feeds: each scoring photo (encoder), or each photo's prompt cases
        with the reference embeddings (decoder)."""
        if self.role == Role.ENCODER:
            return {encoder_case_id(c.name): {"image": c.tensor} for c in self.reference.cases}
        return {
            decoder_case_id(case.name, prompt.name): decoder_feeds(self._record, case, prompt)
            for case in self.reference.cases
            for prompt in decoder_cases(self._record, self.reference, case)
        }

    @property
    def timing_feeds(self) -> dict[str, dict[str, np.ndarray]]:
        """What whole-graph latency is measured on, by label: the first calibration image
        (encoder), or the first scoring photo's reference embeddings with the example prompt of
        each ``DECODER_TIMING_POINTS`` size (decoder)."""
        if self.role == Role.ENCODER:
            return {"image": self.feeds[0]}
        spec = self._record.graph
        emb = self.reference.cases[0].ref_embeddings
        out = {}
        for label, n in DECODER_TIMING_POINTS.items():
            _, *rest = example_inputs(Role.DECODER, n, "mask_input" in spec.input_names)
            out[label] = dict(zip(spec.input_names, [emb, *(t.numpy() for t in rest)]))
        return out

    def convert(self, policy: Policy) -> tuple[onnx.ModelProto, dict[str, Any]]:
        """``source`` quantized with ``policy`` (cached calibration ranges) -> (model, details)."""
        return quantize_int8_static(self.source, policy, self.feeds, self.cache)

    def measure_policy(
        self, policy: Policy, label: str, floated: tuple[str, ...] = ()
    ) -> Measurement:
        """``source`` reduced with ``policy`` (``convert``), judged."""
        model, details = self.convert(policy)
        return self.judge_model(model, label, floated, details)


def scoring_reference(model: EdgeSam, count: int) -> Reference:
    """The fp32 reference on the first ``count`` scoring photos with the standard prompts: the
    parity engine's cases, on neither the calibration images nor the parity photos."""
    return Reference(model, scoring_photos(count))


def _in_memory_record(
    precision: Precision = Precision.INT8_STATIC,
    spec: GraphSpec | None = None,
    scores: ScoreKind = ScoreKind.IOU,
) -> ArtifactRecord:
    """The parity engine's description of a ``precision`` graph of ``spec`` (default the
    encoder's) that lives in memory only; ``scores``: what a decoder's scores output holds."""
    spec = spec or graph_spec(Role.ENCODER)
    digest = hashlib.sha256(f"in-memory {precision} {spec.role} of the scan".encode())
    return ArtifactRecord(
        file=f"{spec.role} (sensitivity scan, in memory)",
        target=Target.ONNX,
        role=spec.role,
        precision=precision,
        inputs=[s.as_dict() for s in spec.inputs],
        outputs=[s.as_dict() for s in spec.outputs],
        size_bytes=0,
        sha256=digest.hexdigest(),
        details={"scores": scores, "mask_input": "mask_input" in spec.input_names}
        if spec.role == Role.DECODER
        else {},
    )


def sensitivity_order(rows: dict[str, Measurement]) -> list[str]:
    """Block names, most sensitive first: lowest mean mask IoU with only that block int8, then
    lowest min IoU, then lowest embedding cosine (encoder) or highest score error (decoder)."""

    def rank(m: Measurement) -> tuple[float, float, float]:
        third = (
            m.metrics["emb_cosine_min"] if m.role == Role.ENCODER else -m.metrics["score_max_abs"]
        )
        return m.metrics["mask_iou_mean"], m.metrics["mask_iou_min"], third

    return sorted(rows, key=lambda name: rank(rows[name]))


def profile_by_block(
    model: onnx.ModelProto, feed: dict[str, np.ndarray], blocks: list[Block], runs: int = 3
) -> dict[str, float]:
    """ONNX Runtime's own profile of ``model`` (after its graph fusions) on one ``feed``: mean ms
    per run spent in each block's nodes; nodes of no block go to ``OTHER``."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgesam-profile-") as scratch:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_block: collections.Counter[str] = collections.Counter({b.name: 0.0 for b in blocks})
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"].removeprefix(ORT_CAST_PREFIX)
            owner = next((b.name for b in blocks if name.startswith(b.scope)), OTHER)
            per_block[owner] += e["dur"] / 1000 / runs
    return {name: round(ms, 2) for name, ms in per_block.items()}


def latency_ms(
    models: dict[str, onnx.ModelProto], feed: dict[str, np.ndarray], runs: int
) -> dict[str, float]:
    """Median ms per run of each whole graph on ``feed`` (ONNX Runtime CPU), runs interleaved so
    that load on a shared machine falls on each alike, each turn after a ``SETTLE_S`` pause."""
    import onnxruntime as ort

    sessions = {
        key: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        for key, m in models.items()
    }
    fns = {key: (lambda s=s: s.run(None, feed)) for key, s in sessions.items()}
    samples = timed_interleaved(fns, runs, warmup=1, settle_s=SETTLE_S)
    return {k: float(np.median(v)) for k, v in samples.items()}
