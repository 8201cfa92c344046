"""Decoder per click against the encoder, before and after the rewrite, in ONNX Runtime and LiteRT.

    python benchmarks/bench_decoder.py [--out benchmarks/results/decoder.json] [--threads 2] [--runs 9]

Exports (seeded random weights) the fp32 encoder and the reference and rewritten fp32 decoders
(``graphs.DecoderGraph``, rewritten in each exporter's attention form) for both runtimes, checks
that the two decoders agree, then times in one process, runs interleaved: the encoder, each
decoder with 1 point (N = 2 with the padding point) and 16 points, and this machine's GEMM floor
(``bench.floor``). Writes medians,
decoder/encoder ratios, GFLOP/s as a fraction of the floor, the load average, and ONNX Runtime's
per-op profiles of both decoders. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgesam_deploy.bench.floor import GemmFloor, floor_from_medians, gemm_runs
from edgesam_deploy.bench.flops import graph_gflop
from edgesam_deploy.bench.host import host_machine
from edgesam_deploy.bench.metrics import SETTLE_S, timed_interleaved
from edgesam_deploy.bench.op_profile import ort_op_profile
from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.exporters.onnx.convert import DECODER_ATTENTION as ONNX_ATTENTION
from edgesam_deploy.exporters.onnx.convert import OPSET, OnnxExporter, save_model
from edgesam_deploy.exporters.tflite.convert import DECODER_ATTENTION as TFLITE_ATTENTION
from edgesam_deploy.exporters.tflite.convert import (
    convert_decoder,
    convert_encoder,
    decoder_signature,
)
from edgesam_deploy.fileio import write_json
from edgesam_deploy.graphs import DecoderGraph, EncoderGraph, example_inputs
from edgesam_deploy.manifest import tool_versions
from edgesam_deploy.modeling.decoder_fast import AttentionForm
from edgesam_deploy.vocabulary import ENCODER, Role, Target, graph_spec

CLICKS = {"1 point": 2, "16 points": 16}  # decoder N: one click + the padding point; 16 points
VARIANTS = ("reference", "rewritten")  # DecoderGraph(rewrite=None | the exporter's form)
RUNTIMES = {Target.ONNX: "onnxruntime", Target.TFLITE: "litert"}
FORMS = {Target.ONNX: ONNX_ATTENTION, Target.TFLITE: TFLITE_ATTENTION}  # as the exporters write
Run = dict[str, object]  # label -> a zero-argument callable


def decoder_feeds(n: int) -> dict[str, np.ndarray]:
    """The example decoder inputs with ``n`` points (``graphs.example_inputs``) as NumPy."""
    spec = graph_spec(Role.DECODER)
    return {k: t.numpy() for k, t in zip(spec.input_names, example_inputs(Role.DECODER, n))}


def export_onnx(model, out: Path) -> dict[str, Path]:
    """encoder.onnx, decoder.reference.onnx, decoder.rewritten.onnx as the ONNX exporter writes them."""
    graphs = {
        "encoder": EncoderGraph(model).eval(),
        "decoder.reference": DecoderGraph(model).eval(),
        "decoder.rewritten": DecoderGraph(model, rewrite=ONNX_ATTENTION).eval(),
    }
    paths = {}
    for name, graph in graphs.items():
        role = Role.ENCODER if name == "encoder" else Role.DECODER
        paths[name] = out / f"{name}.onnx"
        save_model(OnnxExporter._trace(graph, graph_spec(role), OPSET), paths[name])
    return paths


def onnx_runs(paths: dict[str, Path], threads: int) -> Run:
    """Timed callables of the ONNX Runtime sessions: encoder and each decoder x clicks."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sessions = {
        name: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for name, p in paths.items()
    }
    image = {ENCODER.input_names[0]: example_inputs(Role.ENCODER)[0].numpy()}
    runs: Run = {"encoder": lambda: sessions["encoder"].run(None, image)}
    for variant in VARIANTS:
        for label, n in CLICKS.items():
            feeds = decoder_feeds(n)
            session = sessions[f"decoder.{variant}"]
            runs[f"decoder.{variant} {label}"] = lambda s=session, f=feeds: s.run(None, f)
    return runs


