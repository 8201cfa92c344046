"""Does the mixed-precision search's verdict transfer? Every graph of a search, on three photo sets.

    python benchmarks/bench_search_transfer.py --manifest OUT/manifest.json [--seed 0]
        [--sets calibration,scoring,parity] [--out benchmarks/results/search-transfer.json]

Reads the int8-static encoder of an ``export --min-iou`` run (its equalization alpha, calibration
photos, greedy path and scoring photos from ``details``), rebuilds each graph of the greedy path and
the hand-picked policy (same cached activation ranges) and judges each on the calibration images
(in sample), the held-out scoring photos (what the search saw) and the parity photos (what the gate
sees; ``--sets`` picks), next to the search's own record, with the int8 gate's statistics
(docs/mixed-precision.md). The parity photos are used here only after the search, to measure how
far its statistics move on unseen photos. Not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.base import ExportContext
from edgesam_deploy.exporters.onnx.convert import (
    encoder_int8_policy,
    hand_picked_int8_encoder,
    int8_evaluator,
)
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.parity.engine import Reference
from edgesam_deploy.quantization.sensitivity import Evaluator, select_blocks
from edgesam_deploy.vocabulary import Precision, Role

KEYS = ("emb_cosine_min", "mask_iou_mean", "mask_iou_min")
SETS = ("calibration", "scoring", "parity")


def searched_record(manifest: Path) -> dict[str, Any]:
    """The details of the manifest's int8-static encoder that a ``--min-iou`` search wrote."""
    for art in json.loads(manifest.read_text())["artifacts"]:
        details = art.get("details", {})
        if art["role"] == Role.ENCODER and "mixed_precision" in details:
            return details
    raise SystemExit(f"{manifest}: no int8-static encoder of a --min-iou search")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="Seeded weights of the export.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search-transfer.json"))
    parser.add_argument("--sets", default=",".join(SETS), help="Photo sets to judge on.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # the quantizer's pre-processing advice, once per graph
    details = searched_record(args.manifest)
    record = details["mixed_precision"]
    calibrated = details["calibration"]["photos"]
    model, source = load_model(random_seed=args.seed)
    ctx = ExportContext(
        model, source, args.out.parent, ExportOptions(calibration_size=len(calibrated)), print
    )
    if ctx.calibration_source()["photos"] != calibrated:
        raise SystemExit(f"calibration photos moved: {ctx.calibration_source()['photos']}")
    policy = encoder_int8_policy()
    alpha = details["equalization"]["alpha"]
    hand, _, graph = hand_picked_int8_encoder(ctx, policy, alphas=(alpha,))
    mean_target = record["target"]["mask_iou_mean"][1]
    search = OnnxOptions(
        (Precision.INT8_STATIC,),
        min_iou=mean_target,
        search_margin=record["search_margin"],
        search_images=len(record["scored_on"]),
    )
    sets = [k for k in args.sets.split(",") if k]
    if not sets or set(sets) - set(SETS):
        raise SystemExit(f"--sets {args.sets}: a comma list of {', '.join(SETS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgesam-transfer-") as scratch:
        ev = int8_evaluator(ctx, graph, policy, search, Path(scratch))
        if ev.reference.photo_names != record["scored_on"]:
            raise SystemExit(f"scoring photos moved: {ev.reference.photo_names}")
        judges = {
            "scoring": ev,
            **{
                name: Evaluator(graph, policy, ev.feeds, ref, ev.target, Path(scratch), calibrated)
                for name, ref in (
                    ("calibration", Reference(model, calibrated)),
                    ("parity", Reference(model)),
                )
            },
        }
        first = judges[sets[0]]
        for step in [*record["steps"], {**record["hand_picked"], "label": "hand-picked"}]:
            print(f"judging {step['label']}")
            if step["label"] == "hand-picked":
                m = first.judge_model(hand, step["label"])
            else:
                m = first.measure(select_blocks(ev.blocks, step["floated"]), step["label"])
            judged = {sets[0]: m, **{k: judges[k].judge_model(m.model, m.label) for k in sets[1:]}}
            rows.append(
                {
                    "label": step["label"],
                    "floated": step["floated"],
                    "search": {k: step[k] for k in KEYS},
                    **{k: {s: round(v.metrics[s], 6) for s in KEYS} for k, v in judged.items()},
                }
            )
    table = {
        "manifest": str(args.manifest),
        "alpha": alpha,
        "target": record["target"],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print("| graph | " + " | ".join(f"{k} IoU mean / min" for k in ["search", *sets]) + " |")
    for r in rows:
        cells = [
            f"{r[k]['mask_iou_mean']:.4f} / {r[k]['mask_iou_min']:.3f}" for k in ["search", *sets]
        ]
        print(f"| {r['label']} | " + " | ".join(cells) + " |")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
