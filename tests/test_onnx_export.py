"""ONNX target: one full export per session, then contract, dynamic N, op set, parity and conformance."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgesam_deploy.checkpoints import ModelSource  # noqa: E402
from edgesam_deploy.errors import DeployError, MissingDependencyError  # noqa: E402
from edgesam_deploy.exporters import ExportContext, ExportOptions, get_exporter  # noqa: E402
from edgesam_deploy.exporters.onnx.checks import FORBIDDEN_DECODER_OPS  # noqa: E402
from edgesam_deploy.exporters.onnx.convert import OnnxExporter, save_model  # noqa: E402
from edgesam_deploy.exporters.onnx.options import OnnxOptions  # noqa: E402
from edgesam_deploy.manifest import Manifest  # noqa: E402
from edgesam_deploy.parity import Reference, check_directory  # noqa: E402
from edgesam_deploy.parity.thresholds import thresholds_for, violations  # noqa: E402
from edgesam_deploy.quantization.equalize import ALPHA_CANDIDATES  # noqa: E402

pytestmark = pytest.mark.slow
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")


def _export(
    model, out: Path, seed_source: ModelSource, precisions: list[str], calibration_size: int = 2
) -> Manifest:
    ctx = ExportContext(
        model=model,
        source=seed_source,
        out_dir=out,
        options=ExportOptions.of(OnnxOptions(tuple(precisions)), calibration_size=calibration_size),
    )
    manifest = Manifest(model=seed_source.as_dict())
    manifest.add(OnnxExporter().export(ctx))
    manifest.save(out)
    return manifest


@pytest.fixture(scope="module")
def exported(random_model, tmp_path_factory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("onnx-export")
    return out, _export(
        random_model, out, ModelSource("edgesam", "random", seed=0), list(PRECISIONS)
    )


@pytest.fixture(scope="module")
def reference(random_model) -> Reference:
    """The parity reference on two of the four parity photos (keeps this file's runtime down)."""
    return Reference(random_model, photos=["coffee", "camera"])


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _decoder_feeds(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    labels = np.ones((1, n), np.float32)
    labels[0, -1] = -1
    return {
        "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
        "point_coords": (rng.random((1, n, 2)) * 1024).astype(np.float32),
        "point_labels": labels,
    }


def test_files_names_shapes(exported):
    out, manifest = exported
    assert sorted(a.file for a in manifest.artifacts) == sorted(
        f"onnx/{role}.{p}.onnx" for role in ("encoder", "decoder") for p in PRECISIONS
    )
    assert not list(out.rglob("*.data")) and not list(out.rglob(".*partial*"))
    for record in manifest.artifacts:
        path = out / record.file
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        ios = {v.name: v for v in [*model.graph.input, *model.graph.output]}
        for spec in [*record.inputs, *record.outputs]:
            t = ios[spec["name"]].type.tensor_type
            assert t.elem_type == onnx.TensorProto.FLOAT, (record.file, spec["name"])
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            assert dims == spec["shape"], (record.file, spec["name"], dims)
        assert (
            record.details["simplifier"] == "onnxslim"
            and record.details["runtime"] == "onnxruntime"
        )
        assert record.details["exporter"] == "torch.onnx legacy TorchScript exporter (dynamo=False)"
        assert record.details["opset"] == (
            20 if record.file == "onnx/encoder.int8-static.onnx" else 17
        )
        default_domain = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
        assert default_domain == [record.details["opset"]]
    decoder = next(a for a in manifest.artifacts if a.file == "onnx/decoder.fp32.onnx")
    assert decoder.inputs[1]["shape"] == [1, None, 2] and decoder.inputs[2]["shape"] == [1, None]


def test_precision_details_recorded(exported):
    _, manifest = exported
    by_file = {a.file: a.details for a in manifest.artifacts}
    assert "LayerNormalization" in by_file["onnx/encoder.fp16.onnx"]["fp32_kept_ops"]
    assert by_file["onnx/decoder.fp16.onnx"]["fp32_kept_subgraph"]["nodes"] > 0
    static = by_file["onnx/encoder.int8-static.onnx"]
    assert static["calibration"]["images"] == 2 and static["quantization_exclusions"] is not None
    assert static["int8_weights"]["bits"] == 7 and "without VNNI" in static["int8_weights"]["why"]
    assert static["equalization"]["alpha"] in ALPHA_CANDIDATES
    assert static["squeeze_excite_means_as_global_average_pool"] == 10
    trials = static["equalization"]["calibration_cosine_by_alpha"]
    assert sorted(trials) == sorted(map(str, ALPHA_CANDIDATES))
    assert trials[str(static["equalization"]["alpha"])] == max(trials.values())
    streams = static["equalization"]["streams"]
    assert [s["channels"] for s in streams] == [48, 96, 192, 384]
    assert all(s["peak_over_median_after"] < s["peak_over_median_before"] for s in streams)
    assert "int8_decoder" in by_file["onnx/decoder.int8-static.onnx"]


def test_int8_encoder_keeps_gelu_whole(exported):
    """Opset 20: each GELU is one Gelu node between QDQ pairs, never an Erf chain that ONNX Runtime
    would split across duplicated DequantizeLinear nodes."""
    out, _ = exported
    ops = [n.op_type for n in onnx.load(str(out / "onnx/encoder.int8-static.onnx")).graph.node]
    assert ops.count("Gelu") == 27 and "Erf" not in ops
    assert ops.count("QuantizeLinear") > 100


@pytest.mark.parametrize("n", [1, 16])
def test_decoder_dynamic_points(exported, n):
    out, _ = exported
    for precision in ("fp32", "fp16"):
        scores, masks = _session(out / f"onnx/decoder.{precision}.onnx").run(
            ["scores", "masks"], _decoder_feeds(n)
        )
        assert scores.shape == (1, 4) and masks.shape == (1, 4, 256, 256)
        assert np.isfinite(masks).all()


def test_decoder_has_static_shapes_only(exported):
    out, _ = exported
    for precision in PRECISIONS:
        ops = {n.op_type for n in onnx.load(str(out / f"onnx/decoder.{precision}.onnx")).graph.node}
        assert not ops & (FORBIDDEN_DECODER_OPS | {"Where", "Shape"}), ops


def test_fp32_and_int8_static_parity(exported, random_model, reference):
    out, _ = exported
    files = [
        "onnx/encoder.fp32.onnx",
        "onnx/decoder.fp32.onnx",
        "onnx/encoder.int8-static.onnx",
        "onnx/decoder.int8-static.onnx",
    ]
    results = {
        r.file: r for r in check_directory(out, random_model, files=files, reference=reference)
    }
    for f in ("onnx/encoder.fp32.onnx", "onnx/decoder.fp32.onnx", "onnx/decoder.int8-static.onnx"):
        assert results[f].passed, (f, results[f].failures)
    # the int8 encoder meets the embedding threshold; with random weights the reference decoder
    # turns
    # its small embedding error into mask IoU below the int8 floor (docs/onnx.md), so masks are
    # reported
    static = results["onnx/encoder.int8-static.onnx"]
    limit = thresholds_for("int8-static", "encoder")["emb_cosine_min"][1]
    assert static.metrics["emb_cosine_min"] >= limit, static.metrics
    print(
        "int8-static encoder",
        static.metrics,
        violations(static.metrics, thresholds_for("int8-static", "encoder")),
    )


def test_fp16_passes_the_fp16_gate_on_every_parity_photo(exported, random_model):
    """The fp16 encoder and decoder (the rewritten decoder in fp16) on all four parity photos, as
    the demo judges them: a change exact in real numbers can still cost fp16 its gate (a bias
    folded into the attention's values took the decoder's mask IoU min to 0.897 < 0.90)."""
    out, _ = exported
    files = ["onnx/encoder.fp16.onnx", "onnx/decoder.fp16.onnx"]
    for result in check_directory(
        out, random_model, files=files, reference=Reference(random_model)
    ):
        assert result.passed, (result.file, result.failures)


def test_tampered_artifact_fails_parity(exported, random_model, reference, tmp_path):
    out, manifest = exported
    model = onnx.load(str(out / "onnx/encoder.fp32.onnx"))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[: arr.size // 8] += 0.05
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    (tmp_path / "onnx").mkdir()
    save_model(model, tmp_path / "onnx/encoder.fp32.onnx")
    tampered = Manifest(model=manifest.model)
    tampered.add([a for a in manifest.artifacts if a.file == "onnx/encoder.fp32.onnx"])
    tampered.save(tmp_path)
    (result,) = check_directory(tmp_path, random_model, reference=reference)
    assert not result.passed
    assert any("sha256" in f for f in result.failures) and any(
        "emb_max_abs" in f for f in result.failures
    )


def test_conformance(conformance_model, conformance, tmp_path):
    _export(conformance_model, tmp_path, ModelSource("edgesam", "random", seed=0), ["fp32"])
    emb = _session(tmp_path / "onnx/encoder.fp32.onnx").run(
        ["image_embeddings"], {"image": conformance["encoder_input"]}
    )[0]
    np.testing.assert_allclose(emb, conformance["bilinear/image_embeddings"], atol=1e-4, rtol=0)
    decoder = _session(tmp_path / "onnx/decoder.fp32.onnx")
    for case in ("one_point", "three_points", "box", "box_point"):
        key = f"decoder_graph/iou/{case}"
        scores, masks = decoder.run(
            ["scores", "masks"],
            {
                "image_embeddings": conformance["bilinear/image_embeddings"],
                "point_coords": conformance[f"{key}/point_coords"],
                "point_labels": conformance[f"{key}/point_labels"],
            },
        )
        np.testing.assert_allclose(masks, conformance[f"{key}/masks"], atol=1e-3, rtol=0)
        np.testing.assert_allclose(scores, conformance[f"{key}/scores"], atol=1e-4, rtol=0)


def test_int8_static_passes_the_int8_gate_on_conformance_weights(conformance_model, tmp_path):
    """On the official implementation's weights the int8-static encoder meets every int8 threshold:
    embedding cosine, mean and minimum mask IoU, scores and best-mask choice."""
    _export(
        conformance_model,
        tmp_path,
        ModelSource("edgesam", "random", seed=0),
        ["int8-static"],
        calibration_size=4,
    )
    reference = Reference(conformance_model, photos=["coffee", "camera"])
    (result,) = check_directory(
        tmp_path, conformance_model, files=["onnx/encoder.int8-static.onnx"], reference=reference
    )
    print("int8-static encoder, conformance weights", result.metrics)
    assert result.passed, (result.failures, result.metrics)


def test_missing_onnxruntime_is_a_clear_error(monkeypatch, random_model, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    exporter = get_exporter("onnx")
    with pytest.raises(MissingDependencyError, match=r"edgesam-deploy\[onnx\]"):
        exporter.check_dependencies()
    ctx = ExportContext(
        model=random_model, source=ModelSource("edgesam", "random", seed=0), out_dir=tmp_path
    )
    with pytest.raises(MissingDependencyError):
        exporter.export(ctx)
    assert not any(tmp_path.iterdir())


def test_unknown_precision_is_rejected(random_model, tmp_path):
    ctx = ExportContext(
        model=random_model,
        source=ModelSource("edgesam", "random", seed=0),
        out_dir=tmp_path,
        options=ExportOptions.of(OnnxOptions(("int4",))),
    )
    with pytest.raises(DeployError, match="no precision int4"):
        OnnxExporter().export(ctx)
