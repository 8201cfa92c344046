"""ONNX Runtime CPU benchmark of the ONNX target (not a test).

    python benchmarks/bench_onnx.py [--out benchmarks/results/onnx.json] [--threads 2] [--runs 5]

Exports every precision (random weights, seed 0), adds an official-style encoder (unfolded,
opset 11, no simplifier), times median latencies, runs the parity engine on the artifacts and
checks the issue's targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgesam_deploy.bench.floor import GemmFloor, floor_from_medians, gemm_runs
from edgesam_deploy.bench.flops import graph_gflop
from edgesam_deploy.bench.host import host_machine
from edgesam_deploy.bench.metrics import SETTLE_S, timed_interleaved
from edgesam_deploy.bench.op_profile import ort_op_profile
from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.exporters import ExportContext, ExportOptions
from edgesam_deploy.exporters.onnx.convert import OnnxExporter
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.fileio import write_json
from edgesam_deploy.graphs import EncoderGraph, build_graph, example_inputs
from edgesam_deploy.manifest import Manifest, tool_versions
from edgesam_deploy.parity import check_directory
from edgesam_deploy.processing import preprocess
from edgesam_deploy.runtimes.onnxruntime import OrtSession
from edgesam_deploy.samples import load_photo
from edgesam_deploy.vocabulary import ENCODER, Role, Target

OFFICIAL = "onnx/encoder.official-style.onnx"
ENCODER_PRECISIONS = ("fp32", "fp16", "int8-static", "int8-dynamic")


def export_official_style(model: torch.nn.Module, path: Path) -> None:
    """The official export's settings: unfolded encoder, opset 11, no simplifier."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            EncoderGraph(model, fold=False).eval(),
            example_inputs(Role.ENCODER),
            str(path),
            dynamo=False,
            opset_version=11,
            input_names=list(ENCODER.input_names),
            output_names=list(ENCODER.output_names),
        )


