"""ExecuTorch export: files and manifest records, the contract as ExecuTorch's loader reads it,
parity of every XNNPACK variant on the conformance weights, the Core ML delegate's structural
check, the dynamic point count and its bound, the thread pool, and the rewrites' equivalence.

The full model is exported once per module (every precision, 2 calibration images) and judged
by the parity engine on two of the parity photos; the benchmark uses all four.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("executorch")

from edgesam_deploy.checkpoints import ModelSource  # noqa: E402
from edgesam_deploy.errors import DeployError, MissingDependencyError  # noqa: E402
from edgesam_deploy.exporters import ExportOptions, get_exporter  # noqa: E402
from edgesam_deploy.exporters.executorch.checks import program_io  # noqa: E402
from edgesam_deploy.exporters.executorch.convert import ExecutorchExporter  # noqa: E402
from edgesam_deploy.exporters.executorch.options import ExecutorchOptions  # noqa: E402
from edgesam_deploy.exporters.executorch.rewrites import (  # noqa: E402
    BatchOneAttention,
    ReductionLayerNorm,
    ReductionLayerNorm2d,
)
from edgesam_deploy.exporters.pipeline import run_export  # noqa: E402
from edgesam_deploy.graphs import example_inputs  # noqa: E402
from edgesam_deploy.manifest import Manifest  # noqa: E402
from edgesam_deploy.modeling.common import LayerNorm2d  # noqa: E402
from edgesam_deploy.modeling.transformer import Attention  # noqa: E402
from edgesam_deploy.parity import Reference, check_directory  # noqa: E402
from edgesam_deploy.processing import PromptError  # noqa: E402
from edgesam_deploy.runtimes import open_session  # noqa: E402
from edgesam_deploy.runtimes.base import NotRunnableHere  # noqa: E402
from edgesam_deploy.vocabulary import Precision, Role, Target  # noqa: E402

pytestmark = pytest.mark.slow

PRECISIONS = ExecutorchExporter.precisions
MAX_POINTS = 16


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, conformance_model) -> Path:
    out = tmp_path_factory.mktemp("executorch")
    options = ExportOptions.of(ExecutorchOptions(PRECISIONS, MAX_POINTS), calibration_size=2)
    source = ModelSource("edgesam", "conformance", seed=0)
    run_export(conformance_model, source, [Target.EXECUTORCH], out, options, run_parity=False)
    return out


@pytest.fixture(scope="module")
def manifest(export_dir) -> Manifest:
    return Manifest.load(export_dir)


@pytest.fixture(scope="module")
def parity(export_dir, conformance_model) -> dict:
    reference = Reference(conformance_model, photos=["coffee", "rocket-portrait"])
    results = check_directory(export_dir, conformance_model, reference=reference)
    return {r.file: r for r in results}


def _record(manifest: Manifest, role: Role, precision: Precision):
    return next(a for a in manifest.artifacts if a.role == role and a.precision == precision)


def test_files_records_and_program_io(export_dir, manifest):
    files = sorted(a.file for a in manifest.artifacts)
    assert files == sorted(f"executorch/{r}.{p}.pte" for r in Role for p in PRECISIONS)
    assert not list(export_dir.rglob(".*partial*")), "a temporary file was left behind"
    for a in manifest.artifacts:
        io = program_io(export_dir / a.file)
        points = MAX_POINTS
        expected = (
            [[1, 3, 1024, 1024]]
            if a.role == Role.ENCODER
            else [[1, 256, 64, 64], [1, points, 2], [1, points]]
        )
        assert [t["shape"] for t in io["inputs"]] == expected, a.file
        assert a.details["total_partitions"] == sum(a.details["partitions"].values()) >= 1
        assert isinstance(a.details["outside_delegate"], dict)
    decoder = _record(manifest, Role.DECODER, Precision.FP32)
    assert decoder.details["max_points"] == MAX_POINTS
    assert decoder.details["io_order"]["inputs"] == [
        "image_embeddings",
        "point_coords",
        "point_labels",
    ]


def test_fp32_matches_pytorch_on_conformance_weights(parity):
    encoder = parity["executorch/encoder.fp32.pte"]
    assert encoder.metrics["emb_max_abs"] <= 1e-4 and encoder.metrics["mask_iou_mean"] >= 0.999
    for role in Role:
        assert parity[f"executorch/{role}.fp32.pte"].passed, parity[
            f"executorch/{role}.fp32.pte"
        ].failures


def test_int8_passes_its_gate_from_an_equalized_encoder(parity, manifest):
    for role in Role:
        result = parity[f"executorch/{role}.int8-static.pte"]
        assert result.passed, result.failures
    int8 = _record(manifest, Role.ENCODER, Precision.INT8_STATIC)
    fp32 = _record(manifest, Role.ENCODER, Precision.FP32)
    assert int8.size_bytes < 0.4 * fp32.size_bytes
    assert int8.details["equalization"]["alpha"] > 0
    assert int8.details["quantization"]["calibration"]["images"] == 2


def test_fp16_passes_its_gate(parity, manifest):
    for role in Role:
        result = parity[f"executorch/{role}.fp16.pte"]
        assert result.passed, result.failures
        kept = _record(manifest, role, Precision.FP16).details["fp16"]
        assert kept["layer_norm_fp32"] >= 1


def test_decoder_rewrites_keep_it_in_few_xnnpack_partitions(manifest):
    decoder = _record(manifest, Role.DECODER, Precision.FP32)
    assert set(decoder.details["partitions"]) == {"XnnpackBackend"}
    assert decoder.details["total_partitions"] <= 6  # 45 without the rewrites (docs/executorch.md)
    assert "aten.native_layer_norm.default" not in decoder.details["outside_delegate"]
    encoder = _record(manifest, Role.ENCODER, Precision.FP32)
    assert encoder.details["total_partitions"] == 1 and not encoder.details["outside_delegate"]


def test_coreml_delegate_is_structural_only_on_linux(export_dir, manifest, parity):
    for role in Role:
        record = _record(manifest, role, Precision.COREML_FP16)
        assert "CoreMLBackend" in record.details["partitions"]
        result = parity[record.file]
        assert not result.measured and result.runtime == "not measured here" and not result.metrics
        with pytest.raises(NotRunnableHere, match="CoreMLBackend"):
            open_session(record, export_dir)


def test_dynamic_point_count_and_its_bound(export_dir, manifest, conformance_model):
    from edgesam_deploy.graphs import DecoderGraph

    session = open_session(_record(manifest, Role.DECODER, Precision.FP32), export_dir)
    reference = DecoderGraph(conformance_model).eval()
    for n in (1, 5, MAX_POINTS):
        emb, coords, labels = example_inputs(Role.DECODER, n)
        feeds = {
            "image_embeddings": emb.numpy(),
            "point_coords": coords.numpy(),
            "point_labels": labels.numpy(),
        }
        out = session.run(feeds)
        with torch.no_grad():
            scores, masks = reference(emb, coords, labels)
        assert np.abs(out["masks"] - masks.numpy()).max() < 1e-3, n
        assert out["scores"].shape == (1, 4)
    emb, coords, labels = example_inputs(Role.DECODER, MAX_POINTS + 1)
    too_long = {
        "image_embeddings": emb.numpy(),
        "point_coords": coords.numpy(),
        "point_labels": labels.numpy(),
    }
    with pytest.raises(PromptError, match=f"takes N in 1..{MAX_POINTS}"):
        session.run(too_long)
    assert not session.accepts_points(MAX_POINTS + 1) and session.accepts_points(1)


def test_thread_pool_is_set_once_per_process(export_dir, manifest):
    record = _record(manifest, Role.ENCODER, Precision.FP32)
    first = open_session(record, export_dir, threads=2)
    assert first.describe()["threads"] == 2
    assert open_session(record, export_dir, threads=2).threads == 2
    with pytest.raises(DeployError, match="set once per process"):
        open_session(record, export_dir, threads=1)


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    exporter = get_exporter(Target.EXECUTORCH)
    monkeypatch.setattr(exporter, "required_modules", ("executorch_not_installed_here",))
    with pytest.raises(MissingDependencyError, match=r"edgesam-deploy\[executorch\]"):
        exporter.check_dependencies()


def test_rewrites_compute_the_same_function():
    torch.manual_seed(0)
    x = torch.randn(1, 7, 256) * 3 + 1
    norm = nn.LayerNorm(256)
    nn.init.normal_(norm.weight), nn.init.normal_(norm.bias)
    torch.testing.assert_close(ReductionLayerNorm(norm)(x), norm(x), atol=1e-5, rtol=1e-5)
    norm2d = LayerNorm2d(32)
    nn.init.normal_(norm2d.weight), nn.init.normal_(norm2d.bias)
    image = torch.randn(1, 32, 16, 16) * 2 - 1
    torch.testing.assert_close(
        ReductionLayerNorm2d(norm2d)(image), norm2d(image), atol=1e-5, rtol=1e-5
    )
    attention = Attention(256, 8, downsample_rate=2)
    q, k = torch.randn(1, 7, 256), torch.randn(1, 50, 256)
    torch.testing.assert_close(
        BatchOneAttention(attention)(q, k, k), attention(q, k, k), atol=1e-5, rtol=1e-5
    )
