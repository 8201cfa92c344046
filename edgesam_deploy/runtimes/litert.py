"""LiteRT (TFLite) interpreter session: the runtime an Android app embeds, with XNNPACK on the CPU.

Signatures are looked up by name, as an app does with ``Interpreter.runSignature``: the encoder's
``encoder``; the decoder's ``decoder_n<N>``, chosen by the prompt's point count N (exact per-N
signatures, so nothing is padded; ``accepts_points`` says which N exist).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeployError, first_line, require
from ..manifest import ArtifactRecord
from ..processing import PromptError
from ..vocabulary import Role, TensorSpec
from .base import GraphSession, Tensors

_DELEGATE_NODE = "DELEGATE"


class LiteRtSession(GraphSession):
    """An encoder or decoder ``.tflite`` in the ai-edge-litert interpreter.

    ``threads``: interpreter threads (XNNPACK uses them too); ``xnnpack=False`` runs the builtin
    reference kernels only (for diagnosis).
    """

    runtime = "litert"

    def __init__(
        self, record: ArtifactRecord, path: Path, threads: int | None = 2, xnnpack: bool = True
    ) -> None:
        super().__init__(record, path)
        self._lite = require("ai_edge_litert.interpreter", "tflite")
        self.threads = threads
        self.xnnpack = xnnpack
        self.interpreter = self._interpreter()
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise DeployError(
                f"{path}: the model has no signatures; re-export it with edgesam-deploy"
            )
        self._runners = {key: self.interpreter.get_signature_runner(key) for key in signatures}
        self._outputs = {key: list(sig["outputs"]) for key, sig in signatures.items()}
        self.by_points: dict[int, str] = {}
        if record.role == Role.DECODER:  # a signature without point labels: check_interface
            for key, runner in self._runners.items():
                labels = runner.get_input_details().get("point_labels")
                if labels is not None and len(labels["shape"]) == 2:
                    self.by_points[int(labels["shape"][1])] = key

    def _interpreter(self, fuse: bool = True) -> Any:
        resolver = self._lite.OpResolverType
        try:
            it = self._lite.Interpreter(
                model_path=str(self.path),
                num_threads=self.threads,
                experimental_op_resolver_type=resolver.AUTO
                if self.xnnpack
                else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_disable_delegate_node_fusion=not fuse,
            )
            it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DeployError(f"{self.path}: LiteRT cannot load it ({first_line(exc)})") from exc
        return it

    def interfaces(self) -> list[tuple[Tensors, Tensors]]:
        return [
            (_tensors(runner.get_input_details()), _tensors(runner.get_output_details()))
            for runner in self._runners.values()
        ]

    @property
    def point_counts(self) -> list[int]:
        """Point counts N the decoder has a signature for (empty for an encoder)."""
        return sorted(self.by_points)

    def accepts_points(self, n: int) -> bool:
        return self.record.role == Role.DECODER and n in self.by_points

    def signature_for(self, feeds: dict[str, np.ndarray]) -> str:
        """The signature key that takes these feeds (decoder: by the point count of ``point_labels``)."""
        if self.record.role != Role.DECODER:
            return next(iter(self._runners))
        labels = feeds.get("point_labels")
        if labels is None or labels.ndim != 2:
            raise PromptError("the decoder needs point_labels of shape [1, N]")
        n = int(labels.shape[1])
        if n not in self.by_points:
            raise PromptError(
                f"prompt has {n} points with padding; {self.path.name} takes N in "
                f"{_ranges(self.point_counts)} "
                "(export with more --num-points)"
            )
        return self.by_points[n]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = self.signature_for(feeds)
        runner = self._runners[key]
        names = runner.get_input_details()
        out = runner(
            **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items() if k in names}
        )
        return {k: np.asarray(out[k], dtype=np.float32) for k in self._outputs[key]}

    @cached_property
    def delegation(self) -> dict[str, Any]:
        """Which ops XNNPACK took and which fell back to LiteRT's own kernels (first signature's graph).

        Built from a second interpreter with delegate-node fusion off, so that every delegated op
        becomes its own DELEGATE node whose outputs identify the original op."""
        if not self.xnnpack:
            return {"xnnpack": False}
        it = self._interpreter(fuse=False)
        ops = it._get_ops_details()  # subgraph 0; no public API lists the execution plan
        delegated_outputs = {tuple(o["outputs"]) for o in ops if o["op_name"] == _DELEGATE_NODE}
        original = [o for o in ops if o["op_name"] != _DELEGATE_NODE]
        taken = Counter(o["op_name"] for o in original if tuple(o["outputs"]) in delegated_outputs)
        fallback = Counter(
            o["op_name"] for o in original if tuple(o["outputs"]) not in delegated_outputs
        )
        partitions = sum(
            o["op_name"] == _DELEGATE_NODE for o in self.interpreter._get_ops_details()
        )
        return {
            "xnnpack": True,
            "ops": len(original),
            "delegated": sum(taken.values()),
            "fallback": sum(fallback.values()),
            "partitions": partitions,
            "delegated_ops": dict(taken.most_common()),
            "fallback_ops": dict(fallback.most_common()),
        }

    def describe(self) -> dict:
        out = {
            "runtime": self.runtime,
            "threads": self.threads,
            "signatures": sorted(self._runners),
            **self.delegation,
        }
        if self.by_points:
            out["point_counts"] = self.point_counts
        return out


def _tensors(details: dict[str, dict]) -> Tensors:
    """A signature's input or output details (a dynamic axis is -1 in ``shape_signature``)."""
    return tuple(
        TensorSpec(
            name,
            tuple(None if n < 0 else int(n) for n in t.get("shape_signature", t["shape"])),
            np.dtype(t["dtype"]).name,
        )
        for name, t in details.items()
    )


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 5] -> '1..3, 5' ('none' for no values)."""
    if not values:
        return "none"
    parts: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}..{prev}" if prev > start else f"{start}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def encoder_outputs(data: bytes, images: list[np.ndarray], threads: int = 2) -> list[np.ndarray]:
    """Embeddings (1 x 256 x 64 x 64) of an encoder flatbuffer held in memory, one per image."""
    with tempfile.TemporaryDirectory(prefix="edgesam-litert-") as scratch:
        path = Path(scratch) / "encoder.tflite"
        path.write_bytes(data)
        record = ArtifactRecord(path.name, "tflite", "encoder", "candidate", [], [], len(data), "")
        session = LiteRtSession(record, path, threads=threads)
        return [session.run({"image": x})["image_embeddings"] for x in images]
