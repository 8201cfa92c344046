"""The PyTorch reference as a session, so benchmarks can put it beside the artifacts."""

from __future__ import annotations

import numpy as np
import torch

from ..graphs import DecoderGraph, EncoderGraph, graph_outputs
from ..vocabulary import Role, graph_spec
from .base import GraphSession


class TorchSession(GraphSession):
    runtime = "pytorch"

    def __init__(self, graph: EncoderGraph | DecoderGraph, role: Role, threads: int | None = None) -> None:
        super().__init__(record=None, path=None)  # type: ignore[arg-type]
        self.graph = graph.eval()
        self.role = Role(role)
        self.threads = threads

    @torch.no_grad()
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.threads:
            torch.set_num_threads(self.threads)
        args = (torch.from_numpy(feeds[k]) for k in graph_spec(self.role).input_names)
        return graph_outputs(self.role, self.graph(*args))

    def describe(self) -> dict:
        return {"runtime": self.runtime, "torch": torch.__version__, "threads": self.threads or torch.get_num_threads()}
