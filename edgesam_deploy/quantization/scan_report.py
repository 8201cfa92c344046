"""The sensitivity scan as a table (JSON and Markdown) and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fileio import atomic_output
from .mixed import Scan, saved_ms
from .sensitivity import SUMMARY_KEYS, Measurement


def base_table(scan: Scan, measured: list[Measurement]) -> dict[str, Any]:
    """What every runtime's scan table holds: one row per scanned block (only that block reduced,
    by sensitivity rank) and one per measured candidate with its whole-encoder latency."""
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
        for m in measured
    ]
    return {
        "precision": scan.reduced,
        "target": {k: list(v) for k, v in scan.target.items()},
        "facts": scan.facts,
        "fp32_latency_ms_median": round(fp32_ms, 1),
        "blocks": blocks,
        "candidates": candidates,
        "chosen": scan.chosen.label,
        "target_met": scan.chosen.meets,
    }


def scan_table(scan: Scan) -> dict[str, Any]:
    """The ONNX scan's table (``base_table`` over the greedy path and the hand-picked policy),
    each block row with ONNX Runtime's per-block profile of the fp32 and the all-reduced graph
    (``profile_int8_ms`` or ``profile_fp16_ms``)."""
    table = base_table(scan, [*scan.path, scan.hand_picked])
    saved = saved_ms(scan)
    for row in table["blocks"]:
        row["profile_fp32_ms"] = scan.profile_ms["fp32"].get(row["block"], 0.0)
        row[f"profile_{scan.reduced}_ms"] = scan.profile_ms[scan.reduced].get(row["block"], 0.0)
        row["profile_saved_ms"] = saved.get(row["block"], 0.0)
    table["profile_other_ms"] = {k: v.get("other", 0.0) for k, v in scan.profile_ms.items()}
    return table


TITLES = {"int8": "int8-static QDQ", "fp16": "fp16 weights and activations, float32 I/O"}


def markdown(table: dict[str, Any]) -> str:
    """The table as Markdown: blocks, then candidates."""
    target = ", ".join(f"{k} {op} {v:g}" for k, (op, v) in table["target"].items())
    reduced = table["precision"]
    lines = [
        f"# {reduced} sensitivity scan (ONNX Runtime, {TITLES[reduced]})",
        "",
        f"Target: {target}. Facts: "
        + ", ".join(f"{k} {v}" for k, v in table["facts"].items())
        + ".",
        "",
        f"Each block alone {reduced} (every other block float32), judged on the held-out scoring "
        f"photos; profile ms: ONNX Runtime's per-node profile of the fp32 and the all-{reduced} "
        "graph, summed over the block's nodes.",
        "",
        f"| rank | block | convs | emb cosine min | mask IoU mean | mask IoU min | fp32 ms "
        f"| {reduced} ms | saved ms |",
        "|-:|-|-:|-:|-:|-:|-:|-:|-:|",
    ]
    for r in sorted(table["blocks"], key=lambda r: r["sensitivity_rank"]):
        lines.append(
            f"| {r['sensitivity_rank']} | {r['block']} | {r['convs']} | {r['emb_cosine_min']:.5f} "
            f"| {r['mask_iou_mean']:.4f} | {r['mask_iou_min']:.4f} | {r['profile_fp32_ms']:.1f} "
            f"| {r[f'profile_{reduced}_ms']:.1f} | {r['profile_saved_ms']:.1f} |"
        )
    heading = (
        "Candidates (whole graph, median ms interleaved with fp32 "
        f"{table['fp32_latency_ms_median']} ms):"
    )
    return "\n".join(lines + candidate_lines(table, heading, "candidate")) + "\n"


def candidate_lines(table: dict[str, Any], heading: str, first_column: str) -> list[str]:
    """The Markdown table of ``table["candidates"]`` under ``heading`` (both runtimes' reports)."""
    lines = [
        "",
        heading,
        "",
        f"| {first_column} | kept float | emb cosine min | mask IoU mean | mask IoU min | meets "
        "| ms | speed-up |",
        "|-|-|-:|-:|-:|-|-:|-:|",
    ]
    for c in table["candidates"]:
        lines.append(
            f"| {c['label']} | {', '.join(c['floated']) or '-'} | {c['emb_cosine_min']:.5f} "
            f"| {c['mask_iou_mean']:.4f} | {c['mask_iou_min']:.4f} | {c['meets_target']} "
            f"| {c['latency_ms_median']:.1f} | {c['speedup_vs_fp32']:.2f}x |"
        )
    return lines


def plot(table: dict[str, Any], path: Path) -> None:
    """Left: mean-IoU loss per block alone reduced; right: latency vs mean IoU of the candidates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = table["blocks"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    left.bar([r["block"] for r in blocks], [1.0 - r["mask_iou_mean"] for r in blocks])
    left.set_ylabel(f"1 - mean mask IoU (block alone {table['precision']})")
    left.tick_params(axis="x", rotation=90)
    left.set_title("sensitivity per block (held-out scoring photos)")
    for c in table["candidates"]:
        right.scatter(
            c["latency_ms_median"], c["mask_iou_mean"], c="C1" if c["meets_target"] else "C0"
        )
        right.annotate(c["label"], (c["latency_ms_median"], c["mask_iou_mean"]), fontsize=8)
    right.axvline(table["fp32_latency_ms_median"], color="gray", linestyle="--", label="fp32")
    right.axhline(table["target"]["mask_iou_mean"][1], color="C3", linestyle=":", label="target")
    right.set_xlabel("encoder ms (median, interleaved)")
    right.set_ylabel("mean mask IoU (calibration)")
    right.set_title("candidates (orange: meets the target)")
    right.legend()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_table(table: dict[str, Any], md: str, out_dir: Path) -> list[Path]:
    """``scan.json`` (``table``), ``scan.md`` (``md``) and ``scan.png`` in ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "scan.json", out_dir / "scan.md", out_dir / "scan.png"]
    with atomic_output(paths[0]) as tmp:
        tmp.write_text(json.dumps(table, indent=2) + "\n")
    with atomic_output(paths[1]) as tmp:
        tmp.write_text(md)
    plot(table, paths[2])
    return paths


def write_scan(scan: Scan, out_dir: Path) -> list[Path]:
    """The ONNX scan's ``scan.json``, ``scan.md`` and ``scan.png`` in ``out_dir``; their paths."""
    table = scan_table(scan)
    return write_table(table, markdown(table), out_dir)
