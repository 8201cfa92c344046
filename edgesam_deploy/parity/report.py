"""Parity reports: a rich table for people, JSON for tools, JUnit XML for CI systems."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..fileio import atomic_output, write_json
from .engine import ArtifactParity

COLUMNS = (
    ("emb_cosine_min", "emb cos", "{:.6f}"),
    ("emb_psnr_min", "emb PSNR", "{:.1f}"),
    ("emb_max_abs", "emb max|d|", "{:.2e}"),
    ("logit_max_abs", "logit max|d|", "{:.2e}"),
    ("mask_iou_mean", "mask IoU", "{:.5f}"),
    ("mask_iou_min", "IoU min", "{:.4f}"),
    ("score_max_abs", "score max|d|", "{:.2e}"),
    ("best_mask_agreement", "best same", "{:.2f}"),
)


def table(results: list[ArtifactParity], title: str = "Parity against the PyTorch fp32 reference") -> Table:
    t = Table(title=title)
    t.add_column("artifact")
    t.add_column("precision")
    for _, header, _ in COLUMNS:
        t.add_column(header, justify="right")
    t.add_column("verdict")
    for r in results:
        cells = [COLUMNS[i][2].format(r.metrics[k]) if k in r.metrics else "" for i, (k, _, _) in enumerate(COLUMNS)]
        verdict = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]: " + "; ".join(r.failures)
        verdict = verdict if r.measured else "[yellow]not measured here[/yellow]"
        t.add_row(r.file, r.precision, *cells, verdict + (f" ({r.note})" if r.note else ""))
    return t


def print_table(results: list[ArtifactParity], console: Console | None = None) -> None:
    (console or Console()).print(table(results))


def summary(results: list[ArtifactParity], reference: dict) -> dict:
    """The JSON document (also stored in the manifest)."""
    return {
        "passed": all(r.passed for r in results),
        "reference": reference,
        "artifacts": [r.as_dict() for r in results],
    }


def write_json_report(path: Path, results: list[ArtifactParity], reference: dict) -> None:
    write_json(path, summary(results, reference))


def write_junit(path: Path, results: list[ArtifactParity]) -> None:
    """One testcase per artifact; a failure element lists the violated thresholds."""
    suite = ET.Element("testsuite", name="edgesam-deploy parity", tests=str(len(results)),
                       failures=str(sum(not r.passed for r in results)))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"parity.{r.target}.{r.role}", name=f"{r.file} [{r.precision}]")
        props = ET.SubElement(case, "properties")
        for k, v in r.metrics.items():
            ET.SubElement(props, "property", name=k, value=f"{v:.8g}")
        if not r.measured:
            ET.SubElement(case, "skipped", message=r.note)
        elif not r.passed:
            fail = ET.SubElement(case, "failure", message="; ".join(r.failures))
            fail.text = "\n".join(r.failures)
    with atomic_output(Path(path)) as tmp:
        ET.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
