"""The GitHub Action (action.yml): its declarations, and its steps run in order the way the
runner runs a composite action (expressions substituted, GITHUB_* files, `uses:` steps recorded,
not run), on one seeded ONNX fp32 export: the gate passes on it and fails on a tampered copy."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from edgesam_deploy.manifest import Manifest

from test_bench_support import subset_export

pytestmark = pytest.mark.slow  # one export and two parity runs: about 3 minutes on 2 cores

ROOT = Path(__file__).resolve().parent.parent
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
DECODER = "onnx/decoder.fp32.onnx"


def _script():
    """scripts/ci_action.py as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("ci_action", ROOT / "scripts" / "ci_action.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expressions(node) -> list[str]:
    """Every ``${{ ... }}`` expression in a parsed YAML node."""
    if isinstance(node, dict):
        return [e for v in node.values() for e in _expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in _expressions(v)]
    return EXPRESSION.findall(node) if isinstance(node, str) else []


def _parse_commands(path: Path) -> dict[str, str]:
    """A GITHUB_OUTPUT / GITHUB_ENV file: ``key=value`` lines and ``key<<DELIM`` blocks."""
    values: dict[str, str] = {}
    lines = iter(path.read_text().splitlines()) if path.exists() else iter(())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<")[0]:
            key, delim = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delim:
                    break
                body.append(inner)
            values[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


@dataclass
class Job:
    """What a runner would have done with the action's steps."""

    ran: list[str] = field(default_factory=list)  # step names, in order
    exit_code: int = 0  # of the step that failed the job (0: none)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # step id -> outputs
    uses: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # action, its `with`
    summary: str = ""  # $GITHUB_STEP_SUMMARY of every step
    logs: str = ""
    action_outputs: dict[str, str] = field(default_factory=dict)  # the action's `outputs`


def run_action(inputs: dict[str, str], workspace: Path, env: dict[str, str]) -> Job:
    """Run action.yml's steps as the runner does; a failed step stops the job."""
    declared = ACTION["inputs"]
    assert set(inputs) <= set(declared), set(inputs) - set(declared)
    values = {k: str(inputs.get(k, v.get("default", ""))) for k, v in declared.items()}
    job = Job()

    def evaluate(expression: str) -> str:
        kind, _, rest = expression.partition(".")
        if kind == "inputs":
            return values[rest]
        if expression == "github.action_path":
            return str(ROOT)
        step, outputs, key = rest.split(".")
        assert kind == "steps" and outputs == "outputs", f"the runner stand-in lacks {expression}"
        return job.outputs.get(step, {}).get(key, "")

    def substitute(text: str) -> str:
        return EXPRESSION.sub(lambda m: evaluate(m.group(1)), str(text))

    files = workspace / "runner"
    files.mkdir(parents=True, exist_ok=True)
    job_env = {**os.environ, **env, "GITHUB_WORKSPACE": str(workspace)}
    job_env["GITHUB_ENV"], job_env["GITHUB_PATH"] = str(files / "env"), str(files / "path")
    for i, step in enumerate(ACTION["runs"]["steps"]):
        assert "if" not in step, "the stand-in runs every step until one fails"
        job.ran.append(step["name"])
        if "uses" in step:
            job.uses.append((step["uses"], {k: substitute(v) for k, v in step["with"].items()}))
            continue
        assert step["shell"] == "bash" and "working-directory" not in step, step
        script = files / f"step{i}.sh"
        script.write_text(substitute(step["run"]))
        step_env = {**job_env, **{k: substitute(v) for k, v in step.get("env", {}).items()}}
        step_env["GITHUB_OUTPUT"] = str(files / f"output{i}")
        step_env["GITHUB_STEP_SUMMARY"] = str(files / f"summary{i}")
        step_env["GITHUB_ACTION_PATH"] = str(ROOT)
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env=step_env,
            capture_output=True,
            text=True,
        )
        job.logs += f"--- {step['name']}\n{proc.stdout}{proc.stderr}"
        if "id" in step:
            job.outputs[step["id"]] = _parse_commands(files / f"output{i}")
        summary = files / f"summary{i}"
        job.summary += summary.read_text() if summary.exists() else ""
        job_env.update(_parse_commands(files / "env"))
        if (files / "path").exists():
            extra = (files / "path").read_text().split()
            job_env["PATH"] = os.pathsep.join([*reversed(extra), os.environ["PATH"]])
        if proc.returncode:
            job.exit_code = proc.returncode
            break
    job.action_outputs = {k: substitute(v["value"]) for k, v in ACTION["outputs"].items()}
    return job


TOOL_ENV = {"PYTHONPATH": str(ROOT), "PIP_NO_INDEX": "1"}  # this checkout; pip: no network


def test_action_declares_what_it_uses():
    """Every input is used and every used one declared; outputs come from steps that exist;
    third-party actions are pinned to a major version; every step runs the tested script."""
    used = [e for e in _expressions(ACTION["runs"]) if e.startswith("inputs.")]
    assert {e.removeprefix("inputs.") for e in used} == set(ACTION["inputs"])
    ids = {s["id"] for s in ACTION["runs"]["steps"] if "id" in s}
    for name, output in ACTION["outputs"].items():
        (expression,) = EXPRESSION.findall(output["value"])
        step, outputs, _ = expression.removeprefix("steps.").split(".")
        assert step in ids and outputs == "outputs", name
    script_steps = set()
    for step in ACTION["runs"]["steps"]:
        if "uses" in step:
            assert re.fullmatch(r"actions/[a-z-]+@v\d+", step["uses"]), step["uses"]
        else:
            assert step["run"].startswith('"${{ inputs.python }}"'), step["name"]
            script_steps.add(step["run"].rsplit(" ", 1)[-1].strip("'"))
    assert script_steps == set(_script().STEPS)
    assert ACTION["runs"]["using"] == "composite"


def _gate_steps(workflow: dict) -> list[dict]:
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    return [s for s in steps if "edgesam-deploy@" in s.get("uses", "") or s.get("uses") == "./"]


def test_examples_give_declared_inputs():
    """The example workflow and the README's snippet pass only inputs the action declares."""
    readme = (ROOT / "README.md").read_text().split("## CI parity gate", 1)[1]
    snippet = readme.split("```yaml", 1)[1].split("```", 1)[0]
    example = (ROOT / ".github" / "workflows" / "example-parity-gate.yml").read_text()
    for workflow in (yaml.safe_load(snippet), yaml.safe_load(example)):
        (step,) = _gate_steps(workflow)
        assert set(step["with"]) <= set(ACTION["inputs"]), step["with"]


@pytest.mark.parametrize(
    ("package", "extras", "expected"),
    [
        ("/opt/action", ["onnx", "tflite"], "/opt/action[onnx,tflite]"),
        ("./sub dir", [], "./sub dir"),
        ("edgesam-deploy==0.1.0", ["coreml"], "edgesam-deploy[coreml]==0.1.0"),
        ("edgesam-deploy @ git+https://h/r@v1", ["onnx"], "edgesam-deploy[onnx] @ git+https://h/r@v1"),
    ],
)  # fmt: skip
def test_install_requirement(package, extras, expected):
    assert _script().requirement(package, extras) == expected


def test_a_bad_export_dir_is_one_line(tmp_path):
    job = run_action({"export-dir": str(tmp_path), "install": "false", "python": sys.executable},
                     tmp_path, TOOL_ENV)  # fmt: skip
    assert job.exit_code == 2 and job.ran == ["Install edgesam-deploy", "Export"]
    assert (
        "::error title=EdgeSAM parity gate::export-dir" in job.logs and "Traceback" not in job.logs
    )


@pytest.fixture(scope="module")
def passing(tmp_path_factory) -> tuple[Job, Path]:
    """The whole action on a fresh export: ONNX fp32, seeded weights, pip installing nothing."""
    workspace = tmp_path_factory.mktemp("workspace")
    inputs = {
        "targets": "onnx",
        "precision": "fp32",
        "random-weights": "0",
        "package": "edgesam-deploy",  # already installed: pip finds it satisfied, offline
        "python": sys.executable,
    }
    return run_action(inputs, workspace, TOOL_ENV), workspace


def test_gate_passes_and_publishes(passing):
    job, workspace = passing
    assert job.exit_code == 0, job.logs
    assert job.ran[-1] == "Verdict" and "Requirement already satisfied" in job.logs
    out = job.action_outputs
    assert out["passed"] == "true" and out["exit-code"] == "0"
    assert Path(out["export-dir"]) == workspace / "edgesam-parity" / "export"
    suite = ET.parse(out["junit"]).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    ((action, given),) = job.uses
    assert action == "actions/upload-artifact@v4" and given["name"] == "edgesam-parity"
    assert given["path"].split() == [out["junit"], out["json"]]
    assert "## EdgeSAM parity gate: passed" in job.summary
    (row,) = [line for line in job.summary.splitlines() if line.startswith(f"| {DECODER} |")]
    assert "| 1.00000 | 1.0000 |" in row and row.endswith("| pass |")


def test_gate_fails_on_a_tampered_decoder(passing, tmp_path):
    """Bytes flipped in the decoder's weights: the reports are still published, then the job fails."""
    job, _ = passing
    source = Path(job.action_outputs["export-dir"])
    (tmp_path / "export" / "onnx").mkdir(parents=True)
    export = subset_export(source, tmp_path / "export", [DECODER])
    decoder = export / DECODER
    data = bytearray(decoder.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 256] = bytes(b ^ 0x5A for b in data[middle : middle + 256])
    decoder.write_bytes(bytes(data))
    assert Manifest.load(export).artifacts[0].file == DECODER

    inputs = {"export-dir": str(export), "install": "false", "python": sys.executable}
    failed = run_action(inputs, tmp_path, TOOL_ENV)
    assert failed.exit_code == 1, failed.logs
    assert failed.ran[-1] == "Verdict" and len(failed.uses) == 1  # uploaded before failing
    out = failed.action_outputs
    assert out["passed"] == "false" and out["export-dir"] == str(export)
    suite = ET.parse(out["junit"]).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    assert "## EdgeSAM parity gate: FAILED (1 of 1)" in failed.summary
    assert "sha256 differs from the manifest" in failed.summary
    assert f"::error title=EdgeSAM parity gate::drift in {DECODER}" in failed.logs
    assert not (tmp_path / "edgesam-parity" / "export").exists()  # no export with export-dir
