"""int8 sensitivity of the ONNX encoder's blocks, measured on held-out scoring photos.

A block is the group of graph nodes under one module scope: the stem, each RepViT block, each
fusion conv and the neck. Every measurement builds the real QDQ graph ONNX Runtime will run
(``onnx_quant.quantize_int8_static``; activation ranges calibrated once on the calibration images
and cached), runs it on the scoring photos (``calibration.scoring_photos``: not the calibration
images, so the ranges are judged out of sample) and judges its embeddings with the parity engine
(``engine.judge``: the int8 gate's statistics, the standard prompts through the reference
decoder). The parity photos are never used here.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..bench.metrics import SETTLE_S, timed_interleaved
from ..errors import DeployError
from ..manifest import ArtifactRecord
from ..modeling import EdgeSam
from ..parity.engine import Reference, encoder_case_id, judge
from ..parity.thresholds import Threshold, violations
from ..vocabulary import Precision, Role, Target, graph_spec
from .calibration import scoring_photos
from .onnx_quant import Int8Policy, first_outputs, quantize_int8_static

# module scopes of the traced encoder that make a block: features.<i>, fuse_stage<k>, neck
_SCOPE = re.compile(r"^/encoder/(features\.(\d+)|fuse_stage(\d)|neck)/")
BLOCK_NAME = re.compile(r"stem|block[1-9]\d*|fuse\d|neck")  # what _block_name can return
SEARCH_REASON = "kept float by the sensitivity search (--min-iou; docs/mixed-precision.md)"
SUMMARY_KEYS = ("emb_cosine_min", "mask_iou_mean", "mask_iou_min")  # a measurement's statistics
OTHER = "other"  # profile time of nodes outside every block (layout reorders, transposes)


@dataclass(frozen=True)
class Block:
    """A group of encoder nodes: ``scope`` is their name prefix, ``convs`` how many of them the
    int8 policy quantizes."""

    name: str
    scope: str
    convs: int


def _block_name(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        i = int(match.group(2))
        return "stem" if i == 0 else f"block{i}"
    return f"fuse{match.group(3)}" if match.group(3) else "neck"


def encoder_blocks(model: onnx.ModelProto, op_types: Iterable[str]) -> list[Block]:
    """The blocks of a traced encoder that hold nodes of ``op_types``, in graph order."""
    quantized = set(op_types)
    counts: dict[tuple[str, str], int] = {}
    for node in model.graph.node:
        match = _SCOPE.match(node.name)
        if match and node.op_type in quantized:
            key = (_block_name(match), match.group(0))
            counts[key] = counts.get(key, 0) + 1
    return [Block(name, scope, n) for (name, scope), n in counts.items()]


def check_block_names(names: Iterable[str]) -> list[str]:
    """``names`` if each could name a block (before any graph exists); else a DeployError."""
    out = list(names)
    bad = [n for n in out if not BLOCK_NAME.fullmatch(n)]
    if bad:
        raise DeployError(
            f"unknown block {', '.join(bad)}; blocks are stem, block<i>, fuse<k> and neck"
        )
    return out


def select_blocks(blocks: list[Block], names: Iterable[str]) -> list[Block]:
    """The blocks called ``names`` (in graph order); an unknown name is a DeployError."""
    wanted = list(dict.fromkeys(names))
    known = {b.name for b in blocks}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise DeployError(
            f"unknown block {', '.join(unknown)}; the encoder's blocks are "
            f"{', '.join(b.name for b in blocks)}"
        )
    return [b for b in blocks if b.name in wanted]


def floating(base: Int8Policy, blocks: Iterable[Block]) -> Int8Policy:
    """``base`` with exactly ``blocks`` kept float (its own scope exclusions dropped)."""
    return dataclasses.replace(base, exclude_scopes={b.scope: SEARCH_REASON for b in blocks})


@dataclass
class Measurement:
    """One int8 graph judged on the scoring photos: the parity engine's metrics
    (``emb_cosine_min``, ``mask_iou_mean``, ``mask_iou_min`` ...) and the target's violations."""

    label: str
    floated: tuple[str, ...]  # block names kept float (empty for a policy given whole)
    metrics: dict[str, float]
    failures: list[str]
    model: onnx.ModelProto = field(repr=False)
    details: dict[str, Any] = field(default_factory=dict, repr=False)  # the quantizer's record

    @property
    def meets(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        """What a table or a manifest records (no model)."""
        return {
            "label": self.label,
            "floated": list(self.floated),
            **{k: round(self.metrics[k], 6) for k in SUMMARY_KEYS},
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
        """Quantize the source with ``policy`` and judge it."""

    def measure(self, floated: Iterable[Block], label: str) -> Measurement:
        """The int8 encoder with exactly ``floated`` kept float (measured once per set)."""
        kept = list(floated)
        names = tuple(b.name for b in kept)
        key = frozenset(names)
        if key not in self._measured:
            self._measured[key] = self.measure_policy(floating(self.base, kept), label, names)
        found = self._measured[key]
        failures = violations(found.metrics, self.target)  # the target may have changed since
        return dataclasses.replace(found, label=label, floated=names, failures=failures)

    def only(self, block: Block) -> Measurement:
        """Only ``block`` int8, every other block float."""
        return self.measure([b for b in self.blocks if b != block], block.name)


class Evaluator(BlockMeasures):
    """Builds and judges int8 encoders of one float ``source`` model (the equalized encoder traced
    for int8): activation ranges from ``feeds``, judged on the scoring photos of ``reference``.

    ``feeds``: the calibration feeds ({"image": 1 x 3 x 1024 x 1024}), ``calibrated_on`` their
    names; ``target``: thresholds in the parity engine's terms (``search_target``)."""

    def __init__(
        self,
        source: onnx.ModelProto,
        base: Int8Policy,
        feeds: list[dict[str, np.ndarray]],
        reference: Reference,
        target: dict[str, Threshold],
        scratch: Path,
        calibrated_on: list[str],
    ) -> None:
        self.source = source
        self.base = base
        self.feeds = feeds
        self.calibrated_on = calibrated_on
        self.reference = reference
        self.target = target
        self.cache = scratch / "calibration-ranges.json"
        self.blocks = encoder_blocks(source, base.op_types)
        self._record = _in_memory_record()
        self._measured: dict[frozenset[str], Measurement] = {}

    def judge_model(
        self,
        model: onnx.ModelProto,
        label: str,
        floated: tuple[str, ...] = (),
        details: dict[str, Any] | None = None,
    ) -> Measurement:
        """Run ``model`` (ONNX Runtime, CPU) on the scoring photos and judge its embeddings."""
        images = [{"image": case.tensor} for case in self.reference.cases]
        outputs = {
            encoder_case_id(case.name): {"image_embeddings": emb}
            for case, emb in zip(self.reference.cases, first_outputs(model, images))
        }
        metrics = judge(self._record, self.reference, outputs, "onnxruntime").metrics
        failures = violations(metrics, self.target)
        return Measurement(label, floated, metrics, failures, model, details or {})

    def measure_policy(
        self, policy: Int8Policy, label: str, floated: tuple[str, ...] = ()
    ) -> Measurement:
        """Quantize ``source`` with ``policy`` (cached calibration ranges) and judge it."""
        model, details = quantize_int8_static(self.source, policy, self.feeds, self.cache)
        return self.judge_model(model, label, floated, details)


def scoring_reference(model: EdgeSam, count: int) -> Reference:
    """The fp32 reference on the first ``count`` scoring photos with the standard prompts: the
    parity engine's cases, on neither the calibration images nor the parity photos."""
    return Reference(model, scoring_photos(count))


def _in_memory_record() -> ArtifactRecord:
    """The parity engine's description of an int8 encoder that lives in memory only."""
    spec = graph_spec(Role.ENCODER)
    digest = hashlib.sha256(b"in-memory int8 encoder of the sensitivity scan").hexdigest()
    return ArtifactRecord(
        file="encoder (sensitivity scan, in memory)",
        target=Target.ONNX,
        role=Role.ENCODER,
        precision=Precision.INT8_STATIC,
        inputs=[s.as_dict() for s in spec.inputs],
        outputs=[s.as_dict() for s in spec.outputs],
        size_bytes=0,
        sha256=digest,
    )


def sensitivity_order(rows: dict[str, Measurement]) -> list[str]:
    """Block names, most sensitive first: lowest mean mask IoU with only that block int8, then
    lowest min IoU, then lowest embedding cosine."""
    keys = ("mask_iou_mean", "mask_iou_min", "emb_cosine_min")
    return sorted(rows, key=lambda name: tuple(rows[name].metrics[k] for k in keys))


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
            owner = next((b.name for b in blocks if e["name"].startswith(b.scope)), OTHER)
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
