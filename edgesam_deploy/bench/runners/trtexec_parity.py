"""Device parity with TensorRT's own tool: run the engine built on the board on each parity case
(``--loadInputs``: raw float32 files, exactly the protocol's feeds) and turn the JSON that
``--exportOutput`` writes into the protocol's outputs folder, which the host judges.

Both options are trtexec's (TensorRT samples/common/sampleOptions.cpp: "--loadInputs=spec  Load
input values from files", "--exportOutput=<file>  Write the output tensors to a json file").
"""

from __future__ import annotations

from pathlib import Path

from ...device.protocol import (
    STATUS_ERROR,
    ArtifactOutputs,
    Bundle,
    ProtocolError,
    Results,
    write_tensor,
)
from ...vocabulary import graph_spec
from ..parsers import trtexec_output

EXPORTS_DIR = "trtexec"


def export_name(index: int, case_id: str) -> str:
    """File name of trtexec's JSON export of artifact ``index`` on ``case_id``."""
    return f"{index}-{case_id}.json"


def trtexec_parity_command(
    trtexec_path: str, engine: str, feeds: dict[str, str], export: str, points: int | None = None
) -> list[str]:
    """trtexec argv that runs ``engine`` once on the raw float32 files of ``feeds`` (input name ->
    path) and writes its outputs to the JSON file ``export``; decoders run with ``points``."""
    argv = [
        trtexec_path,
        f"--loadEngine={engine}",
        "--loadInputs=" + ",".join(f"{k}:{v}" for k, v in feeds.items()),
        f"--exportOutput={export}",
        "--iterations=1",
        "--warmUp=0",
        "--duration=0",
        "--avgRuns=1",
    ]
    if points is not None:
        argv.append(f"--shapes=point_coords:1x{points}x2,point_labels:1x{points}")
    return argv


def _artifact_outputs(
    bundle: Bundle, index: int, exports: Path, outputs: Path, entry: ArtifactOutputs
) -> None:
    artifact = bundle.artifacts[index]
    for case_id in artifact.cases:
        path = exports / export_name(index, case_id)
        if not path.is_file():
            raise ProtocolError(f"trtexec wrote no outputs for case {case_id}")
        tensors = trtexec_output.parse(path.read_text())
        entry.outputs[case_id] = {
            name: write_tensor(outputs, f"{index}/{case_id}/{name}.bin", tensors[name])
            for name in graph_spec(artifact.role).output_names
            if name in tensors
        }


def trtexec_results(
    bundle: Bundle,
    exports: Path,
    outputs: Path,
    failures: dict[int, str],
    device: dict,
    runtime: dict,
) -> Results:
    """Write ``outputs`` (results.json and tensors) from trtexec's exports in ``exports``; an
    artifact in ``failures`` (index -> why trtexec failed) or with a bad export gets status
    error."""
    artifacts = []
    for index, artifact in enumerate(bundle.artifacts):
        entry = ArtifactOutputs(artifact.file, runtime=dict(runtime))
        try:
            if index in failures:
                raise ProtocolError(failures[index])
            _artifact_outputs(bundle, index, exports, outputs, entry)
        except ProtocolError as exc:
            entry.status, entry.error, entry.outputs = STATUS_ERROR, str(exc), {}
        artifacts.append(entry)
    results = Results(device, artifacts)
    results.save(outputs)
    return results
