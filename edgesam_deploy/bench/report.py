"""Benchmark reports: a rich table for people, JSON for tools, Markdown with a latency/IoU plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from ..fileio import atomic_output, write_json
from ..vocabulary import Role
from .host import cpu_summary
from .runners import RUNNERS
from .schema import (
    DECODER_1,
    DECODER_16,
    ENCODER,
    ArtifactResult,
    BenchReport,
    ParitySummary,
    PipelineResult,
    Stats,
)
from .tradeoff import TradeoffPoint, pareto_front, tradeoff_points

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ARTIFACT_HEADERS = (
    "artifact",
    "runtime",
    "load",
    "encoder p50/p90/min",
    "decoder p50 1 click/16 pts",
    "clicks/s",
    "RSS peak (+load)",
    "MB",
    "parity (measured on)",
    "host parity",
)
# host vs device: the metric columns shown side by side (key, header, format)
COMPARED = (
    ("emb_cosine_min", "emb cos", "{:.6f}"),
    ("emb_max_abs", "emb max|d|", "{:.2e}"),
    ("logit_max_abs", "logit max|d|", "{:.2e}"),
    ("mask_iou_mean", "mask IoU", "{:.4f}"),
    ("mask_iou_min", "IoU min", "{:.4f}"),
)
PIPELINE_HEADERS = (
    "pipeline",
    "FPS (encoder + 1 decode)",
    "frame p50/p90/min",
    "time to first mask",
)
UNITS = "times in ms, memory in MiB, sizes in MB"


def _f(value: float | None, fmt: str = "{:.1f}") -> str:
    return "" if value is None else fmt.format(value)


def _stats(stats: Stats | None) -> str:
    return "" if stats is None else f"{stats.p50:.1f} / {_f(stats.p90) or '-'} / {stats.min:.1f}"


def _verdict(p: ParitySummary) -> str:
    verdict = "pass" if p.passed else "FAIL: " + "; ".join(p.failures)
    iou = p.metrics.get("mask_iou_mean")
    return verdict + (f" (IoU {iou:.4f})" if iou is not None else "")


def _parity(r: ArtifactResult) -> str:
    """Where the row's parity was measured and the verdict, or why it was not measured."""
    if r.parity is not None:
        recorded = " (recorded at export)" if r.parity.source == "manifest" else ""
        return f"{r.parity_measured_on}: {_verdict(r.parity)}{recorded}"
    return f"not measured: {r.parity_reason}" if r.parity_reason else ""


def _host_parity(r: ArtifactResult) -> str:
    if r.host_parity is not None:
        recorded = " (recorded at export)" if r.host_parity.source == "manifest" else ""
        return _verdict(r.host_parity) + recorded
    if r.parity_measured_on == "host":
        return "this row"
    return r.extra.get("parity_error", "")


def _runtime(r: ArtifactResult) -> str:
    d = r.runtime_details
    accel = d.get("providers") or d.get("delegate") or d.get("compute_units")
    accel = accel[0] if isinstance(accel, list) else accel
    return " ".join(str(p) for p in (r.runtime, accel) if p).replace("ExecutionProvider", "")


def _decoder(r: ArtifactResult) -> str:
    cells = [f"{r.latency[k].p50:.1f}" if k in r.latency else "-" for k in (DECODER_1, DECODER_16)]
    return "" if r.role != Role.DECODER else " / ".join(cells)


def artifact_row(r: ArtifactResult) -> list[str]:
    """Cells of one artifact (ARTIFACT_HEADERS order); unmeasured ones carry the reason."""
    head = [f"{r.file} {r.precision}"]
    size = _f(r.size_bytes / 1e6 if r.size_bytes else None)
    if not r.measured:
        blank = ["", "", "", "", ""]
        return head + [f"not measured: {r.reason}", *blank, size, _parity(r), _host_parity(r)]
    rss = "" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f} (+{r.rss_delta_mib or 0:.0f})"
    return head + [
        _runtime(r),
        _f(r.load_ms),
        _stats(r.latency.get(ENCODER)),
        _decoder(r),
        _f(r.clicks_per_s),
        rss,
        size,
        _parity(r),
        _host_parity(r),
    ]


