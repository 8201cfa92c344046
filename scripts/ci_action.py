#!/usr/bin/env python3
"""The steps of this repository's GitHub Action (``action.yml``): install, export, parity,
summary, verdict.

``python ci_action.py STEP``. Each step reads the action's inputs from ``EDGESAM_*`` environment
variables (action.yml maps ``${{ inputs.* }}`` to them rather than into the command line), runs
the tool as ``PYTHON -m edgesam_deploy`` with the interpreter running this script, and writes its
outputs to ``$GITHUB_OUTPUT``. Standard library only up to the summary step: the install step runs
before the tool is installed. A bad input is one line (``::error::``) and exit 2, as in the tool.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

TOOL = [sys.executable, "-m", "edgesam_deploy"]
REPORTS = ("parity.xml", "parity.json")  # junit, json: written into the output directory
GATE_CODES = (0, 1)  # the parity gate's pass and drift; anything else is an error (2: bad input)


class InputError(Exception):
    """An input the action cannot use; the message is shown as one line."""


def env(name: str) -> str:
    """The input behind ``EDGESAM_<name>``, stripped ('' when not given)."""
    return os.environ.get(f"EDGESAM_{name}", "").strip()


def set_output(**values: str) -> None:
    """Append ``key=value`` lines to $GITHUB_OUTPUT (the step's outputs)."""
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        for key, value in values.items():
            out.write(f"{key.replace('_', '-')}={value}\n")


def run(cmd: list[str]) -> int:
    """Run ``cmd`` with its output in the log; returns its exit code."""
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def manifest_targets(export_dir: Path) -> list[str]:
    """The targets of the artifacts an existing export lists (its manifest.json)."""
    manifest = export_dir / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"export-dir {export_dir}: no manifest.json there")
    try:
        artifacts = json.loads(manifest.read_text(encoding="utf-8"))["artifacts"]
        return sorted({str(a["target"]) for a in artifacts})
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{manifest}: not an edgesam-deploy manifest ({exc})") from exc


def requirement(package: str, extras: list[str]) -> str:
    """``package`` (a path, or a requirement such as ``edgesam-deploy==0.2`` or
    ``edgesam-deploy @ git+URL``) with ``extras`` added, in the form pip accepts."""
    tail = f"[{','.join(extras)}]" if extras else ""
    if Path(package).exists() or package.startswith((".", "/", "~")):
        return f"{package}{tail}"
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", package)
    if name is None:
        raise InputError(f"package '{package}': neither a path nor a requirement")
    return f"{name.group()}{tail}{package[name.end() :]}"


def step_install() -> int:
    """pip install the tool with the extras the targets need, or check that it is there."""
    if env("INSTALL").lower() in ("false", "no", "0"):
        return run([*TOOL, "--version"])
    export_dir = env("EXPORT_DIR")
    if export_dir:
        extras = manifest_targets(Path(export_dir))
    else:
        extras = sorted({t.strip() for t in env("TARGETS").split(",") if t.strip()})
    spec = requirement(env("PACKAGE") or env("ACTION_PATH"), extras)
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", spec]
    return run(pip) or run([*TOOL, "--version"])


def step_export() -> int:
    """Export the requested targets into OUTPUT_DIR/export, or take the given export-dir."""
    given = env("EXPORT_DIR")
    if given:
        manifest_targets(Path(given))  # it must be an export
        set_output(export_dir=str(Path(given).resolve()))
        print(f"export-dir given: {given} (no export)")
        return 0
    if not env("TARGETS"):
        raise InputError("give targets (e.g. onnx,tflite) or an existing export-dir")
    out = Path(env("OUTPUT_DIR") or "edgesam-parity").resolve() / "export"
    cmd = [*TOOL, "export", "--target", env("TARGETS"), "--out", str(out), "--no-parity"]
    for flag, name in (
        ("--precision", "PRECISION"),
        ("--checkpoint", "CHECKPOINT"),
        ("--random-weights", "RANDOM_WEIGHTS"),
    ):
        if env(name):
            cmd += [flag, env(name)]
    code = run(cmd)
    if code == 0:
        set_output(export_dir=str(out))
    return code


def step_parity() -> int:
    """Run the gate with JUnit and JSON reports; its verdict is an output for the last step, so
    the reports are summarized and uploaded before the job fails."""
    out = Path(env("OUTPUT_DIR") or "edgesam-parity").resolve()
    out.mkdir(parents=True, exist_ok=True)
    junit, report = (out / name for name in REPORTS)
    code = run([*TOOL, "parity", env("EXPORT_DIR"), "--junit", str(junit), "--json", str(report)])
    if code not in GATE_CODES:
        return code
    set_output(
        exit_code=str(code), passed=str(code == 0).lower(), junit=str(junit), json=str(report)
    )
    return 0


def _row(cells: list[str]) -> str:
    """A Markdown table row; a '|' inside a cell (``max|d|``) is escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _verdict(artifact: dict) -> str:
    if not artifact.get("measured", True):
        return f"not measured here: {artifact.get('note', '')}"
    return "pass" if artifact.get("passed") else "**FAIL**: " + "; ".join(artifact["failures"])


def summary_markdown(report: dict) -> str:
    """The job summary of a parity JSON report: the verdict, then one row per artifact with the
    columns of the tool's own table (run after the install step: the tool is importable)."""
    from edgesam_deploy.parity.report import COLUMNS

    artifacts = report["artifacts"]
    failed = [a for a in artifacts if not a["passed"]]
    verdict = "passed" if report["passed"] else f"FAILED ({len(failed)} of {len(artifacts)})"
    ref = report.get("reference", {})
    headers = ["artifact", "precision", *(header for _, header, _ in COLUMNS), "verdict"]
    lines = [
        f"## EdgeSAM parity gate: {verdict}",
        "",
        f"Against {ref.get('model', 'the PyTorch fp32 reference')}; photos: "
        f"{', '.join(ref.get('photos', []))}; prompts: {', '.join(ref.get('prompts', []))}.",
        "",
        _row(headers),
        "|" + "---|" * len(headers),
    ]
    for a in artifacts:
        m = a["metrics"]
        cells = [fmt.format(m[key]) if key in m else "" for key, _, fmt in COLUMNS]
        row = [a["file"], a["precision"], *cells, _verdict(a)]
        lines.append(_row(row))
    return "\n".join(lines) + "\n"


def step_summary() -> int:
    """Append the parity report as Markdown to $GITHUB_STEP_SUMMARY."""
    report = json.loads(Path(env("JSON")).read_text(encoding="utf-8"))
    with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as out:
        out.write(summary_markdown(report))
    return 0


def step_verdict() -> int:
    """Fail with the gate's exit code, naming the artifacts that drifted."""
    code = int(env("EXIT_CODE") or 2)
    if code:
        report = json.loads(Path(env("JSON")).read_text(encoding="utf-8"))
        failed = [a["file"] for a in report.get("artifacts", []) if not a.get("passed")]
        print(f"::error title=EdgeSAM parity gate::drift in {', '.join(failed)}")
    else:
        print("EdgeSAM parity gate passed")
    return code


STEPS: dict[str, Callable[[], int]] = {
    "install": step_install,
    "export": step_export,
    "parity": step_parity,
    "summary": step_summary,
    "verdict": step_verdict,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in STEPS:
        print(f"usage: ci_action.py {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    try:
        return STEPS[argv[0]]()
    except InputError as exc:
        print(f"::error title=EdgeSAM parity gate::{exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
