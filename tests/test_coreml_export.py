"""Core ML export: packages, metadata, op census, fp16 emulation parity (Linux), real Core ML (macOS).

The full model is exported once per module (conformance weights; fp16, fp32, int8-weight, palette4
for both graphs). On Linux the parity figures come from the fp16 emulation, not from Core ML;
the ``macos`` tests run the real packages and are the only ones skipped elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from coremltools.converters.mil.mil.scope import ScopeSource

from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.errors import DeployError
from edgesam_deploy.exporters import ExportContext, ExportOptions, get_exporter
from edgesam_deploy.exporters.coreml.checks import check_package, load_package
from edgesam_deploy.exporters.coreml.options import CoremlOptions
from edgesam_deploy.graphs import DecoderGraph, example_inputs
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.parity import Reference, check_directory, evaluate
from edgesam_deploy.runtimes import open_session
from edgesam_deploy.runtimes.coreml import EMULATION_NOTE, CoremlSession
from edgesam_deploy.runtimes.coreml_fp16 import (
    FP32_GROUPS,
    Fp16Emulation,
    activation_report,
    mil_op_selector,
)
from edgesam_deploy.vocabulary import ComputeUnit, Role

from conftest import CONFORMANCE_DIR

PRECISIONS = ["fp16", "fp32", "int8-weight", "palette4"]
MACOS = pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predictions need macOS")


@pytest.fixture(scope="module")
def exported(conformance_model, tmp_path_factory) -> tuple[Path, Manifest]:
    """Both graphs in PRECISIONS, exported once, with a saved manifest."""
    out = tmp_path_factory.mktemp("coreml_export")
    source = ModelSource(
        "edgesam", "checkpoint", path=str(CONFORMANCE_DIR / "edgesam_seed0_coffee.npz")
    )
    ctx = ExportContext(
        model=conformance_model,
        source=source,
        out_dir=out,
        options=ExportOptions.of(CoremlOptions(tuple(PRECISIONS))),
    )
    manifest = Manifest(model=source.as_dict())
    manifest.add(get_exporter("coreml").export(ctx))
    manifest.save(out)
    return out, manifest


def _record(manifest: Manifest, role: str, precision: str):
    return next(a for a in manifest.artifacts if a.role == role and a.precision == precision)


def test_every_package_loads_back_with_official_io(exported):
    out, manifest = exported
    assert sorted(a.file for a in manifest.artifacts) == sorted(
        f"coreml/{r}.{p}.mlpackage" for r in ("encoder", "decoder") for p in PRECISIONS
    )
    assert not list((out / "coreml").glob(".*")), "temporary files left behind"
    for a in manifest.artifacts:
        check = check_package(out / a.file, a.graph, max_points=16)
        assert check["problems"] == [], a.file
        io = check["io"]
        if a.role == "encoder":
            assert io["inputs"][0]["shape"] == [1, 3, 1024, 1024]
            assert [f["name"] for f in io["outputs"]] == ["image_embeddings"]
        else:
            ranges = {f["name"]: f["range"] for f in io["inputs"]}
            assert ranges["point_coords"] == [[1, 1], [1, 16], [2, 2]]
            assert ranges["point_labels"] == [[1, 1], [1, 16]]
            assert [f["name"] for f in io["outputs"]] == ["scores", "masks"]
        assert a.details["min_ios"] == 17 and a.details["compute_units"] == "ALL"


def test_metadata_is_filled_for_xcode(exported):
    out, manifest = exported
    for a in manifest.artifacts:
        m = load_package(out / a.file)
        assert m.license == "NTU S-Lab License 1.0 (weights)"
        assert "NTU S-Lab" in m.author and a.precision in m.short_description
        meta = m.user_defined_metadata
        assert meta["edgesam.precision"] == a.precision and meta["edgesam.compute_units"] == "ALL"
        assert meta["edgesam.pixel_mean"] == "123.675,116.28,103.53"
        names = (
            ["image"]
            if a.role == "encoder"
            else ["image_embeddings", "point_coords", "point_labels"]
        )
        assert all(m.input_description[n] for n in names)
        assert all(
            m.output_description[n]
            for n in (["image_embeddings"] if a.role == "encoder" else ["scores", "masks"])
        )


def test_op_census(exported):
    _, manifest = exported
    enc16 = _record(manifest, "encoder", "fp16").details["op_census"]
    enc32 = _record(manifest, "encoder", "fp32").details["op_census"]
    dec16 = _record(manifest, "decoder", "fp16").details["op_census"]
    assert enc16["opset"] == "CoreML7"  # iOS 17
    assert enc16["ops"]["conv"] == 107  # 2 stem + 26 blocks folded + SE + fusion + neck
    assert enc16["ops"]["upsample_bilinear"] == 1
    assert enc16["fp16"]["conv"] == 107 and not enc32.get("fp16")
    assert dec16["fp16"]["linear"] == dec16["ops"]["linear"]
    assert "gather_nd" not in dec16["ops"] and "where" not in dec16["ops"]  # no boolean indexing
    fp32_ops = _record(manifest, "encoder", "fp16").details["fp32_ops"]
    kept = {t for t in enc16["fp32"] if t != "cast"}
    assert bool(kept) == bool(fp32_ops)  # fp32 compute only where a group was kept in fp32
    for p in ("int8-weight", "palette4"):
        ops = _record(manifest, "encoder", p).details["op_census"]["ops"]
        assert ops.get("constexpr_affine_dequantize", 0) + ops.get("constexpr_lut_to_dense", 0) > 50


def test_fp16_emulation_parity_on_conformance_weights(exported, conformance_model):
    out, manifest = exported
    files = [_record(manifest, r, "fp16").file for r in ("encoder", "decoder")]
    # two of the four parity photos (3:2 landscape, 2:3 portrait) keep the file within minutes
    reference = Reference(conformance_model, photos=["coffee", "rocket-portrait"])
    results = check_directory(out, conformance_model, files=files, reference=reference)
    assert len(results) == 2
    for r in results:
        assert r.passed, r.failures
        assert EMULATION_NOTE in r.runtime
        assert r.metrics["mask_iou_mean"] >= 0.99
    enc = next(r for r in results if r.role == "encoder")
    assert enc.metrics["emb_cosine_min"] >= 0.999


def test_compressed_variants_are_smaller_and_emulated_from_the_package(exported, conformance_model):
    out, manifest = exported
    for role in ("encoder", "decoder"):
        fp16 = _record(manifest, role, "fp16").size_bytes
        assert _record(manifest, role, "fp32").size_bytes > 1.9 * fp16
        # the decoder's 1 x 4096 x 256 positional encoding (2 MB) stays fp16 in every variant
        limits = (
            {"int8-weight": 0.55, "palette4": 0.3}
            if role == "encoder"
            else {"int8-weight": 0.7, "palette4": 0.45}
        )
        for precision, ratio in limits.items():
            rec = _record(manifest, role, precision)
            comp = rec.details["compression"]
            assert rec.size_bytes < ratio * fp16 and comp["size_vs_fp16"] == pytest.approx(
                rec.size_bytes / fp16
            )
            assert comp["emulated_cost"]["samples"] >= 1
    rec = _record(manifest, "encoder", "palette4")
    session = open_session(rec, out, model=conformance_model)
    assert session.describe()["emulation"] and session.weights_from_package > 50
    weight = session.module.encoder.features[5].channel_mixer.m[0].weight
    assert torch.unique(weight).numel() <= 16  # really the 4-bit palette from the package
    # 4-bit per-tensor palettes cost accuracy (see docs/coreml.md); the emulation must show a
    # bounded, non-zero cost, matching the export-time figure
    result = evaluate(session, Reference(conformance_model, photos=["coffee"]))
    cost = rec.details["compression"]["emulated_cost"]["emb_cosine_min"]
    assert 0.95 <= result.metrics["emb_cosine_min"] < 0.99999 and 0.95 <= cost < 0.99999


def test_fp32_groups_follow_the_measurement(conformance_model):
    """A decoder whose LayerNorm2d input is scaled far beyond fp16 overflows in emulation unless
    the layer_norm group is kept in fp32, which the measurement then selects."""
    graph = DecoderGraph(conformance_model).eval()
    with torch.no_grad():
        graph.mask_decoder.output_upscaling[0].weight.mul_(3000.0)
    args = example_inputs(Role.DECODER)
    report = activation_report(graph, [args])
    assert "layer_norm" in report.groups_at_risk and report.fp32_ops == report.groups_at_risk
    with torch.no_grad():
        with Fp16Emulation(graph):
            bad = graph(*args)[1]
        with Fp16Emulation(graph, ["layer_norm"]):
            good = graph(*args)[1]
        ref = graph(*args)[1]
    cosine = torch.nn.functional.cosine_similarity
    assert (
        cosine(bad.flatten(), ref.flatten(), 0) < 0.9
    )  # (x - mean)^2 overflowed: the variance became inf
    assert torch.isfinite(good).all() and cosine(good.flatten(), ref.flatten(), 0) > 0.999
    select = mil_op_selector(["layer_norm", "softmax"])

    def scope(*types: str) -> SimpleNamespace:
        return SimpleNamespace(scopes={ScopeSource.TORCHSCRIPT_MODULE_TYPE: list(types)})

    assert not select(scope("Sequential", "LayerNorm2d", "pow"))
    assert not select(scope("TwoWayTransformer", "TwoWayAttentionBlock", "Attention", "softmax"))
    assert select(scope("TwoWayTransformer", "TwoWayAttentionBlock", "Attention", "matmul"))
    assert set(FP32_GROUPS) == {"layer_norm", "softmax", "score_counts"}


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(min_ios=15), "--min-ios 15"),
        (dict(compute_units="NPU"), "compute units"),
        (dict(precisions=["int4"]), "no precision int4"),
        (dict(max_points=0), "--max-points"),
        (dict(max_points=1), "--max-points 1: choose 2..64"),
    ],
)
def test_bad_options_raise_one_line_errors(options, message, random_model, tmp_path):
    source = ModelSource("edgesam", "random", seed=0)
    with pytest.raises(DeployError, match=message):
        ctx = ExportContext(
            random_model, source, tmp_path, ExportOptions.of(CoremlOptions(**options))
        )
        get_exporter("coreml").export(ctx)
    assert not any(tmp_path.iterdir())


def test_activation_quantization_is_macos_only(random_model, tmp_path):
    ctx = ExportContext(
        model=random_model,
        source=ModelSource("edgesam", "random", seed=0),
        out_dir=tmp_path,
        options=ExportOptions.of(CoremlOptions(("int8-full",), min_ios=16)),
    )
    with pytest.raises(DeployError, match="macOS" if sys.platform != "darwin" else "min-ios 17"):
        get_exporter("coreml").export(ctx)


def test_linux_session_is_an_emulation_or_refuses(exported):
    out, manifest = exported
    rec = _record(manifest, "decoder", "fp16")
    if sys.platform == "darwin":
        assert isinstance(open_session(rec, out), CoremlSession)
    else:
        with pytest.raises(DeployError, match="need macOS"):
            open_session(rec, out)


@MACOS
@pytest.mark.macos
@pytest.mark.parametrize("units", list(ComputeUnit))
def test_real_core_ml_parity(exported, conformance_model, units):
    out, manifest = exported
    reference = Reference(conformance_model)
    for precision in PRECISIONS:
        for role in ("encoder", "decoder"):
            session = open_session(
                _record(manifest, role, precision),
                out,
                model=conformance_model,
                compute_units=units,
            )
            assert (
                isinstance(session, CoremlSession) and session.describe()["compute_units"] == units
            )
            result = evaluate(session, reference)
            assert result.passed, (precision, role, units, result.failures)


@MACOS
@pytest.mark.macos
def test_real_decoder_accepts_every_point_count(exported):
    out, manifest = exported
    session = open_session(_record(manifest, "decoder", "fp16"), out)
    emb = example_inputs(Role.DECODER)[0].numpy()
    for n in (1, 16):
        out_ = session.run(
            {
                "image_embeddings": emb,
                "point_coords": np.zeros((1, n, 2), np.float32),
                "point_labels": np.ones((1, n), np.float32),
            }
        )
        assert out_["masks"].shape == (1, 4, 256, 256) and out_["scores"].shape == (1, 4)
