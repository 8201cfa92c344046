"""Device profiles, artifact selection and the clear failures of devices that are not here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgesam_deploy.cli.app import main
from edgesam_deploy.devices import PROFILES_ENV, ProfileError, get_profile, load_profiles
from edgesam_deploy.fileio import sha256_path
from edgesam_deploy.manifest import ArtifactRecord, Manifest

PACKAGED = (
    "host",
    "iphone14",
    "iphone15pro",
    "pixel8",
    "galaxy-s24",
    "jetson-orin-nano",
    "jetson-agx-orin",
    "raspberry-pi-5",
)


@pytest.fixture
def onnx_dir(tmp_path) -> Path:
    (tmp_path / "encoder.onnx").write_bytes(b"x")
    Manifest(
        model={"variant": "edgesam", "kind": "random", "seed": 0},
        artifacts=[
            ArtifactRecord(
                "encoder.onnx",
                "onnx",
                "encoder",
                "fp32",
                [],
                [],
                1,
                sha256_path(tmp_path / "encoder.onnx"),
            ),
        ],
    ).save(tmp_path)
    return tmp_path


def test_packaged_profiles_name_format_runtime_and_runner():
    profiles = load_profiles()
    assert set(PACKAGED) <= set(profiles)
    assert (
        profiles["iphone14"].targets == ("coreml",)
        and profiles["iphone14"].compute_units == "CPU_AND_NE"
    )
    assert profiles["pixel8"].runner == "adb" and profiles["pixel8"].delegate == "gpu"
    assert profiles["jetson-orin-nano"].runtime == "tensorrt" and profiles[
        "jetson-orin-nano"
    ].env_hint("host")
    assert profiles["host"].targets == () and profiles["host"].runner == "local"


def test_user_profiles_from_file_and_environment(tmp_path, monkeypatch):
    user = tmp_path / "mine.toml"
    user.write_text(
        '[pixel8]\nrunner = "adb"\ntarget = "tflite"\ndelegate = "nnapi"\n[my-board]\nrunner = '
        '"ssh"\ntarget = ["onnx", "tflite"]\n'
    )
    assert get_profile("pixel8", user).delegate == "nnapi"
    monkeypatch.setenv(PROFILES_ENV, str(user))
    assert get_profile("my-board").targets == ("onnx", "tflite") and get_profile(
        "my-board"
    ).source == str(user)
    monkeypatch.delenv(PROFILES_ENV)
    user.write_text('[bad]\nrunner = "telnet"\n')
    with pytest.raises(ProfileError, match="runner"):
        load_profiles(user)
    with pytest.raises(ProfileError, match="unknown device 'nope'"):
        get_profile("nope")


@pytest.mark.skipif(sys.platform == "darwin", reason="the refusal is for machines without Xcode")
def test_iphone_on_linux_exits_with_one_clear_line(onnx_dir, tmp_path, capsys):
    coreml = tmp_path / "coreml"
    Manifest(
        model={"kind": "random", "seed": 0},
        artifacts=[ArtifactRecord("e.mlpackage", "coreml", "encoder", "fp16", [], [], 1, "0" * 64)],
    ).save(coreml)
    assert main(["bench", "--device", "iphone14", "--artifacts", str(coreml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "macOS" in err and "Xcode" in err and "iPhone" in err


def test_wrong_artifact_format_names_what_the_profile_needs(onnx_dir, capsys):
    assert main(["bench", "--device", "iphone14", "--artifacts", str(onnx_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "needs coreml artifacts (fp16" in err and "onnx fp32" in err
    )


def test_devices_lists_profiles_and_reachability(capsys, monkeypatch, private_adb_server):
    monkeypatch.delenv("EDGESAM_JETSON_AGX_ORIN_HOST", raising=False)
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in PACKAGED:
        assert name in out
    assert "this machine" in out
