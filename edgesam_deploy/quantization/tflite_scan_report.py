"""The TFLite int8-full scan as a table (JSON and Markdown) and a plot (``scan_report.plot``).

The ONNX table's rows and keys, without its per-block profile columns: LiteRT's Python interpreter
has no per-op profiler, and XNNPACK runs the whole encoder as one delegate node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .mixed import Scan
from .scan_report import base_table, candidate_lines, write_table
from .tflite_mixed import DEFAULT_RECIPE

RUNTIME = "LiteRT interpreter, XNNPACK, int8-full (ai-edge-quantizer)"


def scan_table(scan: Scan) -> dict[str, Any]:
    """The TFLite scan's table (``scan_report.base_table`` over the greedy path; step 0 is the
    export's default recipe)."""
    table = base_table(scan, scan.path)
    default = f"step 0 ({scan.path[0].label}) is {DEFAULT_RECIPE}"
    return {"runtime": RUNTIME, **table, "default_recipe": default}


def markdown(table: dict[str, Any]) -> str:
    """The table as Markdown: blocks, then the greedy path."""
    target = ", ".join(f"{k} {op} {v:g}" for k, (op, v) in table["target"].items())
    facts = ", ".join(f"{k} {v}" for k, v in table["facts"].items())
    lines = [
        f"# int8 sensitivity scan ({table['runtime']})",
        "",
        f"Target: {target}. Facts: {facts}.",
        "",
        "Each block alone int8 (every other block float), judged on the held-out scoring photos.",
        "",
        "| rank | block | int8 ops | emb cosine min | mask IoU mean | mask IoU min |",
        "|-:|-|-:|-:|-:|-:|",
    ]
    for r in sorted(table["blocks"], key=lambda r: r["sensitivity_rank"]):
        lines.append(
            f"| {r['sensitivity_rank']} | {r['block']} | {r['convs']} | {r['emb_cosine_min']:.5f} "
            f"| {r['mask_iou_mean']:.4f} | {r['mask_iou_min']:.4f} |"
        )
    heading = (
        "Greedy path (whole encoder, median ms interleaved with fp32 "
        f"{table['fp32_latency_ms_median']} ms; {table['default_recipe']}):"
    )
    return "\n".join(lines + candidate_lines(table, heading, "step")) + "\n"


def write_scan(scan: Scan, out_dir: Path) -> list[Path]:
    """The TFLite scan's ``scan.json``, ``scan.md`` and ``scan.png`` in ``out_dir``; their paths."""
    table = scan_table(scan)
    return write_table(table, markdown(table), out_dir)