def median_ms(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median latency of each callable, runs interleaved (``bench.metrics.timed_interleaved``)
    with a ``SETTLE_S`` pause before each turn."""
    samples = timed_interleaved(fns, runs, warmup=1, settle_s=SETTLE_S)
    return {k: float(np.median(v)) for k, v in samples.items()}


def decoder_feeds(embeddings: np.ndarray, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    labels = np.ones((1, n), np.float32)
    labels[0, -1] = -1
    return {
        "image_embeddings": embeddings,
        "point_coords": (rng.random((1, n, 2)) * 1024).astype(np.float32),
        "point_labels": labels,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--calibration-size", type=int, default=8)
    return parser.parse_args()


def export_all(model, source, out: Path, calibration_size: int) -> tuple[ExportContext, list]:
    """Every ONNX precision and the official-style encoder, with a manifest, under ``out``."""
    ctx = ExportContext(
        model=model,
        source=source,
        out_dir=out,
        options=ExportOptions.of(
            OnnxOptions(OnnxExporter.precisions), calibration_size=calibration_size
        ),
        progress=lambda m: print(m, file=sys.stderr),
    )
    records = OnnxExporter().export(ctx)
    manifest = Manifest(model=source.as_dict())
    manifest.add(records)
    manifest.save(out)
    export_official_style(model, out / OFFICIAL)
    return ctx, records


def latencies(
    out: Path, by_file: dict, image: dict, emb: np.ndarray, args: argparse.Namespace
) -> tuple[dict[str, float], GemmFloor]:
    """Median ms of every encoder (interleaved with the GEMM floor's workloads) and of the float
    decoders with 1 and 16 points; the floor measured in that run."""
    encoders = {f"onnx/encoder.{p}.onnx": f"onnx/encoder.{p}.onnx" for p in ENCODER_PRECISIONS}
    encoders[OFFICIAL] = "onnx/encoder.fp32.onnx"  # its record: same interface
    fns: dict[str, Callable[[], object]] = {
        f: (lambda s=OrtSession(by_file[r], out / f, threads=args.threads): s.run(image))
        for f, r in encoders.items()
    }
    gemms = gemm_runs(Target.ONNX, args.threads, out)
    lat = median_ms(fns | {k: fn for k, (fn, _) in gemms.items()}, args.runs)
    floor = floor_from_medians(args.threads, gemms, lat)
    lat = {k: v for k, v in lat.items() if k in fns}
    decoders = {
        f"onnx/decoder.{p}.onnx": OrtSession(
            by_file[f"onnx/decoder.{p}.onnx"], out / f"onnx/decoder.{p}.onnx", threads=args.threads
        )
        for p in ("fp32", "fp16")
    }
    for n in (1, 16):
        feeds = decoder_feeds(emb, n)
        fns = {f: (lambda s=s, x=feeds: s.run(x)) for f, s in decoders.items()}
        lat.update({f"{f} N={n}": ms for f, ms in median_ms(fns, args.runs * 4).items()})
    return lat, floor


def floor_fractions(model, lat: dict[str, float], floor: GemmFloor) -> dict[str, float]:
    """Each timed graph's model GFLOP (``bench.flops``, fp32-equivalent for the quantized ones)
    per second as a fraction of the GEMM floor."""
    encoder = graph_gflop(EncoderGraph(model).eval(), example_inputs(Role.ENCODER))
    decoder = build_graph(model, Role.DECODER)
    per_n = {n: graph_gflop(decoder, example_inputs(Role.DECODER, n)) for n in (1, 16)}
    out = {}
    for key, ms in lat.items():
        gflop = per_n[int(key.split("N=")[1])] if "N=" in key else encoder
        out[key] = round(floor.fraction(gflop, ms), 3)
    return out


def main() -> int:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model, source = load_model(random_seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        out = Path(tmp)
        ctx, records = export_all(model, source, out, args.calibration_size)
        by_file = {r.file: r for r in records}
        image = {"image": preprocess(load_photo("coffee")).tensor}
        emb = ctx.encoder_graph(torch.from_numpy(image["image"])).detach().numpy()
        lat, floor = latencies(out, by_file, image, emb, args)
        print("op profiles ...", file=sys.stderr)
        profiles = {
            f: ort_op_profile(out / f, image, args.threads)["by_op_type"]
            for f in ("onnx/encoder.fp32.onnx", "onnx/encoder.int8-static.onnx")
        }
        print("parity ...", file=sys.stderr)
        parity = {r.file: r for r in check_directory(out, model)}
        sizes = {r.file: r.size_bytes for r in records} | {
            OFFICIAL: (out / OFFICIAL).stat().st_size
        }
    ratios, targets = ratios_and_targets(lat, parity)
    fractions = floor_fractions(model, lat, floor)
    print_report(args, lat, sizes, parity, ratios, profiles, targets)
    print(f"GEMM floor {floor.gflops} GFLOP/s; fraction of it per graph: {fractions}")
    write_json(
        args.out,
        {
            "device": {**host_machine(args.threads), "load_average": os.getloadavg()},
            "tools": tool_versions(),
            "weights": source.as_dict(),
            "runs": args.runs,
            "latency_ms": lat,
            "gemm_floor": floor.as_dict(),
            "fraction_of_gemm_floor": fractions,
            "size_bytes": sizes,
            "ratios": ratios,
            "targets": targets,
            "op_profile_ms": profiles,
            "int8_static_encoder": by_file["onnx/encoder.int8-static.onnx"].details,
            "parity": {f: p.as_dict() for f, p in parity.items()},
        },
    )
    print(f"wrote {args.out}")
    return 0


def ratios_and_targets(
    lat: dict[str, float], parity: dict
) -> tuple[dict[str, float], dict[str, bool]]:
    """Speed ratios measured in this run, and the issue's targets judged on them."""
    fp32 = lat["onnx/encoder.fp32.onnx"]
    ratios = {
        "encoder fp32 vs official-style (x faster)": lat[OFFICIAL] / fp32,
        "encoder int8-static vs fp32 (x faster)": fp32 / lat["onnx/encoder.int8-static.onnx"],
        "encoder int8-dynamic vs fp32 (x faster)": fp32 / lat["onnx/encoder.int8-dynamic.onnx"],
        "encoder fp16 vs fp32 (x faster)": fp32 / lat["onnx/encoder.fp16.onnx"],
        "decoder fp16 vs fp32 N=1 (x faster)": lat["onnx/decoder.fp32.onnx N=1"]
        / lat["onnx/decoder.fp16.onnx N=1"],
    }
    static = parity["onnx/encoder.int8-static.onnx"].metrics
    targets = {
        "int8-static encoder >= 1.6x faster than fp32": ratios[
            "encoder int8-static vs fp32 (x faster)"
        ]
        >= 1.6,
        "int8-static embedding cosine >= 0.995": static["emb_cosine_min"] >= 0.995,
        "int8-static mean mask IoU >= 0.95": static["mask_iou_mean"] >= 0.95,
        "fp32 encoder at least as fast as official-style": ratios[
            "encoder fp32 vs official-style (x faster)"
        ]
        >= 1.0,
    }
    return ratios, targets


def print_report(args, lat, sizes, parity, ratios, profiles, targets) -> None:
    """The latency / size / parity table, the ratios, the op profiles and the targets."""
    print(
        f"\nONNX Runtime CPU, {args.threads} threads, median of {args.runs} runs (decoder "
        f"{args.runs * 4})"
    )
    print(
        f"{'artifact':42s} {'ms':>9s} {'MB':>7s} {'emb cos':>9s} {'max|d|':>9s} {'IoU mean':>9s} "
        f"{'IoU min':>8s} parity"
    )
    for key, ms in lat.items():
        f = key.split(" ")[0]
        p = parity.get(f)
        m = p.metrics if p else {}
        cos = f"{m['emb_cosine_min']:9.6f}" if "emb_cosine_min" in m else f"{'':9s}"
        d = m.get("emb_max_abs", m.get("logit_max_abs"))
        verdict = "" if p is None else ("pass" if p.passed else "FAIL: " + "; ".join(p.failures))
        print(
            f"{key:42s} {ms:9.1f} {sizes[f] / 1e6:7.2f} {cos} "
            f"{'' if d is None else format(d, '9.2e'):>9s} "
            f"{m.get('mask_iou_mean', float('nan')):9.5f} "
            f"{m.get('mask_iou_min', float('nan')):8.4f} {verdict}"
        )
    for name, value in ratios.items():
        print(f"{name:45s} {value:6.2f}")
    for f, per_op in profiles.items():
        total = sum(per_op.values())
        top = ", ".join(f"{op} {ms:.0f}" for op, ms in list(per_op.items())[:6])
        print(f"where {f} spends {total:.0f} ms (ORT profile, per op type): {top}")
    for name, met in targets.items():
        print(f"target {name}: {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