def tflite_runs(model, out: Path, threads: int) -> Run:
    """Timed callables of LiteRT interpreters (XNNPACK): encoder and each decoder x clicks."""
    from ai_edge_litert.interpreter import Interpreter

    counts = list(CLICKS.values())
    files = {
        "encoder": convert_encoder(EncoderGraph(model).eval()),
        "decoder.reference": convert_decoder(DecoderGraph(model).eval(), counts),
        "decoder.rewritten": convert_decoder(
            DecoderGraph(model, rewrite=TFLITE_ATTENTION).eval(), counts
        ),
    }
    runs: Run = {}
    for name, data in files.items():
        path = out / f"{name}.tflite"
        path.write_bytes(data)
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        if name == "encoder":
            image = example_inputs(Role.ENCODER)[0].numpy()
            runner = interpreter.get_signature_runner("encoder")
            runs[name] = lambda r=runner, x=image: r(image=x)
            continue
        for label, n in CLICKS.items():
            runner = interpreter.get_signature_runner(decoder_signature(n))
            runs[f"{name} {label}"] = lambda r=runner, f=decoder_feeds(n): r(**f)
    return runs


def agreement(runs: Run) -> dict[str, float]:
    """max |rewritten - reference| of the masks logits per click count, in one runtime."""
    out = {}
    for label in CLICKS:
        a, b = (runs[f"decoder.{v} {label}"]() for v in VARIANTS)
        masks = [r["masks"] if isinstance(r, dict) else r[1] for r in (a, b)]
        out[label] = float(np.abs(masks[0] - masks[1]).max())
    return out


def gflops(model, form: AttentionForm) -> dict[str, float]:
    """GFLOP of the encoder and of each decoder variant (rewritten with ``form``) per click count
    (``bench.flops``)."""
    out = {"encoder": graph_gflop(EncoderGraph(model).eval(), example_inputs(Role.ENCODER))}
    for variant, rewrite in zip(VARIANTS, (None, form)):
        graph = DecoderGraph(model, rewrite=rewrite).eval()
        for label, n in CLICKS.items():
            out[f"decoder.{variant} {label}"] = graph_gflop(graph, example_inputs(Role.DECODER, n))
    return {k: round(v, 3) for k, v in out.items()}


STATISTICS = {"median": np.median, "min": np.min}  # min: the least disturbed run on a busy machine
BURST = 3  # calls per turn, the first dropped: the next click on the same image (warm caches)


def time_runtime(
    runs: Run, target: Target, threads: int, repeats: int, out: Path
) -> dict[str, tuple[dict[str, float], GemmFloor]]:
    """Per statistic (median, min): ms of every callable (warm: ``BURST``) and the GEMM floor from
    ``target``'s floor workloads, all timed interleaved with a ``SETTLE_S`` pause per turn."""
    gemms = gemm_runs(target, threads, out)
    fns = runs | {k: fn for k, (fn, _) in gemms.items()}
    samples = timed_interleaved(fns, repeats, warmup=1, settle_s=SETTLE_S, burst=BURST)
    out_stats = {}
    for name, stat in STATISTICS.items():
        ms = {k: round(float(stat(v)), 2) for k, v in samples.items()}
        floor = floor_from_medians(threads, gemms, ms)
        out_stats[name] = ({k: v for k, v in ms.items() if k in runs}, floor)
    return out_stats


def first_click_ms(runs: Run, repeats: int) -> dict[str, float]:
    """Median ms of each decoder's first call after an encoder run (and a ``SETTLE_S`` pause):
    the first click on a new image, the decoder's weights no longer in cache."""
    samples: dict[str, list[float]] = {k: [] for k in runs if k != "encoder"}
    for _ in range(repeats):
        for key in samples:
            runs["encoder"]()
            samples[key] += timed_interleaved({key: runs[key]}, 1, 0, settle_s=SETTLE_S)[key]
    return {k: round(float(np.median(v)), 2) for k, v in samples.items()}


def reference(key: str) -> str:
    """The reference graph's key of a timed graph's key."""
    return key.replace("rewritten", "reference")


