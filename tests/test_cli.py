"""The CLI as a user meets it: outputs written, and every bad input one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from edgesam_deploy.cli.app import main


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("img") / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_segment_writes_overlay_and_mask(photo, tmp_path, capsys):
    out, mask = tmp_path / "ov.png", tmp_path / "mask.png"
    code = main(
        [
            "segment",
            str(photo),
            "--point",
            "200,150",
            "--point",
            "40,40,0",
            "--box",
            "100,50,400,280",
            "--out",
            str(out),
            "--mask-out",
            str(mask),
            "--random-weights",
            "0",
            "--num-masks",
            "3",
        ]
    )
    assert code == 0
    ov = np.asarray(Image.open(out))
    m = np.asarray(Image.open(mask))
    assert ov.shape == (300, 451, 3) and m.shape == (300, 451)
    assert set(np.unique(m)) <= {0, 255} and 0 < (m > 0).mean() < 1
    assert "RANDOM" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*partial*"))


def test_models_lists_variants(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "edgesam-3x" in out and "S-Lab" in out


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--point", "900,10"], "outside"),
        (["--point", "a,b"], "expected X,Y"),
        (["--box", "10,10,5,5"], "not a box"),
        ([], "at least one"),
    ],
)
def test_bad_prompts(photo, tmp_path, capsys, args, expect):
    code = main(
        ["segment", str(photo), *args, "--out", str(tmp_path / "o.png"), "--random-weights", "0"]
    )
    assert code == 2
    assert expect in _one_error_line(capsys)
    assert not (tmp_path / "o.png").exists()


def test_not_an_image(tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\x00\x01garbage")
    assert (
        main(
            [
                "segment",
                str(bad),
                "--point",
                "1,1",
                "--out",
                str(tmp_path / "o.png"),
                "--random-weights",
                "0",
            ]
        )
        == 2
    )
    assert "not a readable image" in _one_error_line(capsys)


def test_bad_checkpoints(photo, tmp_path, capsys, random_model):
    good = tmp_path / "good.pth"
    torch.save(random_model.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:100_000])
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), other)
    for path, expect in ((truncated, "truncated or corrupt"), (other, "not an EdgeSAM checkpoint")):
        code = main(
            [
                "segment",
                str(photo),
                "--point",
                "10,10",
                "--out",
                str(tmp_path / "o.png"),
                "--checkpoint",
                str(path),
            ]
        )
        assert code == 2
        assert expect in _one_error_line(capsys)


def test_unknown_output_format(photo, tmp_path, capsys):
    assert (
        main(
            [
                "segment",
                str(photo),
                "--point",
                "10,10",
                "--out",
                str(tmp_path / "o.xyz"),
                "--random-weights",
                "0",
            ]
        )
        == 2
    )
    assert "unknown image format" in _one_error_line(capsys)


def test_console_script_has_no_traceback(tmp_path):
    """The real process: one line on stderr and exit code 2."""
    bad = tmp_path / "x.png"
    bad.write_text("text")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgesam_deploy",
            "segment",
            str(bad),
            "--point",
            "1,1",
            "--out",
            str(tmp_path / "o.png"),
            "--random-weights",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_version_prints_the_package_version(capsys):
    from importlib.metadata import version

    import edgesam_deploy

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"edgesam-deploy {edgesam_deploy.__version__}"
    assert version("edgesam-deploy") == edgesam_deploy.__version__  # one source: pyproject reads it


def test_completion_requests_go_through_main(monkeypatch, capsys):
    """What the installed completion script asks at each TAB: main() answers and returns 0."""
    monkeypatch.setenv("_EDGESAM_DEPLOY_COMPLETE", "source_bash")
    assert main([]) == 0
    assert "-F _edgesam_deploy_completion edgesam-deploy" in capsys.readouterr().out
    monkeypatch.setenv("_EDGESAM_DEPLOY_COMPLETE", "complete_bash")
    for words, cword, expect in (
        ("edgesam-deploy ex", "1", ["export"]),
        ("edgesam-deploy --vers", "1", ["--version"]),
        ("edgesam-deploy export --tar", "2", ["--target"]),
    ):
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", cword)
        assert main([]) == 0
        assert capsys.readouterr().out.split() == expect


def test_show_and_install_completion_from_bash(tmp_path):
    """Typer's --show-completion/--install-completion, run from bash (detected) into a new HOME."""
    import os
    import shlex

    cli = f"{shlex.quote(sys.executable)} -m edgesam_deploy"
    script = f"set -e; {cli} --show-completion; {cli} --install-completion; exit"
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "_EDGESAM_DEPLOY_COMPLETE=complete_bash" in proc.stdout
    assert "bash completion installed" in proc.stdout
    assert (tmp_path / ".bash_completions" / "edgesam-deploy.sh").is_file()
    assert ".bash_completions/edgesam-deploy.sh" in (tmp_path / ".bashrc").read_text()
