"""Judge what a device computed (the outputs folder of the device-parity protocol) with the same
engine and thresholds as the host's own parity check.

Every output is checked before it is judged: listed, present, float32 of the graph's shape and the
byte size that shape needs, finite. A bad one fails that artifact's row with the reason; nothing is
ever filled in from the host.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..device.protocol import (
    STATUS_OK,
    ArtifactOutputs,
    Bundle,
    BundleArtifact,
    ProtocolError,
    Results,
    read_tensor,
)
from ..manifest import ArtifactRecord
from ..vocabulary import graph_spec
from .engine import (
    ArtifactParity,
    CaseOutputs,
    Reference,
    decoder_case_id,
    encoder_case_id,
    failed,
    judge,
)

MEASURED_ON = ("host", "device", "emulated")


def as_record(artifact: BundleArtifact) -> ArtifactRecord:
    """The manifest-shaped record the engine judges (its score kind included)."""
    details = {"scores": str(artifact.scores)} if artifact.scores else {}
    return ArtifactRecord(
        artifact.file,
        str(artifact.target),
        str(artifact.role),
        artifact.precision,
        [],
        [],
        0,
        artifact.sha256,
        details,
    )


def runtime_label(runtime: dict) -> str:
    """E.g. 'onnxruntime 1.32.0 (CPUExecutionProvider, 4 threads)'."""
    accel = runtime.get("providers") or runtime.get("delegate") or runtime.get("compute_units")
    accel = accel[0] if isinstance(accel, list) and accel else accel
    extras = [str(accel)] if accel else []
    threads = runtime.get("threads")
    if threads:
        extras.append(f"{threads} thread" + ("s" if threads != 1 else ""))
    head = " ".join(str(p) for p in (runtime.get("runtime", "?"), runtime.get("version")) if p)
    return head + (f" ({', '.join(extras)})" if extras else "")


def _checked(
    outputs_dir: Path, case_id: str, name: str, produced: dict, shape: tuple
) -> np.ndarray:
    spec = produced.get(name)
    if spec is None:
        raise ProtocolError(f"case {case_id}: no output '{name}'")
    if spec.shape != shape:
        raise ProtocolError(
            f"case {case_id}: output '{name}' has shape {list(spec.shape)}, "
            f"the graph's is {list(shape)}"
        )
    array = read_tensor(outputs_dir, spec)
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ProtocolError(f"case {case_id}: output '{name}' has {bad} non-finite value(s)")
    return array


def read_outputs(
    outputs_dir: Path, artifact: BundleArtifact, entry: ArtifactOutputs
) -> CaseOutputs:
    """Every output of every case the artifact was sent, checked; ProtocolError names the first
    bad one."""
    specs = graph_spec(artifact.role).outputs
    out: CaseOutputs = {}
    for case_id in artifact.cases:
        if case_id in entry.skipped:
            continue
        produced = entry.outputs.get(case_id)
        if produced is None:
            raise ProtocolError(f"case {case_id}: no outputs came back")
        out[case_id] = {
            s.name: _checked(outputs_dir, case_id, s.name, produced, s.shape) for s in specs
        }
    return out


def _reference_ids(reference: Reference) -> set[str]:
    ids = set()
    for case in reference.cases:
        ids.add(encoder_case_id(case.name))
        ids.update(decoder_case_id(case.name, p.name) for p in case.prompts)
    return ids


def judge_device_outputs(
    bundle_dir: Path,
    outputs_dir: Path,
    reference: Reference,
    measured_on: str = "device",
) -> list[ArtifactParity]:
    """One ArtifactParity per artifact of the bundle, judged from what the device wrote to
    ``outputs_dir``. ``reference`` must be the one the bundle was written from."""
    if measured_on not in MEASURED_ON:
        raise ValueError(f"measured_on must be one of {MEASURED_ON}")
    bundle = Bundle.load(bundle_dir)
    unknown = sorted({c.id for c in bundle.cases} - _reference_ids(reference))
    if unknown:
        raise ProtocolError(
            f"{bundle_dir}: cases {', '.join(unknown[:3])} are not in this reference"
        )
    records = [as_record(a) for a in bundle.artifacts]
    try:
        results = Results.load(outputs_dir)
    except ProtocolError as exc:
        return [
            failed(r, f"no usable results from the device: {exc}", measured_on=measured_on)
            for r in records
        ]
    return [
        _judge_one(outputs_dir, a, r, results, reference, measured_on)
        for a, r in zip(bundle.artifacts, records, strict=True)
    ]


def _judge_one(
    outputs_dir: Path,
    artifact: BundleArtifact,
    record: ArtifactRecord,
    results: Results,
    reference: Reference,
    measured_on: str,
) -> ArtifactParity:
    entry = results.for_file(artifact.file)
    if entry is None:
        return failed(record, "the device returned no result for it", measured_on=measured_on)
    runtime = runtime_label(entry.runtime)
    if entry.status != STATUS_OK:
        return failed(
            record,
            f"did not run on the device: {entry.error or 'no reason given'}",
            runtime,
            measured_on,
        )
    try:
        outputs = read_outputs(Path(outputs_dir), artifact, entry)
    except ProtocolError as exc:
        return failed(record, f"bad output from the device: {exc}", runtime, measured_on)
    return judge(record, reference, outputs, runtime, "", measured_on)
