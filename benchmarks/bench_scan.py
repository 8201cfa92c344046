"""int8 (or fp16) sensitivity scan of the ONNX encoder on the seeded weights
(``edgesam-deploy quantize-scan``).

    python benchmarks/bench_scan.py [--out benchmarks/results/scan] [--fp16] [--calibration-size 8]
        [--min-iou 0.95] [--search-margin M] [--search-images 6] [--runs 5] [--threads 2]
        [--int8-weights 7-bit|8-bit]

Writes scan.json, scan.md and scan.png: every encoder block alone int8 (ranges calibrated on the
calibration images; with ``--fp16``: alone fp16, the overflow guard on the first two) judged on
held-out scoring photos, ONNX Runtime's profile per block, and the greedy path to the target with
whole-graph latencies interleaved with fp32 (docs/mixed-precision.md). ``--min-iou`` defaults to
the gate's mean IoU (0.95 int8, 0.99 fp16), ``--search-margin`` to ``default_margin``. Not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext
from edgesam_deploy.exporters.onnx.convert import scan_fp16_encoder, scan_int8_encoder
from edgesam_deploy.exporters.onnx.options import Int8Weights, OnnxOptions
from edgesam_deploy.parity.thresholds import thresholds_for
from edgesam_deploy.quantization.scan_report import write_scan
from edgesam_deploy.quantization.search_target import SEARCH_IMAGES
from edgesam_deploy.vocabulary import Precision, Role


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scan"))
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--calibration-size", type=int, default=8)
    parser.add_argument("--min-iou", type=float)
    parser.add_argument("--search-margin", type=float)
    parser.add_argument("--search-images", type=int, default=SEARCH_IMAGES)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--int8-weights", type=Int8Weights, choices=list(Int8Weights), default=Int8Weights.SEVEN_BIT
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, source = load_model(random_seed=0)
    options = ExportOptions(calibration_size=args.calibration_size)
    ctx = ExportContext(model, source, args.out, options, progress=print)
    precision = Precision.FP16 if args.fp16 else Precision.INT8_STATIC
    gate = thresholds_for(precision, Role.ENCODER)["mask_iou_mean"][1]
    search = OnnxOptions(
        (precision,),
        min_iou=gate if args.min_iou is None else args.min_iou,
        search_margin=args.search_margin,
        search_images=args.search_images,
        int8_weights=args.int8_weights,
    )
    if args.fp16:
        scan = scan_fp16_encoder(ctx, None, search, runs=args.runs)
    else:
        scan = scan_int8_encoder(ctx, None, search, runs=args.runs)
    for path in write_scan(scan, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