def summary(
    ms: dict[str, float], first: dict[str, float], flop: dict[str, float], floor: GemmFloor
) -> dict[str, dict]:
    """Per graph: ms (next click), % of the encoder's time, GFLOP/s (its own FLOPs) and its
    fraction of the floor, the reference FLOPs' fraction, and for decoders the first click's ms
    and %; per click count the rewrite's speedup."""
    rows = {}
    for key, t in ms.items():
        rows[key] = {
            "ms": t,
            "pct_of_encoder": round(100 * t / ms["encoder"], 1),
            "gflop_per_s": round(flop[key] / (t / 1e3), 1),
            "fraction_of_floor": round(floor.fraction(flop[key], t), 3),
            # the reference graph's FLOPs over this time: the rate of doing the model's work
            "model_fraction_of_floor": round(floor.fraction(flop[reference(key)], t), 3),
        }
        if key in first:
            rows[key]["first_click_ms"] = first[key]
            rows[key]["first_click_pct_of_encoder"] = round(100 * first[key] / ms["encoder"], 1)
    speedup = {
        label: round(ms[f"decoder.reference {label}"] / ms[f"decoder.rewritten {label}"], 2)
        for label in CLICKS
    }
    return {"graphs": rows, "rewrite_speedup": speedup, "floor": floor.as_dict()}


def print_summary(runtime: str, stat: str, result: dict) -> None:
    floor = result["floor"]
    print(f"\n{runtime} ({stat}): GEMM floor {floor['gflops']} GFLOP/s, {floor['threads']} threads")
    print(
        f"{'graph':30s} {'ms':>8s} {'% enc':>6s} {'GFLOP/s':>8s} {'floor':>6s} {'model':>6s} "
        f"{'1st ms':>7s} {'1st %':>6s}"
    )
    for key, r in result["graphs"].items():
        print(
            f"{key:30s} {r['ms']:8.1f} {r['pct_of_encoder']:6.1f} {r['gflop_per_s']:8.1f} "
            f"{r['fraction_of_floor']:6.2f} {r['model_fraction_of_floor']:6.2f} "
            f"{r.get('first_click_ms', ''):>7} {r.get('first_click_pct_of_encoder', ''):>6}"
        )
    print(f"rewrite speedup: {result['rewrite_speedup']}")


def measure(args: argparse.Namespace, out: Path) -> dict:
    """Export, check agreement, time and profile both runtimes; the result document."""
    torch.set_num_threads(args.threads)
    model, source = load_model(random_seed=0)
    paths = export_onnx(model, out)
    per_runtime = {Target.ONNX: onnx_runs(paths, args.threads)}
    if not args.skip_tflite:
        per_runtime[Target.TFLITE] = tflite_runs(model, out, args.threads)
    result: dict = {"runtimes": {}, "load_average": {"start": os.getloadavg()}}
    for target, runs in per_runtime.items():
        flop = gflops(model, FORMS[target])
        timed = time_runtime(runs, target, args.threads, args.runs, out)
        first = first_click_ms(runs, args.runs)
        entry = {stat: summary(ms, first, flop, floor) for stat, (ms, floor) in timed.items()}
        for stat, table in entry.items():
            print_summary(RUNTIMES[target], stat, table)
        result["runtimes"][RUNTIMES[target]] = entry | {
            "agreement_max_abs_masks": agreement(runs),
            "attention_form": str(FORMS[target]),
            "gflop": flop,
        }
    result["load_average"]["end"] = os.getloadavg()
    feeds = decoder_feeds(CLICKS["1 point"])
    result["ort_op_profile_ms_1_point"] = {
        v: ort_op_profile(paths[f"decoder.{v}"], feeds, args.threads, runs=5, top=15)
        for v in VARIANTS
    }
    result["weights"] = source.as_dict()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/decoder.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--skip-tflite", action="store_true", help="ONNX Runtime only (faster)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as tmp:
        result = measure(args, Path(tmp))
    result["machine"] = host_machine(args.threads)
    result["tools"] = tool_versions()
    result["runs"] = args.runs
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
