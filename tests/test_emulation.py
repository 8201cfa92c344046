"""The emulated ARM64 twin (`bench --emulate`, docs/emulation.md): its environment, the runner's
rows, and one end-to-end run of an encoder and a decoder under QEMU (a few minutes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgesam_deploy.bench import emulation
from edgesam_deploy.bench.run import BenchSettings, run_bench
from edgesam_deploy.bench.runners import RunnerOptions, get_runner
from edgesam_deploy.bench.schema import DECODER_1, DECODER_16, ENCODER
from edgesam_deploy.cli.app import main
from edgesam_deploy.devices import EMULATED, ProfileError, get_profile, load_profiles
from edgesam_deploy.manifest import ArtifactRecord

from test_bench_support import make_onnx_export

# Linux arm64 HWCAP bits QEMU 7.2 sets for -cpu cortex-a76: fp(0) asimd(1) aes(3) pmull(4)
# sha1(5) sha2(6) crc32(7) atomics(8) fphp(9) asimdhp(10) cpuid(11) asimdrdm(12) lrcpc(15)
# dcpop(16) asimddp(20)
A76_HWCAP = sum(1 << bit for bit in (0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16, 20))
PI5_FEATURES = (
    "fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
)


def test_cpuinfo_names_the_features_of_the_emulated_cpu():
    text = emulation.cpuinfo_text("cortex-a76", A76_HWCAP, 0, cpus=2)
    assert text.count("processor\t:") == 2 and "CPU part\t: 0xd0b" in text
    assert f"Features\t: {PI5_FEATURES}\n" in text  # a Raspberry Pi 5's, less evtstrm (a timer)
    armv9 = emulation.cpuinfo_text("max,sme=off", 1 << 22, 1 << 13, cpus=1)
    assert "Features\t: sve i8mm\n" in armv9 and "CPU implementer\t: 0x00" in armv9


def test_mirror_comes_from_this_machines_apt_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(emulation.MIRROR_ENV, raising=False)
    (tmp_path / "sources.list.d").mkdir()
    assert emulation.debian_mirror(tmp_path) == emulation.DEFAULT_MIRROR
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
    )
    assert emulation.debian_mirror(tmp_path) == "http://mirror.example/debian"
    one_line = "deb [arch=amd64] http://one.example/debian bookworm main\n"
    (tmp_path / "sources.list").write_text(one_line)
    assert emulation.debian_mirror(tmp_path) == "http://one.example/debian"
    monkeypatch.setenv(emulation.MIRROR_ENV, "http://env.example/debian")
    assert emulation.debian_mirror(tmp_path) == "http://env.example/debian"


def test_wheels_are_pinned_to_the_host_and_every_manylinux_tag_is_listed():
    pins = emulation.wheel_pins()
    argv = emulation._pip_argv(Path("site"), pins)
    assert f"numpy=={pins['numpy']}" in argv and "--only-binary=:all:" in argv
    tags = [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"]
    assert tags[0] == "manylinux_2_17_aarch64" and "manylinux_2_36_aarch64" in tags
    assert len(tags) == 36 - 17 + 2


def test_one_build_at_a_time_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESAM_DEPLOY_CACHE", str(tmp_path))
    builds = []

    def fake_build(dest: Path, pins: dict, progress) -> None:
        builds.append(dest)
        time.sleep(0.3)
        (dest / "twin.json").write_text('{"build_s": 0.3, "size_mib": 0}')

    monkeypatch.setattr(emulation, "_build", fake_build)
    roots = []
    workers = [
        threading.Thread(target=lambda: roots.append(emulation.ensure_twin().root))
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(builds) == 1 and roots[0] == roots[1] and (roots[0] / "twin.json").is_file()

    def broken_build(dest: Path, pins: dict, progress) -> None:
        (dest / "sysroot").mkdir()
        raise emulation.EmulationError("ARM64 twin: mmdebstrap failed (exit 1): no network")

    monkeypatch.setattr(emulation, "_build", broken_build)
    monkeypatch.setattr(emulation, "wheel_pins", lambda: {"numpy": "0.0.0"})
    with pytest.raises(emulation.EmulationError, match="mmdebstrap failed"):
        emulation.ensure_twin()
    left = [p.name for p in emulation.cache_root().iterdir() if not p.name.startswith(".")]
    assert left == [roots[0].name]


def test_a_missing_tool_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(emulation.EmulationError, match="qemu-user-static"):
        emulation.ensure_twin()


def test_unknown_cpu_model_lists_what_qemu_offers():
    with pytest.raises(emulation.EmulationError, match="cortex-a76"):
        emulation.check_cpu_model("cortex-a99")


def test_profiles_name_a_cpu_model_for_each_arm_device(tmp_path):
    cpus = {
        name: get_profile(name).emulate_cpu
        for name in (
            "raspberry-pi-5",
            "jetson-orin-nano",
            "pixel8",
            "galaxy-s24",
            "host",
            "iphone14",
        )
    }
    assert cpus["raspberry-pi-5"] == cpus["jetson-orin-nano"] == "cortex-a76"
    assert cpus["pixel8"] == cpus["galaxy-s24"] == "max,sme=off,sve-default-vector-length=16"
    assert cpus["host"] is None and cpus["iphone14"] is None
    assert get_profile("raspberry-pi-5").emulated().runner == EMULATED
    with pytest.raises(ProfileError, match="no emulated ARM64 twin"):
        get_profile("host").emulated()
    (tmp_path / "p.toml").write_text('[x]\nrunner = "ssh"\nemulate_cpu = 76\n')
    with pytest.raises(ProfileError, match="'emulate_cpu' must be a QEMU CPU model"):
        load_profiles(tmp_path / "p.toml")


def _record(target: str, role: str = "encoder") -> ArtifactRecord:
    return ArtifactRecord(f"{target}/{role}.fp16", target, role, "fp16", [], [], 1, "")


def test_gpu_nnapi_tensorrt_and_coreml_rows_cannot_be_emulated():
    def reason(device: str, record: ArtifactRecord) -> str | None:
        runner = get_runner(get_profile(device).emulated(), RunnerOptions())
        return runner.parity_unsupported(record)

    assert "GPU delegate cannot be emulated" in reason("pixel8", _record("tflite"))
    assert "TensorRT cannot be emulated" in reason("jetson-agx-orin", _record("onnx"))
    assert "Core ML cannot be emulated" in reason("raspberry-pi-5", _record("coreml"))
    assert reason("raspberry-pi-5", _record("tflite")) is None
    assert reason("raspberry-pi-5", _record("onnx", "decoder")) is None


def test_cli_emulate_on_a_profile_without_twin_is_one_line(tmp_path, capsys):
    assert main(["bench", "--device", "host", "--emulate", "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no emulated ARM64 twin" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def emulated_report(tmp_path_factory, random_model):
    """The Raspberry Pi 5 twin on an fp32 ONNX encoder and decoder, coffee only, one run each."""
    export = make_onnx_export(tmp_path_factory.mktemp("export"), random_model)
    messages: list[str] = []
    settings = BenchSettings(runs=1, warmup=0, threads=2, parity_photos=["coffee"])
    report = run_bench(
        get_profile("raspberry-pi-5").emulated(),
        export,
        settings,
        RunnerOptions(),
        lambda: random_model,
        messages.append,
    )
    return report, messages


@pytest.mark.slow
def test_emulated_twin_runs_encoder_and_decoder_end_to_end(emulated_report):
    report, messages = emulated_report
    assert report.device.runner == EMULATED and "emulated" in report.device.name
    assert report.device.details["cpu_model"] == "cortex-a76"
    assert report.device.details["wheels"] == emulation.wheel_pins()
    assert "qemu-aarch64 version" in report.device.details["emulator"]
    assert any("-cpu cortex-a76" in m for m in messages)
    rows = {r.role: r for r in report.artifacts}
    assert set(rows) == {"encoder", "decoder"}
    for row in rows.values():
        assert row.measured, row.reason
        assert row.parity_measured_on == "emulated", row.parity_reason
        assert row.parity.passed, row.parity.failures
        assert "emulated" in row.runtime and row.extra["timings_measured_on"] == "emulated"
        assert row.host_parity is not None and row.host_parity.measured_on == "host"
    assert set(rows["encoder"].latency) == {ENCODER}
    assert set(rows["decoder"].latency) == {DECODER_1, DECODER_16}
    assert report.pipelines == [] and rows["decoder"].clicks_per_s is None  # never device speed


@pytest.mark.slow
def test_emulated_outputs_match_the_hosts(emulated_report):
    """Same runtime version, other architecture: the figures agree closely with the host's."""
    report, _ = emulated_report
    for row in report.artifacts:
        dev, host = row.parity.metrics, row.host_parity.metrics
        assert dev.keys() == host.keys()
        assert dev.get("mask_iou_mean", 1.0) >= 0.999
        for key in ("emb_max_abs", "logit_max_abs"):
            if key in dev:
                assert dev[key] <= max(10 * host[key], 1e-4), (row.file, key, dev[key], host[key])
