"""``torch.export`` a graph, lower it to a backend delegate and serialize the ``.pte`` program.

The decoder's point count stays dynamic: ``Dim("num_points", 1..max_points)`` on ``point_coords``
[1, N, 2] and ``point_labels`` [1, N] is carried into the program's memory plan. What the delegate
took and left behind is read from the lowered graph (``checks.census``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...graphs import example_inputs
from ...vocabulary import DECODER_MASK_INPUT, GraphSpec
from .checks import Census, census

EXAMPLE_POINTS = (
    2  # the traced N (export specializes a size-1 example); any N in 1..max_points runs
)


class Fp16Graph(nn.Module):
    """A ``.half()`` copy of ``graph`` behind the float32 contract: inputs cast to fp16 on entry,
    outputs cast back to float32 (the casts are the program's first and last ops)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.net = graph.half()  # not "graph": a GraphModule has one
        self.eval()

    def forward(self, *inputs: torch.Tensor) -> Any:
        out = self.net(*(x.half() for x in inputs))
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def example_feeds(spec: GraphSpec, max_points: int) -> tuple[torch.Tensor, ...]:
    """Example positional inputs of the graph ``spec`` describes, with N = EXAMPLE_POINTS."""
    mask_input = spec == DECODER_MASK_INPUT
    return example_inputs(spec.role, min(EXAMPLE_POINTS, max_points), mask_input=mask_input)


def dynamic_shapes(spec: GraphSpec, max_points: int) -> tuple[Any, ...] | None:
    """Positional dynamic-shape spec of ``spec``'s inputs (None: all static, the encoder's, or
    a decoder bounded to one point)."""
    if max_points == 1 or all(None not in s.shape for s in spec.inputs):
        return None
    points = torch.export.Dim("num_points", min=1, max=max_points)
    return tuple(
        {i: points for i, d in enumerate(s.shape) if d is None} or None for s in spec.inputs
    )


def export_graph(
    graph: nn.Module, spec: GraphSpec, max_points: int
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``graph`` (in eval mode; or an ``Fp16Graph``) with the positional
    inputs of ``spec``."""
    inputs = example_feeds(spec, max_points)
    shapes = dynamic_shapes(spec, max_points)
    if isinstance(graph, Fp16Graph) and shapes is not None:
        shapes = (shapes,)  # *inputs is one positional pytree
    with torch.no_grad():
        return torch.export.export(graph, inputs, dynamic_shapes=shapes)


def lower(program: torch.export.ExportedProgram, partitioner: Any) -> tuple[bytes, Census]:
    """Lower ``program`` with ``partitioner`` and serialize it -> (``.pte`` bytes, census)."""
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(program, partitioner=[partitioner])
    facts = census(edge.exported_program().graph_module)
    return edge.to_executorch().buffer, facts


def xnnpack_partitioner() -> Any:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    return XnnpackPartitioner()


def coreml_partitioner(min_ios: int = 17) -> Any:
    """The Core ML delegate: ML program, fp16 compute, every compute unit, iOS ``min_ios``."""
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    specs = CoreMLBackend.generate_compile_specs(
        compute_unit=ct.ComputeUnit.ALL,
        minimum_deployment_target=getattr(ct.target, f"iOS{min_ios}"),
        compute_precision=ct.precision.FLOAT16,
    )
    return CoreMLPartitioner(compile_specs=specs)