def compared(report: BenchReport) -> list[tuple[ArtifactResult, ParitySummary, ParitySummary]]:
    """(row, host figure, device figure) of rows measured away from this host and on it too."""
    return [
        (r, r.host_parity, r.parity)
        for r in report.artifacts
        if r.parity and r.host_parity and r.parity_measured_on != "host"
    ]


def comparison_headers(report: BenchReport) -> tuple[str, ...]:
    where = next((r.parity_measured_on for r, _, _ in compared(report)), "device")
    cells = tuple(f"{header} host / {where}" for _, header, _ in COMPARED)
    return ("artifact", *cells, "verdict host / " + where)


def comparison_row(r: ArtifactResult, host: ParitySummary, dev: ParitySummary) -> list[str]:
    """One artifact's host and device figures side by side; '<- missed on the host' flags a drift
    that only the device shows."""
    cells = []
    for key, _, fmt in COMPARED:
        pair = [fmt.format(p.metrics[key]) if key in p.metrics else "-" for p in (host, dev)]
        cells.append(" / ".join(pair))
    verdict = " / ".join("pass" if p.passed else "FAIL" for p in (host, dev))
    missed = "  <- missed on the host" if host.passed and not dev.passed else ""
    return [f"{r.file} {r.precision}", *cells, verdict + missed]


def pipeline_row(p: PipelineResult) -> list[str]:
    if not p.measured:
        return [p.label, f"not measured: {p.reason}", "", ""]
    return [p.label, _f(p.fps, "{:.2f}"), _stats(p.end_to_end), _f(p.time_to_first_mask_ms)]


def title(report: BenchReport) -> str:
    d = report.device
    threads = report.settings.get("threads") or "default"
    runs, warmup = report.settings["runs"], report.settings["warmup"]
    where = d.hostname or d.description
    return f"{d.name} ({d.runner}: {where}); {runs} runs after {warmup} warm-up, threads {threads}"


def print_report(report: BenchReport, console: Console | None = None) -> None:
    """Two rich tables: artifacts, then encoder + decoder pipelines."""
    console = console or Console()
    table = Table(title=f"Benchmark on {title(report)}; {UNITS}")
    for h in ARTIFACT_HEADERS:
        left = h in ("artifact", "runtime") or "parity" in h
        table.add_column(h, justify="left" if left else "right")
    for r in report.artifacts:
        table.add_row(*artifact_row(r))
    console.print(table)
    if report.pipelines:
        pipes = Table(title="Encoder + decoder (FPS from the p50 frame time)")
        for h in PIPELINE_HEADERS:
            pipes.add_column(h, justify="left" if h == "pipeline" else "right")
        for p in report.pipelines:
            pipes.add_row(*pipeline_row(p))
        console.print(pipes)
    if compared(report):
        side = Table(title="Parity: the same artifact on this host and on the device")
        for h in comparison_headers(report):
            side.add_column(h, justify="left" if h == "artifact" else "right")
        for row in compared(report):
            side.add_row(*comparison_row(*row))
        console.print(side)


def write_json_report(path: Path, report: BenchReport) -> None:
    write_json(path, report.to_dict())


