"""The adb runner's parsers on recorded outputs, its command lines, and its clear failure without a phone."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgesam_deploy.bench.parsers import adb_devices, benchmark_model
from edgesam_deploy.bench.runners.adb import AdbRunner, benchmark_command, result_from
from edgesam_deploy.devices import get_profile
from edgesam_deploy.errors import DeviceError
from edgesam_deploy.manifest import ArtifactRecord
from test_bench_support import private_adb_server  # noqa: F401 (fixture)

DATA = Path(__file__).parent / "data"


def _bm(name: str) -> benchmark_model.BenchmarkModelResult:
    return benchmark_model.parse((DATA / "benchmark_model" / name).read_text())


def test_xnnpack_run_with_memory_footprint():
    r = _bm("xnnpack_rpi_google_XNNPACK_999.txt")
    assert r.complete and (r.init_ms, r.first_inference_ms, r.warmup_avg_ms, r.inference_avg_ms) == pytest.approx((18.777, 64.791, 57.7582, 55.0432))
    assert r.warmup.count == 9 and r.steady.count == 50 and r.steady.values["min"] == 53077 and r.steady.values["std"] == 1562
    assert (r.memory_init_mb, r.memory_overall_mb, r.model_size_mb) == (8.97656, 18.7227, 3.67827)


def test_gpu_run_over_adb_fully_delegated():
    r = _bm("gpu_adb_tensorflow_43541.txt")
    assert r.complete and r.inference_avg_ms == pytest.approx(119.375) and r.steady.values["max"] == 124776
    assert r.memory_overall_mb is None
    assert [(d.delegate, d.whole_graph) for d in r.delegations] == [("GPU", True)]


def test_logcat_nnapi_partially_delegated():
    r = _bm("nnapi_logcat_tensorflow_56301.txt")
    assert r.complete and r.steady.count == 75 and r.inference_avg_ms == pytest.approx(12.1676)
    assert [(d.delegate, d.whole_graph, d.kernels) for d in r.delegations] == [("NNAPI", False, 44)]


def test_older_peak_memory_wording_and_replacing_line():
    assert _bm("peak_memory_tensorflow_42507.txt").memory_overall_mb == 12.8672
    r = _bm("gpu_replacing_yolov5_4824.txt")
    assert not r.complete
    assert [(d.delegate, d.nodes, d.total_nodes) for d in r.delegations] == [("TfLiteGpuDelegateV2", 293, None)]


def test_result_from_a_decoder_run():
    record = ArtifactRecord("decoder_fp16.tflite", "tflite", "decoder", "fp16", [], [], 10, "0" * 64)
    result = result_from(record, _bm("gpu_adb_tensorflow_43541.txt"), "gpu")
    assert result.measured and result.load_ms == pytest.approx(870.557)
    assert result.latency["decoder_1_click"].mean == pytest.approx(119.375) == result.latency["decoder_1_click"].p50
    assert result.clicks_per_s == pytest.approx(1e3 / 119.375)
    failed = result_from(record, _bm("gpu_replacing_yolov5_4824.txt"), "gpu")
    assert not failed.measured and "no steady-state" in failed.reason


def test_benchmark_command_uses_the_profile_delegate():
    argv = benchmark_command("/data/local/tmp/edgesam/benchmark_model", "/data/local/tmp/edgesam/e.tflite", 30, 5, 4, "gpu")
    assert argv[1:4] == ["--graph=/data/local/tmp/edgesam/e.tflite", "--num_runs=30", "--warmup_runs=5"]
    assert "--num_threads=4" in argv and argv[-1] == "--use_gpu=true"
    assert benchmark_command("b", "g", 1, 0, None, "nnapi")[-1] == "--use_nnapi=true"
    with pytest.raises(DeviceError, match="unknown LiteRT delegate"):
        benchmark_command("b", "g", 1, 0, None, "hexagon")


def test_adb_devices_parser_on_recorded_outputs():
    (phone,) = adb_devices.parse((DATA / "adb" / "devices_l_goadb_2.txt").read_text())
    assert phone.ready and phone.serial == "UYT5T18414003349" and phone.properties["model"] == "ALP_AL00"
    unauthorized, emulator = adb_devices.parse((DATA / "adb" / "devices_l_expo_cli_2677.txt").read_text())
    assert unauthorized.state == "unauthorized" and not unauthorized.ready
    assert emulator.ready and emulator.properties["product"] == "sdk_gphone_x86" and emulator.properties["transport_id"] == "1"
    assert adb_devices.parse((DATA / "adb" / "devices_l_none_local.txt").read_text()) == []


def test_no_phone_gives_one_clear_device_error(private_adb_server, monkeypatch):
    monkeypatch.delenv("EDGESAM_PIXEL8_SERIAL", raising=False)
    with pytest.raises(DeviceError, match="no Android device attached"):
        AdbRunner(get_profile("pixel8")).probe()
