"""ExecuTorch session: a ``.pte`` program in ExecuTorch's Python runtime (the C++ runtime an app
embeds, with the XNNPACK backend registered).

Inputs and outputs are positional in a ``.pte``; the official names map to them in the order of
the graph spec. The decoder takes any point count N up to the bound it was exported with; a longer
prompt is refused here, before ExecuTorch would fail to resize its buffers. A program whose
delegate this runtime lacks (Core ML: Apple platforms only) is "not measured here".

ExecuTorch has one thread pool per process and resizing it after a method is loaded is unsafe,
so ``threads`` is applied once, by the first session of a process that asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DeployError, first_line, require
from ..manifest import ArtifactRecord
from ..processing import PromptError
from ..vocabulary import Role, TensorSpec, graph_spec
from .base import GraphSession, NotRunnableHere

_POOL: dict[str, int] = {}  # "threads" once a session of this process has set the pool


def _set_threads(threads: int | None) -> int:
    """Apply ``threads`` to the process's thread pool (first caller only) -> the pool's size."""
    from executorch.extension.pybindings import portable_lib

    if threads and "threads" not in _POOL:
        portable_lib._unsafe_reset_threadpool(threads)
        _POOL["threads"] = threads
    elif threads and _POOL["threads"] != threads:
        raise DeployError(
            f"ExecuTorch's thread pool of this process has {_POOL['threads']} threads; it is set "
            f"once per process, so {threads} cannot be applied (run a new process)"
        )
    return portable_lib._threadpool_get_thread_count()


class ExecutorchSession(GraphSession):
    """A ``.pte`` in ExecuTorch's runtime; ``threads``: the process's thread pool (XNNPACK's)."""

    runtime = "executorch"

    def __init__(self, record: ArtifactRecord, path: Path, threads: int | None = None) -> None:
        super().__init__(record, path)
        et = require("executorch.runtime", "executorch")
        runtime = et.Runtime.get()
        missing = [
            b
            for b in record.details.get("partitions", {})
            if not runtime.backend_registry.is_available(b)
        ]
        if missing:
            raise NotRunnableHere(
                f"{path.name}: this ExecuTorch runtime has no {', '.join(missing)} (Core ML runs "
                "on Apple platforms only); checked structurally at export"
            )
        self.threads = _set_threads(threads)
        self.max_points = int(record.details.get("max_points", 0))
        try:
            self.method = runtime.load_program(Path(path)).load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise DeployError(f"{path}: ExecuTorch cannot load it ({first_line(exc)})") from exc
        self.spec = graph_spec(record.role, bool(record.details.get("mask_input")))

    def accepts_points(self, n: int) -> bool:
        return self.record.role == Role.DECODER and 1 <= n <= self.max_points

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.record.role == Role.DECODER:
            n = int(np.shape(feeds["point_labels"])[1])
            if not self.accepts_points(n):
                raise PromptError(
                    f"prompt has {n} points with padding; {self.path.name} takes N in "
                    f"1..{self.max_points} (export with a larger --max-points)"
                )
        inputs = [torch.from_numpy(self._feed(feeds, spec)) for spec in self.spec.inputs]
        out = self.method.execute(inputs)
        names = self.spec.output_names
        return {k: np.asarray(t, dtype=np.float32) for k, t in zip(names, out, strict=True)}

    @staticmethod
    def _feed(feeds: dict[str, np.ndarray], spec: TensorSpec) -> np.ndarray:
        """The input ``spec`` from ``feeds``; an absent previous mask is zeros (has_mask_input 0:
        the decoder without a previous mask)."""
        if spec.name not in feeds and spec.name in ("mask_input", "has_mask_input"):
            return np.zeros(spec.shape, dtype=np.float32)
        return np.ascontiguousarray(feeds[spec.name], dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        details = self.record.details
        return {
            "runtime": self.runtime,
            "threads": self.threads,
            "partitions": details.get("partitions", {}),
            "outside_delegate": details.get("outside_delegate", {}),
        }


def program_outputs(data: bytes, images: list[np.ndarray]) -> list[np.ndarray]:
    """Embeddings (1 x 256 x 64 x 64) of an encoder ``.pte`` held in memory, one per image."""
    runtime = require("executorch.runtime", "executorch").Runtime.get()
    method = runtime.load_program(data).load_method("forward")
    with torch.no_grad():
        return [method.execute([torch.from_numpy(x)])[0].numpy() for x in images]
