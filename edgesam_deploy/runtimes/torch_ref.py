"""The PyTorch reference as a session, so benchmarks can put it beside the artifacts."""

from __future__ import annotations

import numpy as np
import torch

from ..graphs import DecoderGraph, EncoderGraph, graph_outputs
from ..vocabulary import GraphSpec, Role, graph_spec
from .base import GraphSession


class TorchSession(GraphSession):
    runtime = "pytorch"

    def __init__(self, graph: EncoderGraph | DecoderGraph, role: Role, threads: int | None = None) -> None:
        super().__init__(record=None, path=None)  # type: ignore[arg-type]
        self.graph_module = graph.eval()
        self.role = Role(role)
        self.threads = threads

    @property
    def graph(self) -> GraphSpec:
        return graph_spec(self.role, mask_input=getattr(self.graph_module, "mask_input", False))

    @torch.no_grad()
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.threads:
            torch.set_num_threads(self.threads)
        args = (torch.from_numpy(feeds[k]) for k in self.graph.input_names)
        return graph_outputs(self.role, self.graph_module(*args))

    def describe(self) -> dict:
        return {"runtime": self.runtime, "torch": torch.__version__, "threads": self.threads or torch.get_num_threads()}
