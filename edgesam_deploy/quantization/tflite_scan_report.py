"""The TFLite int8-full scan as a table (JSON and Markdown) and a plot (``scan_report.plot``).

The ONNX table's rows and keys, without its per-block profile columns: LiteRT's Python interpreter
has no per-op profiler, and XNNPACK runs the whole encoder as one delegate node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .mixed import Scan
from .scan_report import write_table
from .sensitivity import SUMMARY_KEYS
from .tflite_mixed import DEFAULT_RECIPE

RUNTIME = "LiteRT interpreter, XNNPACK, int8-full (ai-edge-quantizer)"


def scan_table(scan: Scan) -> dict[str, Any]:
    """JSON-ready table: one row per scanned block (only that block int8), one per step of the
    greedy path with its whole-encoder latency (step 0 is the export's default recipe)."""
    rank = {name: i for i, name in enumerate(scan.order, 1)}
    blocks = [
        {
            "block": b.name,
            "scope": b.scope,
            "convs": b.convs,
            "sensitivity_rank": rank[b.name],
            **{k: scan.single[b.name].summary()[k] for k in SUMMARY_KEYS},
        }
        for b in scan.blocks
    ]
    fp32_ms = scan.latency_ms["fp32"]
    candidates = [
        {
            **m.summary(),
            "latency_ms_median": round(scan.latency_ms[m.label], 1),
            "speedup_vs_fp32": round(fp32_ms / scan.latency_ms[m.label], 3),
        }
        for m in scan.path
    ]
    return {
        "runtime": RUNTIME,
        "target": {k: list(v) for k, v in scan.target.items()},
        "facts": scan.facts,
        "fp32_latency_ms_median": round(fp32_ms, 1),
        "default_recipe": f"step 0 ({scan.path[0].label}) is {DEFAULT_RECIPE}",
        "blocks": blocks,
        "candidates": candidates,
        "chosen": scan.chosen.label,
        "target_met": scan.chosen.meets,
    }


def markdown(table: dict[str, Any]) -> str:
    """The table as Markdown: blocks, then the greedy path."""
    target = ", ".join(f"{k} {op} {v:g}" for k, (op, v) in table["target"].items())
    facts = ", ".join(f"{k} {v}" for k, v in table["facts"].items())
    lines = [
        f"# int8 sensitivity scan ({table['runtime']})",
        "",
        f"Target: {target}. Facts: {facts}.",
        "",
        "Each block alone int8 (every other block float), judged on the calibration images.",
        "",
        "| rank | block | int8 ops | emb cosine min | mask IoU mean | mask IoU min |",
        "|-:|-|-:|-:|-:|-:|",
    ]
    for r in sorted(table["blocks"], key=lambda r: r["sensitivity_rank"]):
        lines.append(
            f"| {r['sensitivity_rank']} | {r['block']} | {r['convs']} | {r['emb_cosine_min']:.5f} "
            f"| {r['mask_iou_mean']:.4f} | {r['mask_iou_min']:.4f} |"
        )
    lines += [
        "",
        f"Greedy path (whole encoder, median ms interleaved with fp32 "
        f"{table['fp32_latency_ms_median']} ms; {table['default_recipe']}):",
        "",
        "| step | kept float | emb cosine min | mask IoU mean | mask IoU min | meets | ms | speed-up |",
        "|-|-|-:|-:|-:|-|-:|-:|",
    ]
    for c in table["candidates"]:
        lines.append(
            f"| {c['label']} | {', '.join(c['floated']) or '-'} | {c['emb_cosine_min']:.5f} "
            f"| {c['mask_iou_mean']:.4f} | {c['mask_iou_min']:.4f} | {c['meets_target']} "
            f"| {c['latency_ms_median']:.1f} | {c['speedup_vs_fp32']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def write_scan(scan: Scan, out_dir: Path) -> list[Path]:
    """The TFLite scan's ``scan.json``, ``scan.md`` and ``scan.png`` in ``out_dir``; their paths."""
    table = scan_table(scan)
    return write_table(table, markdown(table), out_dir)
