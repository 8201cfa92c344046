"""int8 sensitivity scan of the ONNX encoder on the seeded weights (``edgesam-deploy quantize-scan``).

    python benchmarks/bench_scan.py [--out benchmarks/results/scan] [--calibration-size 8]
        [--min-iou 0.95] [--search-margin 0.05] [--search-images 4] [--runs 5] [--threads 2]

Writes scan.json, scan.md and scan.png: every encoder block alone int8 (ranges calibrated on the
calibration images) judged on held-out scoring photos, ONNX Runtime's profile per block, and the
greedy path to the target with whole-graph latencies interleaved with fp32
(docs/mixed-precision.md). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext
from edgesam_deploy.exporters.onnx.convert import scan_int8_encoder
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.quantization.scan_report import write_scan
from edgesam_deploy.quantization.search_target import SEARCH_IMAGES, SEARCH_MARGIN
from edgesam_deploy.vocabulary import Precision


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scan"))
    parser.add_argument("--calibration-size", type=int, default=8)
    parser.add_argument("--min-iou", type=float, default=0.95)
    parser.add_argument("--search-margin", type=float, default=SEARCH_MARGIN)
    parser.add_argument("--search-images", type=int, default=SEARCH_IMAGES)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, source = load_model(random_seed=0)
    options = ExportOptions(calibration_size=args.calibration_size)
    ctx = ExportContext(model, source, args.out, options, progress=print)
    search = OnnxOptions(
        (Precision.INT8_STATIC,),
        min_iou=args.min_iou,
        search_margin=args.search_margin,
        search_images=args.search_images,
    )
    scan = scan_int8_encoder(ctx, None, search, runs=args.runs)
    for path in write_scan(scan, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
