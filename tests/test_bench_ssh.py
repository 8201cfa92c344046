"""The ssh runner against a real OpenSSH server on loopback; the "board" is this machine and venv."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgesam_deploy.bench.host import cpu_details
from edgesam_deploy.bench.parsers import trtexec
from edgesam_deploy.bench.runners import BenchRequest, RunnerOptions
from edgesam_deploy.bench.runners.ssh import SshRunner, stats_from_trtexec, trtexec_command
from edgesam_deploy.cli.app import main
from edgesam_deploy.device.protocol import Results, Settings
from edgesam_deploy.devices import DeviceProfile
from edgesam_deploy.errors import DeviceError
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.parity import Reference
from edgesam_deploy.parity.bundle import write_bundle
from edgesam_deploy.parity.judge import judge_device_outputs

from test_bench_support import make_onnx_export, subset_export

SSHD = Path("/usr/sbin/sshd")
HOST = "edgesam-loopback"
DATA = Path(__file__).parent / "data" / "trtexec"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    """sshd on 127.0.0.1 with throw-away host and user keys; yields an ssh_config naming it HOST."""
    if not SSHD.exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.fail(
            "OpenSSH server and client are needed (scripts/install-system-deps.sh installs them)",
            pytrace=False,
        )
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True
        )
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    if not Path(
        "/run/sshd"
    ).is_dir():  # sshd's privilege-separation directory, as its service creates it
        if os.geteuid() != 0:
            pytest.fail("sshd needs /run/sshd (create it as root)", pytrace=False)
        Path("/run/sshd").mkdir(mode=0o755, parents=True)
    port, user = (
        _free_port(),
        os.environ.get("USER")
        or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
    )
    env = f"SetEnv PYTHONPATH={os.environ['PYTHONPATH']}\n" if os.environ.get("PYTHONPATH") else ""
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile "
        f"{d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSubsystem sftp "
        f"internal-sftp\n{env}"
    )
    (d / "ssh_config").write_text(
        f"Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile "
        f"{d / 'user_key'}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking "
        "accept-new\n"
    )
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(d / "sshd_config"), "-p", str(port)],
        stderr=open(d / "sshd.log", "w"),
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}", pytrace=False)
        time.sleep(0.1)
    yield d
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def decoder_export(tmp_path_factory, random_model) -> Path:
    full = make_onnx_export(tmp_path_factory.mktemp("export"), random_model)
    return subset_export(full, tmp_path_factory.mktemp("decoder-only"), ["decoder.onnx"])


@pytest.fixture(scope="module")
def torchless_python(tmp_path_factory) -> str:
    """A Python for the board in which torch and PIL cannot be imported (stub packages that raise
    ImportError come first on its path): the board has NumPy and ONNX Runtime only."""
    d = tmp_path_factory.mktemp("torchless")
    for name in ("torch", "PIL"):
        (d / "block" / name).mkdir(parents=True)
        (d / "block" / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed on this board')\n"
        )
    wrapper = d / "python"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="{d / "block"}${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def test_ssh_runner_benchmarks_on_the_loopback_board(loopback, decoder_export, tmp_path, capsys):
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[board]\nrunner = "ssh"\ntarget = "onnx"\nprecision = ["fp32"]\nconnection = { host_env = '
        '"EDGESAM_TEST_BOARD" }\n'
    )
    out = tmp_path / "result.json"
    code = main(
        [
            "bench",
            "--device",
            "board",
            "--profiles",
            str(profiles),
            "--artifacts",
            str(decoder_export),
            "--ssh-host",
            HOST,
            "--ssh-config",
            str(loopback / "ssh_config"),
            "--remote-python",
            sys.executable,
            "--remote-dir",
            str(tmp_path / "remote"),
            "--runs",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
            "--parity-photos",
            "coffee",
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["device"]["name"] == "board" and data["device"]["runner"] == "ssh"
    assert data["device"]["details"]["ssh_host"] == HOST
    # the board's own CPU, read there (the loopback board is this machine)
    assert data["device"]["details"]["cpu_id"] == cpu_details()["cpu_id"]
    (decoder,) = data["artifacts"]
    assert decoder["measured"], decoder["reason"]
    assert decoder["latency"]["decoder_1_click"]["runs"] == 2 and decoder["clicks_per_s"] > 0
    assert decoder["runtime_details"]["threads"] == 1
    assert (tmp_path / "remote" / "artifacts" / "decoder.onnx").is_file()
    # parity measured on the board through the protocol, the host's figure beside it
    assert decoder["parity_measured_on"] == "device", decoder["parity_reason"]
    assert decoder["parity"]["passed"], decoder["parity"]
    device, host = decoder["parity"], decoder["host_parity"]
    assert device["evaluated_with"].startswith("onnxruntime") and host["passed"]
    assert device["metrics"]["mask_iou_mean"] == pytest.approx(
        host["metrics"]["mask_iou_mean"], abs=1e-4
    )
    assert (tmp_path / "remote" / "parity" / "outputs" / "results.json").is_file()
    assert "device: pass" in capsys.readouterr().out


def test_device_parity_on_a_board_without_torch(
    loopback, decoder_export, torchless_python, random_model, tmp_path
):
    profile = DeviceProfile(
        "board", "ssh", runtime="onnxruntime", delegate="cpu", connection={"host": HOST}
    )
    options = RunnerOptions(
        ssh_config=loopback / "ssh_config",
        remote_python=torchless_python,
        remote_dir=str(tmp_path / "remote"),
    )
    runner = SshRunner(profile, options)
    with pytest.raises(DeviceError, match="torch is not installed on this board"):
        runner.ssh(f"{torchless_python} -c 'import torch'", "importing torch on the board")
    manifest = Manifest.load(decoder_export)
    reference = Reference(random_model, photos=["coffee"])
    bundle, outputs = tmp_path / "bundle", tmp_path / "outputs"
    write_bundle(
        bundle, reference, manifest.artifacts, decoder_export, Settings(threads=1, delegate="cpu")
    )
    runner.run_parity(
        bundle, outputs, BenchRequest(decoder_export, manifest, manifest.artifacts, 1, 0, threads=1)
    )
    assert Results.load(outputs).device["settings"]["delegate"] == "cpu"
    (decoder,) = judge_device_outputs(bundle, outputs, reference)
    assert decoder.passed and decoder.measured_on == "device", decoder.failures
    assert decoder.runtime.startswith("onnxruntime") and "1 thread)" in decoder.runtime


def test_ssh_without_host_says_how_to_give_one(decoder_export, capsys, monkeypatch):
    monkeypatch.delenv("EDGESAM_JETSON_ORIN_NANO_HOST", raising=False)
    code = main(
        ["bench", "--device", "jetson-orin-nano", "--artifacts", str(decoder_export), "--no-parity"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--ssh-host" in err and "$EDGESAM_JETSON_ORIN_NANO_HOST" in err


def test_trtexec_command_line_for_a_dynamic_decoder():
    argv = trtexec_command(
        "trtexec", "a/decoder.onnx", "a/decoder.onnx.fp16.engine", "decoder", 50, 600, True, 16
    )
    assert argv[:3] == [
        "trtexec",
        "--onnx=a/decoder.onnx",
        "--saveEngine=a/decoder.onnx.fp16.engine",
    ]
    assert "--fp16" in argv and "--iterations=50" in argv and "--warmUp=600" in argv
    assert "--maxShapes=point_coords:1x16x2,point_labels:1x16" in argv
    assert "--shapes=point_coords:1x16x2,point_labels:1x16" in argv
    assert not any(
        a.startswith("--shapes")
        for a in trtexec_command("trtexec", "e.onnx", "e.engine", "encoder", 5, 0, False)
    )


@pytest.mark.parametrize(
    "name, qps, median, p90, gpu_median",
    [
        ("tensorrt_4177_summary.txt", 130.298, 7.16092, 10.2996, 7.14139),
        ("tensorrt_3083_trace.txt", 234.19, 4.29718, 4.30725, None),
        ("jetson_yolo_on_jetson_4.txt", 169.352, 6.02185, None, 3.71753),
    ],
)
def test_trtexec_parser_on_recorded_outputs(name, qps, median, p90, gpu_median):
    result = trtexec.parse((DATA / name).read_text())
    assert result.complete and result.throughput_qps == qps
    assert (
        result.sections["latency"]["median"] == median
        and result.sections["latency"].get("p90") == p90
    )
    assert result.sections.get("gpu_compute", {}).get("median") == gpu_median
    stats = stats_from_trtexec(result, 10)
    assert stats.p50 == median and stats.runs == 10
