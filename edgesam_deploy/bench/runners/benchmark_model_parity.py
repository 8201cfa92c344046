"""Device parity with LiteRT's stock ``benchmark_model`` on an Android phone.

What the tool offers (LiteRT tflite/tools/benchmark/benchmark_tflite_model.cc):
``--input_layer`` / ``--input_layer_shape`` / ``--input_layer_value_files=name:file,...`` load raw
input bytes, matched to the signature's subgraph inputs *by position* (a name that differs only
logs a warning); ``--signature_to_run_for`` picks the signature; ``--output_filepath=FILE`` makes
its ``OutputSaver`` write the raw bytes of every subgraph output, in subgraph order, back to back,
after the last run. That works under every delegate (CPU, XNNPACK, GPU, NNAPI), since outputs are
copied back to CPU tensors after each invoke. A binary older than that flag ignores it (it logs
unconsumed flags) and writes nothing, which the report says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...device.protocol import ProtocolError
from ...errors import require
from ...vocabulary import Role, graph_spec


@dataclass(frozen=True)
class SignatureIO:
    """A signature's key and its input / output names in subgraph order (benchmark_model's)."""

    key: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    points: int | None  # decoder: N of its point_labels [1, N]


def _ordered(names_by_tensor: dict[int, str], tensor_order: list[int]) -> tuple[str, ...]:
    return tuple(names_by_tensor[t] for t in tensor_order if t in names_by_tensor)


def signature_io(path: Path) -> list[SignatureIO]:
    """Every signature of a ``.tflite`` file, read from its flatbuffer."""
    schema = require("ai_edge_litert.schema_py_generated", "tflite")
    buf = Path(path).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ProtocolError(f"{path}: not a TFLite flatbuffer")
    model = schema.Model.GetRootAs(buf, 0)
    out = []
    for i in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(i)
        sg = model.Subgraphs(sd.SubgraphIndex())
        ins = {
            sd.Inputs(j).TensorIndex(): sd.Inputs(j).Name().decode()
            for j in range(sd.InputsLength())
        }
        outs = {
            sd.Outputs(j).TensorIndex(): sd.Outputs(j).Name().decode()
            for j in range(sd.OutputsLength())
        }
        labels = next((t for t, n in ins.items() if n == "point_labels"), None)
        points = int(sg.Tensors(labels).ShapeAsNumpy()[1]) if labels is not None else None
        inputs = _ordered(ins, [sg.Inputs(j) for j in range(sg.InputsLength())])
        outputs = _ordered(outs, [sg.Outputs(j) for j in range(sg.OutputsLength())])
        out.append(SignatureIO(sd.SignatureKey().decode(), inputs, outputs, points))
    return out


def signature_for(
    signatures: list[SignatureIO], role: Role, points: int | None
) -> SignatureIO | None:
    """The signature that takes a case: the encoder's only one, a decoder's of ``points`` points."""
    if role == Role.ENCODER:
        return signatures[0] if signatures else None
    return next((s for s in signatures if s.points == points), None)


def parity_command(
    binary: str,
    graph: str,
    signature: SignatureIO,
    feeds: dict[str, tuple[str, tuple[int, ...]]],
    output: str,
    threads: int | None,
    delegate_flags: list[str],
) -> list[str]:
    """benchmark_model argv that runs one case (``feeds``: input name -> (file on the phone, shape))
    once and writes its outputs to ``output``."""
    names = list(signature.inputs)
    missing = [n for n in names if n not in feeds]
    if missing:
        raise ProtocolError(
            f"signature '{signature.key}' needs inputs {', '.join(missing)} the case lacks"
        )
    argv = [
        binary,
        f"--graph={graph}",
        f"--signature_to_run_for={signature.key}",
        "--input_layer=" + ",".join(names),
        "--input_layer_shape=" + ":".join(",".join(str(d) for d in feeds[n][1]) for n in names),
        "--input_layer_value_files=" + ",".join(f"{n}:{feeds[n][0]}" for n in names),
        f"--output_filepath={output}",
        "--num_runs=1",
        "--warmup_runs=1",
        "--min_secs=0",
        "--warmup_min_secs=0",
    ]
    if threads:
        argv.append(f"--num_threads={threads}")
    return argv + delegate_flags


def split_outputs(data: bytes, signature: SignatureIO, role: Role) -> dict[str, np.ndarray]:
    """The back-to-back float32 outputs of ``--output_filepath`` -> tensors of the graph's
    shapes."""
    shapes = {s.name: s.shape for s in graph_spec(role).outputs}
    unknown = [n for n in signature.outputs if n not in shapes]
    if unknown:
        raise ProtocolError(
            f"signature '{signature.key}' has outputs {', '.join(unknown)} the graph does not"
        )
    sizes = [math.prod(shapes[n]) * 4 for n in signature.outputs]
    if len(data) != sum(sizes):
        raise ProtocolError(
            f"benchmark_model wrote {len(data)} bytes of outputs, {sum(sizes)} expected"
        )
    out, offset = {}, 0
    for name, size in zip(signature.outputs, sizes, strict=True):
        out[name] = np.frombuffer(data, dtype="<f4", count=size // 4, offset=offset).reshape(
            shapes[name]
        )
        offset += size
    return out
