"""``--int8-weights``: the ONNX int8 graphs' weights 7 bits wide (the default, right on every CPU)
or 8 (x86 with VNNI, ARM); measurements in docs/onnx.md."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgesam_deploy import api
from edgesam_deploy.bench.host import adds_int8_pairs_in_16_bits
from edgesam_deploy.cli import export as export_cli
from edgesam_deploy.cli.app import main
from edgesam_deploy.devices import get_profile
from edgesam_deploy.exporters.base import OptionsError
from edgesam_deploy.exporters.onnx.convert import decoder_int8_policy, encoder_int8_policy
from edgesam_deploy.exporters.onnx.options import Int8Weights, OnnxOptions
from edgesam_deploy.manifest import ArtifactRecord, Manifest
from edgesam_deploy.quantization.onnx_quant import quantize_int8_static


def _conv_model() -> onnx.ModelProto:
    """A 3x3 convolution, 8 -> 16 channels, with seeded weights."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    buf = io.BytesIO()
    torch.onnx.export(
        conv,
        (torch.randn(1, 8, 16, 16),),
        buf,
        dynamo=False,
        input_names=["image"],
        opset_version=17,
    )
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize(
    "weights, peak", [(Int8Weights.SEVEN_BIT, 64), (Int8Weights.EIGHT_BIT, 127)]
)
def test_weights_use_the_chosen_range(weights: Int8Weights, peak: int):
    """Symmetric per-channel weights: every output channel's largest weight reaches the range's
    end, 64 with 7 bits and 127 with 8; the record says which, and why."""
    policy = encoder_int8_policy(weights)
    model = _conv_model()
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.standard_normal((1, 8, 16, 16), dtype=np.float32)} for _ in range(2)]
    q, details = quantize_int8_static(model, policy, feeds)
    ints = [
        numpy_helper.to_array(t)
        for t in q.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and t.dims and len(t.dims) == 4
    ]
    assert len(ints) == 1
    per_channel = np.abs(ints[0].astype(np.int32)).reshape(16, -1).max(axis=1)
    assert (per_channel == peak).all(), per_channel
    assert details["int8_weights"]["bits"] == weights.bits
    assert details["int8_weights"]["why"].startswith("--int8-weights 8-bit") == (weights.bits == 8)


def test_both_graphs_follow_the_option():
    for weights in Int8Weights:
        assert encoder_int8_policy(weights).reduce_range == (weights.bits == 7)
        assert decoder_int8_policy(weights).weight_bits == weights.bits
    assert OnnxOptions(("int8-static",)).weights == Int8Weights.SEVEN_BIT
    assert OnnxOptions(("int8-static",), int8_weights="8-bit").weights.bits == 8
    with pytest.raises(OptionsError, match="7-bit, 8-bit"):
        OnnxOptions(("int8-static",), int8_weights="9-bit")


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "--target", "onnx", "--int8-weights", "9-bit"], "9-bit"),
        (["export", "--target", "tflite", "--int8-weights", "8-bit"], "--int8-weights: the ONNX"),
        (
            ["export", "--target", "onnx", "--precision", "fp32", "--int8-weights", "8-bit"],
            "--int8-weights sets the int8 graphs' weights: request int8-static",
        ),
        (
            ["quantize-scan", "--target", "tflite", "--int8-weights", "8-bit"],
            "--int8-weights: the ONNX int8 scan's option",
        ),
        (["quantize-scan", "--fp16", "--int8-weights", "7-bit"], "--int8-weights: the ONNX"),
    ],
)
def test_cli_bad_input_is_one_line(args, message, tmp_path: Path, capsys):
    assert main([*args, "--out", str(tmp_path / "o"), "--random-weights", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_scan_cli_with_8_bit_weights(tmp_path: Path, capsys):
    """A real ``quantize-scan --int8-weights 8-bit`` (the decoder's, one block, one photo) quantizes
    with 8-bit weights and says so, with the machine that timed it."""
    out = tmp_path / "scan"
    args = ["quantize-scan", "--graph", "decoder", "--blocks", "hypernetworks"]
    args += ["--int8-weights", "8-bit", "--calibration-size", "1", "--search-images", "1"]
    assert main([*args, "--runs", "1", "--out", str(out), "--random-weights", "0"]) == 0, (
        capsys.readouterr().err
    )
    table = json.loads((out / "scan.json").read_text())
    assert table["facts"]["int8_weights"] == "8-bit"
    assert table["machine"]["cpus"] and table["facts"]["timed_on"]
    assert "int8_weights 8-bit" in (out / "scan.md").read_text()


@pytest.mark.parametrize("vnni", [True, False])
@pytest.mark.parametrize("bits", [7, 8])
def test_export_notes_8_bit_weights_on_a_cpu_without_vnni(
    vnni: bool, bits: int, monkeypatch, tmp_path: Path, capsys
):
    """``export`` ends with one note naming the 8-bit artifacts when this host is an x86 CPU
    without VNNI (its parity would understate the device's); none otherwise."""
    record = ArtifactRecord(
        "onnx/encoder.int8-static.onnx",
        "onnx",
        "encoder",
        "int8-static",
        [],
        [],
        1,
        "0" * 64,
        {"int8_weights": {"bits": bits, "why": "test"}},
    )

    def fake_export(out, target, **kwargs):
        return api.ExportResult(Path(out), Manifest(model={}, artifacts=[record]), None)

    vector = ["avx2", "fma", "avx512f", *(["avx512_vnni"] if vnni else [])]
    monkeypatch.setattr(api, "export", fake_export)
    monkeypatch.setattr(export_cli, "cpu_details", lambda: {"vector": vector})
    code = main(["export", "--target", "onnx", "--out", str(tmp_path), "--no-parity"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 0, err
    note = "note: onnx/encoder.int8-static.onnx: 8-bit int8 weights on an x86 CPU without VNNI"
    assert (note in err) == (bits == 8 and not vnni), err


def test_which_cpus_add_int8_pairs_in_16_bits():
    assert adds_int8_pairs_in_16_bits({"vector": ["avx2", "fma"]})
    assert not adds_int8_pairs_in_16_bits({"vector": ["avx2", "avx_vnni"]})
    assert not adds_int8_pairs_in_16_bits({"vector": ["avx2", "avx512f", "avx512_vnni"]})
    assert not adds_int8_pairs_in_16_bits({"vector": ["asimd", "asimddp"]})  # ARM: SDOT
    assert not adds_int8_pairs_in_16_bits({})


def test_raspberry_pi_5_runs_onnx_int8_static():
    """The Pi 5 profile takes ONNX int8-static encoders (either width; their parity on its
    emulated twin: docs/onnx.md), not TFLite's int8-full."""
    pi = get_profile("raspberry-pi-5")

    def record(target: str, precision: str) -> ArtifactRecord:
        name = f"{target}/encoder.{precision}"
        return ArtifactRecord(name, target, "encoder", precision, [], [], 1, "")

    assert pi.wants(record("onnx", "int8-static")) and pi.wants(record("onnx", "int8-dynamic"))
    assert not pi.wants(record("tflite", "int8-full"))
