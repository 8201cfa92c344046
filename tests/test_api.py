"""The Python API: the README's example runs as written, and each result's ``to_dict()`` is the JSON
the CLI writes for the same run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgesam_deploy
from edgesam_deploy import api
from edgesam_deploy.cli.app import main
from edgesam_deploy.errors import DeployError
from edgesam_deploy.parity import reference_cache

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first Python block of the README's "Python API" section."""
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: no python block in the Python API section"
    return match.group(1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A private reference cache for this module (the first test computes the reference)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGESAM_DEPLOY_CACHE", str(folder))
        yield folder
    reference_cache.forget()


def test_readme_example_runs(cache, capsys):
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "onnx/encoder.fp32.onnx fp32 mask IoU 1.0000 True" in printed
    assert isinstance(namespace["result"], api.ParityResult)


def _capturing(monkeypatch, name: str) -> list:
    """Record what the CLI's call of ``api.<name>`` returns."""
    returned: list = []
    real = getattr(api, name)

    def wrapper(*args, **kwargs):
        returned.append(real(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(api, name, wrapper)
    return returned


def test_to_dict_is_what_the_cli_writes(cache, monkeypatch, tmp_path: Path):
    out, parity_json, bench_json = tmp_path / "x", tmp_path / "p.json", tmp_path / "b.json"
    exported, judged, benched = (_capturing(monkeypatch, n) for n in ("export", "parity", "bench"))
    argv = ["export", "--target", "onnx", "--precision", "fp32", "--random-weights", "0"]
    assert main([*argv, "--out", str(out), "--json", str(tmp_path / "e.json")]) == 0
    [export_result] = exported
    assert export_result.to_dict() == json.loads((out / "manifest.json").read_text())
    assert export_result.parity.to_dict() == json.loads((tmp_path / "e.json").read_text())

    assert main(["parity", str(out), "--json", str(parity_json)]) == 0
    assert judged[0].to_dict() == json.loads(parity_json.read_text())

    bench = ["bench", "--artifacts", str(out), "--runs", "1", "--warmup", "0", "--no-reference"]
    assert main([*bench, "--parity-photos", "coffee", "--json", str(bench_json)]) == 0
    assert benched[0].to_dict() == json.loads(bench_json.read_text())


def test_api_errors_are_deploy_errors(tmp_path: Path):
    with pytest.raises(DeployError, match="not a directory"):
        edgesam_deploy.parity(tmp_path / "missing")
    with pytest.raises(DeployError, match="unknown target"):
        edgesam_deploy.export(tmp_path, "onnx,tpu", random_weights=0)
    with pytest.raises(DeployError, match="--num-masks"):
        edgesam_deploy.segment(tmp_path / "photo.png", [(1, 1)], num_masks=2)


def test_import_is_light_and_names_resolve():
    code = (
        "import sys, edgesam_deploy as e; assert 'torch' not in sys.modules; "
        "import edgesam_deploy.device; assert 'torch' not in sys.modules; "
        "assert all(callable(getattr(e, n)) for n in e.__all__ if n != '__version__')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