def _md_table(headers: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_path(markdown: Path) -> Path:
    """The PNG written beside a Markdown report."""
    return markdown.with_name(markdown.stem + "-latency.png")


def latency_measured_on(report: BenchReport) -> str:
    """Where the report's timings were taken: host, device or emulated (its runner's label)."""
    kind = report.device.runner
    return RUNNERS[kind].measured_on if kind in RUNNERS else "device"


def plot_title(report: BenchReport, points: list[TradeoffPoint]) -> str:
    """Says where the latencies and the IoUs were measured."""
    iou_on = sorted({w for p in points for w in p.iou_measured_on})
    return (
        f"EdgeSAM on {report.device.name}: latency measured on {latency_measured_on(report)} "
        f"({report.device.runner}), mask IoU on {' and '.join(iou_on) or '-'}"
    )


def not_measured_note(missing: list[str]) -> str:
    """The caption naming the pipelines left off the plot ('' if none)."""
    return f"not measured: {', '.join(missing)}" if missing else ""


def _draw_points(ax: Axes, points: list[TradeoffPoint], front: list[int]) -> None:
    """One colour per runtime, marker area by size, each point labelled, frontier points ringed."""
    runtimes = sorted({p.runtime for p in points})
    colours = {r: f"C{i % 10}" for i, r in enumerate(runtimes)}
    for i, p in enumerate(points):
        area = 30 + 8 * (p.size_mb or 0)
        edge = "black" if i in front else "none"
        ax.scatter(
            p.latency_ms,
            p.iou,
            s=area,
            color=colours[p.runtime],
            alpha=0.75,
            edgecolors=edge,
            linewidths=1.5,
            zorder=3,
        )
        size = f", {p.size_mb:.0f} MB" if p.size_mb is not None else ""
        ax.annotate(
            f"{p.label}{size}",
            (p.latency_ms, p.iou),
            textcoords="offset points",
            xytext=(7, 5),
            fontsize=8,
        )
    for runtime in runtimes:
        ax.scatter([], [], color=colours[runtime], label=runtime)


def _set_limits(ax: Axes, points: list[TradeoffPoint]) -> None:
    """Log latency axis with room for the labels (every tick labelled within a decade), IoU axis
    around the points (never a single point in a 0.1-wide band)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    lo, hi = min(p.latency_ms for p in points) / 1.2, max(p.latency_ms for p in points) * 1.5
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain if hi / lo < 10 else NullFormatter())
    ious = [p.iou for p in points]
    pad = 0.1 * max(max(ious) - min(ious), 0.01)
    ax.set_ylim(min(ious) - pad, min(max(ious) + pad, 1.0 + pad / 3))  # IoU <= 1: little room above


def write_plot(path: Path, report: BenchReport) -> tuple[bool, str]:
    """Latency (encoder + one click, p50) against mean mask IoU per pipeline, the Pareto frontier
    marked; returns whether a point was drawn and the 'not measured' caption."""
    points, missing = tradeoff_points(report)
    note = not_measured_note(missing)
    if not points:
        return False, note
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front([(p.latency_ms, p.iou) for p in points])
    fig, ax = plt.subplots(figsize=(8, 5.5))
    _draw_points(ax, points, front)
    ax.plot(
        [points[i].latency_ms for i in front],
        [points[i].iou for i in front],
        "k:",
        drawstyle="steps-post",
        label="Pareto frontier (ringed)",
        zorder=2,
    )
    _set_limits(ax, points)
    ax.set_xlabel("latency, ms: encoder + one click (p50)")
    ax.set_ylabel("mask IoU against PyTorch fp32 (lower of encoder, decoder)")
    ax.set_title(plot_title(report, points), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title="runtime; marker area: MB", title_fontsize=8)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return True, note


def write_markdown(path: Path, report: BenchReport) -> Path | None:
    """Write ``path`` (Markdown) and the latency/IoU plot beside it; returns the plot's path if drawn."""
    path = Path(path)
    plot = plot_path(path)
    drawn, note = write_plot(plot, report)
    model = report.model
    source = (
        f"random weights, seed {model.get('seed')}"
        if model.get("kind") == "random"
        else model.get("path", "")
    )
    parts = [
        f"# EdgeSAM benchmark: {report.device.name}",
        "",
        f"- device: {report.device.description or report.device.name} ({report.device.runner}; "
        f"{report.device.system} {report.device.machine}, {report.device.cpu_count or '?'} CPUs)"
        + (f"; CPU: {cpu}" if (cpu := cpu_summary(report.device.details)) else ""),
        f"- settings: {report.settings['runs']} timed runs after {report.settings['warmup']} "
        f"warm-up, threads {report.settings.get('threads') or 'default'}",
        f"- model: {model.get('variant', 'edgesam')} ({source})",
        f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(report.versions.items()))}",
        f"- created: {report.created}",
        "",
        "## Artifacts",
        "",
        f"({UNITS}; RSS is the process high-water mark, in brackets its growth while loading and "
        "running the artifact)",
        "",
        _md_table(ARTIFACT_HEADERS, [artifact_row(r) for r in report.artifacts]),
    ]
    if report.pipelines:
        parts += [
            "",
            "## Encoder + decoder",
            "",
            _md_table(PIPELINE_HEADERS, [pipeline_row(p) for p in report.pipelines]),
        ]
    if compared(report):
        rows = [comparison_row(*row) for row in compared(report)]
        side = _md_table(comparison_headers(report), rows)
        parts += ["", "## Parity on this host and on the device", "", side]
    if drawn:
        parts += ["", f"![latency against mask IoU per pipeline]({plot.name})"]
    if note:
        parts += ["", f"Left off the plot, {note}."]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n")
    return plot if drawn else None
