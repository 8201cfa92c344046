"""The sensitivity scan as a table (JSON and Markdown) and a plot: an encoder's, or a decoder's
(score error instead of the embedding cosine, latency at each timed point count)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..bench.host import cpu_summary, host_machine
from ..fileio import atomic_output
from ..vocabulary import Role
from .mixed import Scan, saved_ms
from .sensitivity import Measurement

# per role: the JSON key of a block's quantized node count, and the first statistic's column
COUNT_KEY = {Role.ENCODER: "convs", Role.DECODER: "matmuls"}
FIRST_STATISTIC = {
    Role.ENCODER: ("emb_cosine_min", "emb cosine min", ".5f"),
    Role.DECODER: ("score_max_abs", "score max abs", ".4f"),
}


def base_table(scan: Scan, measured: list[Measurement]) -> dict[str, Any]:
    """What every runtime's scan table holds: one row per scanned block (only that block reduced,
    by sensitivity rank) and one per measured candidate with its whole-graph latency (and, where
    the graph was timed on several feeds, per feed). ``machine``: where the latencies were timed
    (this host, not a device), also named in the facts line."""
    role = scan.path[0].role
    rank = {name: i for i, name in enumerate(scan.order, 1)}
    blocks = [
        {
            "block": b.name,
            "scope": b.scope,
            COUNT_KEY[role]: b.convs,
            "sensitivity_rank": rank[b.name],
            **scan.single[b.name].statistics(),
        }
        for b in scan.blocks
    ]
    fp32_ms = scan.latency_ms["fp32"]
    machine = host_machine()
    candidates = [
        {
            **m.summary(),
            "latency_ms_median": round(scan.latency_ms[m.label], 1),
            "speedup_vs_fp32": round(fp32_ms / scan.latency_ms[m.label], 3),
        }
        for m in measured
    ]
    by_feed = scan.latency_ms_by_feed or {"": scan.latency_ms}  # "": the one feed, unnamed
    if len(by_feed) > 1:
        for c in candidates:
            c["speedup_vs_fp32_by_feed"] = {
                feed: round(ms["fp32"] / ms[c["label"]], 3) for feed, ms in by_feed.items()
            }
    return {
        "graph": str(role),
        "precision": scan.reduced,
        "target": {k: list(v) for k, v in scan.target.items()},
        "facts": {**scan.facts, "timed_on": cpu_summary(machine) or machine["processor"]},
        "machine": machine,
        "fp32_latency_ms_median": round(fp32_ms, 1),
        "latency_ms_median_by_feed": {
            feed: {k: round(v, 1) for k, v in ms.items()} for feed, ms in by_feed.items()
        },
        "blocks": blocks,
        "candidates": candidates,
        "chosen": scan.chosen.label,
        "target_met": scan.chosen.meets,
    }


def scan_table(scan: Scan) -> dict[str, Any]:
    """The ONNX scan's table (``base_table`` over the greedy path and the hand-picked policy, if
    any), each block row with ONNX Runtime's per-block profile of the fp32 and the all-reduced
    graph (``profile_int8_ms`` or ``profile_fp16_ms``)."""
    hand = [scan.hand_picked] if scan.hand_picked is not None else []
    table = base_table(scan, [*scan.path, *hand])
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
    role = Role(table["graph"])
    key, header, fmt = FIRST_STATISTIC[role]
    reduced = table["precision"]
    lines = [
        f"# {reduced} sensitivity scan of the {role} (ONNX Runtime, {TITLES[reduced]})",
        "",
        f"Target: {target}. Facts: "
        + ", ".join(f"{k} {v}" for k, v in table["facts"].items())
        + ".",
        "",
        f"Each block alone {reduced} (every other block float32), judged on the held-out scoring "
        f"photos; profile ms: ONNX Runtime's per-node profile of the fp32 and the all-{reduced} "
        "graph, summed over the block's nodes.",
        "",
        f"| rank | block | {COUNT_KEY[role]} | {header} | mask IoU mean | mask IoU min | fp32 ms "
        f"| {reduced} ms | saved ms |",
        "|-:|-|-:|-:|-:|-:|-:|-:|-:|",
    ]
    for r in sorted(table["blocks"], key=lambda r: r["sensitivity_rank"]):
        lines.append(
            f"| {r['sensitivity_rank']} | {r['block']} | {r[COUNT_KEY[role]]} | {r[key]:{fmt}} "
            f"| {r['mask_iou_mean']:.4f} | {r['mask_iou_min']:.4f} | {r['profile_fp32_ms']:.1f} "
            f"| {r[f'profile_{reduced}_ms']:.1f} | {r['profile_saved_ms']:.1f} |"
        )
    by_feed = table["latency_ms_median_by_feed"]
    fp32 = ", ".join(f"{_feed(f, by_feed)}{ms['fp32']} ms" for f, ms in by_feed.items())
    heading = f"Candidates (whole graph, median ms interleaved with fp32: {fp32}):"
    return "\n".join(lines + candidate_lines(table, heading, "candidate")) + "\n"


def candidate_lines(table: dict[str, Any], heading: str, first_column: str) -> list[str]:
    """The Markdown table of ``table["candidates"]`` under ``heading`` (both runtimes' reports):
    ms and speed-up on each timing feed."""
    key, header, fmt = FIRST_STATISTIC[Role(table["graph"])]
    feeds = list(table["latency_ms_median_by_feed"])
    by_feed = table["latency_ms_median_by_feed"]
    timing = " | ".join(f"{_feed(f, by_feed)}ms | speed-up" for f in feeds)
    lines = [
        "",
        heading,
        "",
        f"| {first_column} | kept float | {header} | mask IoU mean | mask IoU min | meets "
        f"| {timing} |",
        "|-|-|-:|-:|-:|-" + "|-:|-:" * len(feeds) + "|",
    ]
    for c in table["candidates"]:
        cells = " | ".join(
            f"{by_feed[f][c['label']]:.1f} | {by_feed[f]['fp32'] / by_feed[f][c['label']]:.2f}x"
            for f in feeds
        )
        lines.append(
            f"| {c['label']} | {', '.join(c['floated']) or '-'} | {c[key]:{fmt}} "
            f"| {c['mask_iou_mean']:.4f} | {c['mask_iou_min']:.4f} | {c['meets_target']} "
            f"| {cells} |"
        )
    return lines


def _feed(name: str, by_feed: dict[str, Any]) -> str:
    """A timing feed's label in a column header ("" where the graph was timed on one feed)."""
    return f"{name} " if len(by_feed) > 1 else ""


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
    floor = right.twinx()  # the min IoU, which usually decides, on its own scale
    for c in table["candidates"]:
        ms, colour = c["latency_ms_median"], "C1" if c["meets_target"] else "C0"
        right.scatter(ms, c["mask_iou_mean"], c=colour)
        right.annotate(c["label"], (ms, c["mask_iou_mean"]), fontsize=8)
        floor.scatter(ms, c["mask_iou_min"], marker="x", c=colour, alpha=0.6)
    right.axvline(table["fp32_latency_ms_median"], color="gray", linestyle="--", label="fp32")
    right.axhline(
        table["target"]["mask_iou_mean"][1], color="C3", linestyle=":", label="mean target"
    )
    if "mask_iou_min" in table["target"]:
        floor.axhline(
            table["target"]["mask_iou_min"][1],
            color="C3",
            linestyle="-.",
            alpha=0.6,
            label="min target (x)",
        )
        floor.legend(loc="lower right")
    right.set_xlabel(f"{table['graph']} ms (median, interleaved)")
    right.set_ylabel("mean mask IoU (dots; held-out scoring photos)")
    floor.set_ylabel("min mask IoU (x)")
    right.set_title("candidates (orange: meets the whole target)")
    right.legend(loc="upper left")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


SCAN_FILES = ("scan.json", "scan.md", "scan.png")  # what every scan writes in its folder


def write_table(table: dict[str, Any], md: str, out_dir: Path) -> list[Path]:
    """``SCAN_FILES`` in ``out_dir``: the JSON ``table``, the Markdown ``md`` and the plot; their
    paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in SCAN_FILES]
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
