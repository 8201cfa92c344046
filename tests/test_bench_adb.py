"""The adb runner's parsers on recorded outputs, its command lines, and its clear failure without a phone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesam_deploy.bench.parsers import adb_devices, benchmark_model
from edgesam_deploy.bench.runners.adb import (
    AdbRunner,
    benchmark_command,
    delegate_flags,
    result_from,
)
from edgesam_deploy.bench.runners.benchmark_model_parity import (
    parity_command,
    signature_for,
    signature_io,
    split_outputs,
)
from edgesam_deploy.device.protocol import ProtocolError
from edgesam_deploy.devices import get_profile
from edgesam_deploy.errors import DeviceError
from edgesam_deploy.manifest import ArtifactRecord
from edgesam_deploy.vocabulary import Role

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


@pytest.fixture(scope="module")
def per_n_decoder(tmp_path_factory) -> Path:
    """A tiny .tflite with the decoder's interface and one signature per N (2 and 3), converted
    the way the TFLite exporter converts (litert-torch, one signature per N)."""
    litert_torch = pytest.importorskip("litert_torch")
    import torch

    class Decoder(torch.nn.Module):
        def forward(self, image_embeddings, point_coords, point_labels):
            scores = (
                image_embeddings.mean(dim=(2, 3))[:, :4] + point_coords.sum() * point_labels.sum()
            )
            masks = image_embeddings[:, :4].repeat(1, 1, 4, 4) * point_labels.mean()
            return {"scores": scores, "masks": masks}

    converter = litert_torch.Converter()
    for n in (2, 3):
        sample = {
            "image_embeddings": torch.randn(1, 256, 64, 64),
            "point_coords": torch.randn(1, n, 2),
            "point_labels": torch.randn(1, n),
        }
        converter = converter.signature(f"decoder_n{n}", Decoder().eval(), sample_kwargs=sample)
    path = tmp_path_factory.mktemp("tflite") / "decoder.tflite"
    converter.convert().export(str(path))
    return path


def test_signature_io_follows_the_subgraph_order(per_n_decoder):
    """benchmark_model feeds and writes tensors in subgraph order: that of the interpreter's own
    input and output lists (subgraph 0 is the first signature)."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = signature_io(per_n_decoder)
    assert [(s.key, s.points) for s in signatures] == [("decoder_n2", 2), ("decoder_n3", 3)]
    it = Interpreter(str(per_n_decoder))
    runner = it.get_signature_runner("decoder_n2")
    by_index = {
        d["index"]: n
        for n, d in {**runner.get_input_details(), **runner.get_output_details()}.items()
    }
    assert signatures[0].inputs == tuple(by_index[d["index"]] for d in it.get_input_details())
    assert signatures[0].outputs == tuple(by_index[d["index"]] for d in it.get_output_details())
    assert signature_for(signatures, Role.DECODER, 3).key == "decoder_n3"
    assert signature_for(signatures, Role.DECODER, 16) is None


def test_outputs_file_splits_into_the_signature_outputs(per_n_decoder):
    """The bytes --output_filepath writes (every output back to back, subgraph order) -> tensors."""
    from ai_edge_litert.interpreter import Interpreter

    (sig,) = [s for s in signature_io(per_n_decoder) if s.points == 3]
    rng = np.random.default_rng(0)
    feeds = {
        "image_embeddings": rng.standard_normal((1, 256, 64, 64), dtype=np.float32),
        "point_coords": rng.standard_normal((1, 3, 2), dtype=np.float32),
        "point_labels": np.ones((1, 3), np.float32),
    }
    out = Interpreter(str(per_n_decoder)).get_signature_runner(sig.key)(**feeds)
    data = b"".join(np.ascontiguousarray(out[n], dtype="<f4").tobytes() for n in sig.outputs)
    split = split_outputs(data, sig, Role.DECODER)
    for name in ("scores", "masks"):
        np.testing.assert_array_equal(split[name], out[name])
    with pytest.raises(ProtocolError, match="wrote 12 bytes of outputs, 1048592 expected"):
        split_outputs(data[:12], sig, Role.DECODER)


def test_parity_command_loads_the_case_and_writes_outputs(per_n_decoder):
    (sig,) = [s for s in signature_io(per_n_decoder) if s.points == 2]
    d = "/data/local/tmp/edgesam/parity/feeds"
    feeds = {
        "point_labels": (f"{d}/c/point_labels.bin", (1, 2)),
        "point_coords": (f"{d}/c/point_coords.bin", (1, 2, 2)),
        "image_embeddings": (f"{d}/emb/image_embeddings.bin", (1, 256, 64, 64)),
    }
    argv = parity_command("bm", "g.tflite", sig, feeds, "out.bin", 4, delegate_flags("gpu"))
    assert argv[:3] == ["bm", "--graph=g.tflite", "--signature_to_run_for=decoder_n2"]
    assert "--input_layer=image_embeddings,point_coords,point_labels" in argv  # subgraph order
    assert "--input_layer_shape=1,256,64,64:1,2,2:1,2" in argv
    assert (
        f"--input_layer_value_files=image_embeddings:{d}/emb/image_embeddings.bin,"
        f"point_coords:{d}/c/point_coords.bin,point_labels:{d}/c/point_labels.bin"
        in argv
    )
    assert (
        "--output_filepath=out.bin" in argv
        and "--num_threads=4" in argv
        and argv[-1] == "--use_gpu=true"
    )
    with pytest.raises(ProtocolError, match="needs inputs point_labels"):
        parity_command(
            "bm", "g", sig, {k: v for k, v in feeds.items() if k != "point_labels"}, "o", None, []
        )
