"""ExecuTorch CPU benchmark: fp32 / fp16 / int8 ``.pte`` (XNNPACK) beside the other runtimes.

    python benchmarks/bench_executorch.py [--out benchmarks/results/executorch.json] [--threads 2]
        [--export-dir DIR] [--repeats 10] [--weights conformance|random] [--calibration-size 8]

Exports (or reuses in ``--export-dir``) the ExecuTorch target in fp32, fp16 and int8-static
(``coreml-fp16`` runs on Apple platforms only) and, for the comparison, ONNX fp32 and LiteRT
fp32 / int8-dynamic (the fastest other encoder on this CPU in earlier runs) of the same model.
In one run, with interleaved timing so the shared machine's load falls on each alike: encoder
latency (median), decoder latency per click with 1 and 16 points, sizes, delegate partitions and
the parity engine's metrics on all four photos. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from statistics import median

import numpy as np
import torch

from edgesam_deploy.bench.host import host_machine
from edgesam_deploy.bench.metrics import Inputs, embeddings_placeholder, timed_interleaved
from edgesam_deploy.bench.schema import DECODER_1, DECODER_16
from edgesam_deploy.checkpoints import ModelSource, load_model, load_state_dict_strict
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.executorch.convert import ExecutorchExporter
from edgesam_deploy.exporters.executorch.options import ExecutorchOptions
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.exporters.pipeline import run_export
from edgesam_deploy.exporters.tflite.options import TfliteOptions
from edgesam_deploy.fileio import write_json
from edgesam_deploy.manifest import ArtifactRecord, Manifest, ManifestError, tool_versions
from edgesam_deploy.modeling import EdgeSam
from edgesam_deploy.parity import Reference, evaluate
from edgesam_deploy.runtimes import open_session
from edgesam_deploy.runtimes.base import NotRunnableHere
from edgesam_deploy.vocabulary import Precision, Role, Target

CONFORMANCE = (
    Path(__file__).resolve().parents[1] / "tests/data/conformance/edgesam_seed0_coffee.npz"
)
P = Precision
# the others' fastest variants on this CPU (README: LiteRT int8-dynamic beat ORT int8-static)
OTHERS = {Target.ONNX: (P.FP32,), Target.TFLITE: (P.FP32, P.INT8_DYNAMIC)}
# coreml-fp16 runs on Apple platforms only: its partitions are in any export's manifest
MEASURED = tuple(p for p in ExecutorchExporter.precisions if p != P.COREML_FP16)
ALL = {**OTHERS, Target.EXECUTORCH: MEASURED}  # others first: a rerun reuses them


def conformance_model() -> tuple[EdgeSam, ModelSource]:
    """EdgeSAM with the conformance weights (stored as float16, loaded as float32)."""
    with np.load(CONFORMANCE) as z:
        state = {
            k.split("/", 1)[1]: torch.from_numpy(z[k])
            for k in z.files
            if k.startswith("state_dict/")
        }
    model = EdgeSam("bilinear")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    load_state_dict_strict(model, state, str(CONFORMANCE))
    return model.eval(), ModelSource("edgesam", "checkpoint", path=str(CONFORMANCE))


def records(export_dir: Path) -> dict[tuple[str, str, str], ArtifactRecord]:
    """(target, role, precision) -> record of the export directory (empty if none)."""
    try:
        return {(a.target, a.role, a.precision): a for a in Manifest.load(export_dir).artifacts}
    except ManifestError:
        return {}


def ensure_exports(model: EdgeSam, source: ModelSource, export_dir: Path, calibration: int) -> dict:
    """Export what ``export_dir`` lacks: every target of ``ALL`` in its precisions."""
    have = records(export_dir)
    missing = [t for t, ps in ALL.items() if any((t, r, p) not in have for r in Role for p in ps)]
    if missing:
        options = ExportOptions.of(
            ExecutorchOptions(ALL[Target.EXECUTORCH]),
            OnnxOptions(OTHERS[Target.ONNX]),
            TfliteOptions(OTHERS[Target.TFLITE], (2, 16)),
            calibration_size=calibration,
        )
        print(f"exporting {', '.join(missing)} to {export_dir} ...", flush=True)
        run_export(
            model,
            source,
            missing,
            export_dir,
            options,
            run_parity=False,
            progress=lambda m: print(f"  {m}", flush=True),
        )
    return records(export_dir)


def row(
    record: ArtifactRecord, export_dir: Path, reference: Reference, threads: int
) -> tuple[dict, object]:
    """Size, partitions and parity of one artifact, and its session (None if it cannot run here)."""
    out = {"file": record.file, "size_mb": round(record.size_bytes / 1e6, 2)}
    if record.target == Target.EXECUTORCH:
        out.update({k: record.details[k] for k in ("partitions", "outside_delegate")})
    try:
        session = open_session(record, export_dir, threads=threads)
    except NotRunnableHere as exc:
        return {**out, "not_measured": str(exc)}, None
    parity = evaluate(session, reference)
    out.update(parity={k: round(v, 6) for k, v in parity.metrics.items()}, passed=parity.passed)
    return out, session


def latencies(sessions: dict[str, object], role: Role, repeats: int) -> dict[str, dict[str, float]]:
    """Median ms per session key: encoder on the photo; decoder with 1 and 16 points."""
    inputs = Inputs()
    feeds = (
        {"": inputs.image}
        if role == Role.ENCODER
        else {key: inputs.prompt(key, embeddings_placeholder()) for key in (DECODER_1, DECODER_16)}
    )
    out: dict[str, dict[str, float]] = {key: {} for key in sessions}
    for label, feed in feeds.items():
        runs = repeats if role == Role.ENCODER else repeats * 5
        points = None if role == Role.ENCODER else feed["point_labels"].shape[1]
        fns = {
            key: (lambda s=s, f=feed: s.run(f))
            for key, s in sessions.items()
            if points is None or s.accepts_points(points)
        }
        for key, samples in timed_interleaved(fns, runs, warmup=2).items():
            out[key][label or "encoder"] = round(median(samples), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/executorch.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export-dir", type=Path, help="reuse (or create) this export directory")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--weights", choices=("conformance", "random"), default="conformance")
    parser.add_argument("--calibration-size", type=int, default=8, help="int8 calibration images")
    args = parser.parse_args()

    model, source = (
        conformance_model() if args.weights == "conformance" else load_model(random_seed=0)
    )
    export_dir = args.export_dir or Path(tempfile.mkdtemp(prefix="bench-executorch-"))
    found = ensure_exports(model, source, export_dir, args.calibration_size)
    reference = Reference(model)
    result: dict = {
        "benchmark": "executorch",
        "threads": args.threads,
        "weights": args.weights,
        "machine": host_machine(args.threads),
        "versions": tool_versions(),
        "roles": {},
    }
    for role in Role:
        rows, sessions = {}, {}
        for target, precisions in ALL.items():
            for precision in precisions:
                key = f"{target} {precision}"
                rows[key], session = row(
                    found[(target, role, precision)], export_dir, reference, args.threads
                )
                if session is not None:
                    sessions[key] = session
        for key, times in latencies(sessions, role, args.repeats).items():
            rows[key]["latency_ms"] = times
        result["roles"][role] = rows
        for key, r in rows.items():
            timing = r.get("latency_ms", r.get("not_measured"))
            print(
                f"{role} {key:28} {r['size_mb']:7.2f} MB {timing} "
                f"{r.get('parity', {}).get('mask_iou_mean', '')} {r.get('partitions', '')}",
                flush=True,
            )
    write_json(args.out, result)
    print(f"wrote {args.out} (exports in {export_dir})")


if __name__ == "__main__":
    main()
