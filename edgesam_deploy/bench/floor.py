"""This machine's fp32 GEMM throughput in a runtime: the floor a graph's GFLOP/s is reported against.

A model cannot run faster than its FLOPs at the best matrix-multiply rate the runtime's own GEMM
kernels (ONNX Runtime's MLAS, LiteRT's XNNPACK) sustain here with the same thread count, so
``GFLOP/s of a graph / floor`` is the share of the machine the runtime gets out of that graph.
Each GEMM is a one-op model in the runtime itself: a PyTorch or NumPy matmul timed beside a runtime
measures the two thread pools contending for the cores (measured: docs/decoder-speed.md).
The shapes are those of the model's token projections and 1x1 convolutions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..vocabulary import Target

# (M, K, N): M pixels or tokens x K input channels -> N output channels
GEMM_SHAPES: tuple[tuple[int, int, int], ...] = (
    (4096, 256, 256),  # decoder token projections, encoder 1x1 convs at 64 x 64
    (16384, 128, 256),  # encoder 1x1 convs at 128 x 128
    (65536, 48, 96),  # encoder 1x1 convs at 256 x 256
)
Workload = tuple[Callable[[], object], float]  # a zero-argument run and its GFLOP


@dataclass(frozen=True)
class GemmFloor:
    """Median GFLOP/s per GEMM shape and the best of them (the floor), with the thread count."""

    threads: int
    per_shape: dict[str, float]

    @property
    def gflops(self) -> float:
        return max(self.per_shape.values())

    def fraction(self, gflop: float, ms: float) -> float:
        """The share of the floor a graph of ``gflop`` GFLOP running in ``ms`` ms achieves."""
        return gflop / (ms / 1e3) / self.gflops

    def as_dict(self) -> dict[str, object]:
        return {"threads": self.threads, "gflops": self.gflops, "per_shape": self.per_shape}


def _weights(k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((k, n), dtype=np.float32), rng.standard_normal(
        (1, k), dtype=np.float32
    )


def _ort_gemm(m: int, k: int, n: int, threads: int) -> Callable[[], object]:
    """An ONNX Runtime session of one MatMul (m x k) @ (k x n constant), as a callable."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w, row = _weights(k, n)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["c"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    # input and output bound once: the run is the kernel, not a 4 MB output allocation per call
    binding = session.io_binding()
    binding.bind_cpu_input("a", np.repeat(row, m, axis=0))
    out = ort.OrtValue.ortvalue_from_numpy(np.empty((m, n), dtype=np.float32))
    binding.bind_ortvalue_output("c", out)
    return lambda: session.run_with_iobinding(binding)


def _litert_gemm(m: int, k: int, n: int, threads: int, workdir: Path) -> Callable[[], object]:
    """A LiteRT interpreter (XNNPACK) of one fully-connected (m x k) @ (k x n constant)."""
    import litert_torch
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from ..exporters.tflite.convert import quiet_converter

    w, row = _weights(k, n)
    linear = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w.T))
    a = np.repeat(row, m, axis=0)
    path = workdir / f"gemm-{m}x{k}x{n}.tflite"
    with quiet_converter():
        converter = litert_torch.Converter().signature(
            "gemm", linear.eval(), sample_kwargs={"input": torch.from_numpy(a)}
        )
        path.write_bytes(converter.convert().model_content())
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    # the input set once, the output left in place: the run is the kernel, not Python's copies
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], a)
    return interpreter.invoke


def gemm_runs(target: Target, threads: int, workdir: Path) -> dict[str, Workload]:
    """One GEMM per ``GEMM_SHAPES`` entry in ``target``'s runtime, keyed ``gemm MxKxN``, for
    timing interleaved with the graphs whose floor they are."""
    runs = {}
    for m, k, n in GEMM_SHAPES:
        if target == Target.ONNX:
            fn = _ort_gemm(m, k, n, threads)
        elif target == Target.TFLITE:
            fn = _litert_gemm(m, k, n, threads, workdir)
        else:
            raise ValueError(f"no GEMM floor for {target}")
        runs[f"gemm {m}x{k}x{n}"] = (fn, 2 * m * k * n / 1e9)
    return runs


def floor_from_medians(
    threads: int, gemms: dict[str, Workload], medians_ms: dict[str, float]
) -> GemmFloor:
    """The floor from the median ms of each ``gemm_runs`` workload (timed by the caller)."""
    per_shape = {
        key.removeprefix("gemm "): round(gflop / (medians_ms[key] / 1e3), 1)
        for key, (_, gflop) in gemms.items()
    }
    return GemmFloor(threads, per_shape)
