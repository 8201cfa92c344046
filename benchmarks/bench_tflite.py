"""LiteRT (TFLite) CPU benchmark: fp32 vs fp16 vs int8-dynamic vs int8-full, with parity side by side.

    python benchmarks/bench_tflite.py [--out benchmarks/results/tflite.json] [--threads 2] [--export-dir DIR]

Exports the seeded random model (or reuses ``--export-dir`` if it already holds a TFLite export),
then in one run: encoder latency (median), decoder latency per click with 1 and 16 points
(N = 2 and 16 with the padding point), sizes and size ratios, parity metrics, XNNPACK delegation.
Not a test: timings depend on the machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from statistics import median

import numpy as np

from edgesam_deploy.bench.floor import floor_from_medians, gemm_runs
from edgesam_deploy.bench.flops import graph_gflop
from edgesam_deploy.bench.host import host_machine
from edgesam_deploy.bench.metrics import SETTLE_S, timed, timed_interleaved
from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.pipeline import run_export
from edgesam_deploy.exporters.tflite.convert import TfliteExporter
from edgesam_deploy.exporters.tflite.options import TfliteOptions
from edgesam_deploy.fileio import write_json
from edgesam_deploy.graphs import build_graph, example_inputs
from edgesam_deploy.manifest import ArtifactRecord, Manifest, ManifestError
from edgesam_deploy.parity import Reference, evaluate
from edgesam_deploy.runtimes import open_session
from edgesam_deploy.runtimes.base import GraphSession
from edgesam_deploy.vocabulary import Precision, Role, Target

PRECISIONS = TfliteExporter.precisions
CLICKS = {"1 point": 2, "16 points": 16}  # decoder N: one click + the padding point; 16 points


def median_ms(
    session: GraphSession, feeds: dict[str, np.ndarray], repeats: int, warmup: int = 2
) -> float:
    """Median wall time of ``session.run(feeds)`` in milliseconds."""
    return median(timed(lambda: session.run(feeds), repeats, warmup))


def tflite_records(export_dir: Path) -> dict[tuple[str, str], ArtifactRecord]:
    """(role, precision) -> record of every TFLite artifact in the export directory."""
    try:
        manifest = Manifest.load(export_dir)
    except ManifestError:
        return {}
    return {(a.role, a.precision): a for a in manifest.artifacts if a.target == "tflite"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tflite.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--export-dir", type=Path, help="reuse (or create) this export directory")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    model, source = load_model(random_seed=0)
    export_dir = args.export_dir or Path(tempfile.mkdtemp(prefix="bench-tflite-"))
    records = exported_records(model, source, export_dir)
    reference = Reference(model)
    case = reference.cases[0]
    feeds = benchmark_feeds(case)
    rows = []
    for precision in PRECISIONS:
        row = {"precision": precision}
        for role in Role:
            session = open_session(records[(role, precision)], export_dir, threads=args.threads)
            row[role] = measure(
                session, records[(role, precision)], reference, feeds[role], args.repeats
            )
        rows.append(row)
        enc, dec = row[Role.ENCODER]["latency_ms"], row[Role.DECODER]["latency_ms"]
        print(f"{precision}: encoder {enc} ms, decoder {dec} ms", flush=True)
    add_ratios(rows)
    print_table(rows)
    floor = floor_block(model, records, export_dir, feeds, args)
    result = {
        "benchmark": "tflite",
        "runtime": "ai-edge-litert interpreter, XNNPACK",
        "threads": args.threads,
        "machine": host_machine(args.threads),
        "model": source.as_dict(),
        "image": case.name,
        "rows": rows,
        "gemm_floor": floor,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    print(json.dumps({"export_dir": str(export_dir)}))


def floor_block(model, records, export_dir: Path, feeds, args: argparse.Namespace) -> dict:
    """The fp32 encoder and decoder timed interleaved with LiteRT's GEMM floor workloads
    (``bench.floor``): their model GFLOP/s (``bench.flops``) as a fraction of the floor."""
    fns = {}
    for role in Role:
        session = open_session(records[(role, Precision.FP32)], export_dir, threads=args.threads)
        for label, f in feeds[role].items():
            fns[f"{role} {label}"] = lambda s=session, x=f: s.run(x)
    gemms = gemm_runs(Target.TFLITE, args.threads, Path(tempfile.mkdtemp(prefix="gemm-floor-")))
    samples = timed_interleaved(
        fns | {k: fn for k, (fn, _) in gemms.items()}, args.repeats, 1, settle_s=SETTLE_S
    )
    medians = {k: median(v) for k, v in samples.items()}
    floor = floor_from_medians(args.threads, gemms, medians)
    gflop = {
        "encoder image": graph_gflop(build_graph(model, Role.ENCODER), example_inputs(Role.ENCODER))
    }
    decoder = build_graph(model, Role.DECODER)
    for label, n in CLICKS.items():
        gflop[f"decoder {label}"] = graph_gflop(decoder, example_inputs(Role.DECODER, n))
    fractions = {k: round(floor.fraction(gflop[k], medians[k]), 3) for k in fns}
    print(f"GEMM floor {floor.gflops} GFLOP/s; fp32 fraction of it: {fractions}")
    ms = {k: round(medians[k], 2) for k in fns}
    return floor.as_dict() | {"latency_ms": ms, "gflop": gflop, "fraction": fractions}


def exported_records(model, source, export_dir: Path) -> dict[tuple[str, str], ArtifactRecord]:
    """The TFLite records of ``export_dir``, exporting every precision there first if any is missing."""
    records = tflite_records(export_dir)
    if set(records) != {(r, p) for r in Role for p in PRECISIONS}:
        print(f"exporting to {export_dir} ...", flush=True)
        options = ExportOptions.of(TfliteOptions(PRECISIONS))
        run_export(
            model,
            source,
            [Target.TFLITE],
            export_dir,
            options,
            run_parity=False,
            progress=lambda m: print(f"  {m}", flush=True),
        )
        records = tflite_records(export_dir)
    return records


def benchmark_feeds(case) -> dict[Role, dict[str, dict[str, np.ndarray]]]:
    """Encoder feeds of the first parity photo, decoder feeds per click count (label -> feeds)."""
    rng = np.random.default_rng(0)
    decoder = {
        label: {
            "image_embeddings": case.ref_embeddings,
            "point_coords": (rng.random((1, n, 2)) * 1024).astype(np.float32),
            "point_labels": np.concatenate([np.ones((1, n - 1)), -np.ones((1, 1))], axis=1).astype(
                np.float32
            ),
        }
        for label, n in CLICKS.items()
    }
    return {Role.ENCODER: {"image": {"image": case.tensor}}, Role.DECODER: decoder}


def measure(
    session: GraphSession,
    record: ArtifactRecord,
    reference: Reference,
    feeds: dict[str, dict[str, np.ndarray]],
    repeats: int,
) -> dict:
    """Size, XNNPACK delegation, parity and median latency of one artifact."""
    info = session.describe()
    parity = evaluate(session, reference)
    keys = ("delegated", "fallback", "partitions", "fallback_ops")
    latency = {
        label: round(median_ms(session, f, repeats * (1 if label == "image" else 5)), 2)
        for label, f in feeds.items()
    }
    return {
        "file": record.file,
        "size_mb": round(record.size_bytes / 1e6, 2),
        "ops": record.details.get("ops"),
        "xnnpack": {k: info[k] for k in keys if k in info},
        "parity": {k: round(v, 6) for k, v in parity.metrics.items()},
        "passed": parity.passed,
        "latency_ms": latency.get("image", latency),
    }


def add_ratios(rows: list[dict]) -> None:
    """Size and speed of each precision relative to fp32 (the first row)."""
    base = rows[0]
    for row in rows:
        for role in Role:
            row[role]["size_ratio"] = round(row[role]["size_mb"] / base[role]["size_mb"], 3)
        enc, dec = row[Role.ENCODER], row[Role.DECODER]
        enc["speedup_vs_fp32"] = round(base[Role.ENCODER]["latency_ms"] / enc["latency_ms"], 2)
        base_dec = base[Role.DECODER]["latency_ms"]
        dec["speedup_vs_fp32"] = {
            k: round(base_dec[k] / v, 2) for k, v in dec["latency_ms"].items()
        }


def print_table(rows: list[dict]) -> None:
    print(
        f"{'precision':13} {'enc MB':>7} {'ratio':>6} {'enc ms':>8} {'x fp32':>7} {'emb cos':>9} "
        f"{'emb max|d|':>10} {'IoU(enc)':>9} | {'dec MB':>7} {'N=2 ms':>7} {'N=16 ms':>8} "
        f"{'IoU(dec)':>9}"
    )
    for r in rows:
        e, d = r[Role.ENCODER], r[Role.DECODER]
        ep, lat = e["parity"], d["latency_ms"]
        print(
            f"{r['precision']:13} {e['size_mb']:7.2f} {e['size_ratio']:6.3f} "
            f"{e['latency_ms']:8.1f} "
            f"{e['speedup_vs_fp32']:7.2f} {ep['emb_cosine_min']:9.6f} {ep['emb_max_abs']:10.2e} "
            f"{ep['mask_iou_mean']:9.5f} | {d['size_mb']:7.2f} {lat['1 point']:7.2f} "
            f"{lat['16 points']:8.2f} {d['parity']['mask_iou_mean']:9.5f}"
        )


if __name__ == "__main__":
    main()
