"""ExecuTorch export: files and manifest records, the contract as ExecuTorch's loader reads it,
fp32 parity on the conformance weights, the decoder's partitions after the rewrites, the dynamic
point count and its bound, the thread pool, and the rewrites' equivalence.

The full model is exported once per module in fp32 (lowering the dynamic-N decoder is the slow
part) and judged by the parity engine on two of the parity photos. The int8, fp16 and Core ML
paths are exercised on a small encoder-shaped graph (same code, seconds instead of minutes);
their full-model figures come from ``benchmarks/bench_executorch.py`` (docs/executorch.md).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from conftest import conformance_path

pytest.importorskip("executorch")

from edgesam_deploy.checkpoints import ModelSource  # noqa: E402
from edgesam_deploy.errors import DeployError, MissingDependencyError  # noqa: E402
from edgesam_deploy.exporters import ExportOptions, get_exporter  # noqa: E402
from edgesam_deploy.exporters.executorch.checks import check_program, program_io  # noqa: E402
from edgesam_deploy.exporters.executorch.lowering import (  # noqa: E402
    Fp16Graph,
    coreml_partitioner,
    export_graph,
    lower,
    xnnpack_partitioner,
)
from edgesam_deploy.exporters.executorch.options import ExecutorchOptions  # noqa: E402
from edgesam_deploy.exporters.executorch.quantize import quantize_int8  # noqa: E402
from edgesam_deploy.exporters.executorch.rewrites import (  # noqa: E402
    BatchOneAttention,
    ReductionLayerNorm,
    ReductionLayerNorm2d,
    delegable,
    norms_in_fp32,
    tanh_gelu,
)
from edgesam_deploy.exporters.pipeline import run_export  # noqa: E402
from edgesam_deploy.fileio import sha256_path  # noqa: E402
from edgesam_deploy.graphs import example_inputs  # noqa: E402
from edgesam_deploy.manifest import ArtifactRecord, Manifest  # noqa: E402
from edgesam_deploy.modeling.common import LayerNorm2d  # noqa: E402
from edgesam_deploy.modeling.transformer import Attention  # noqa: E402
from edgesam_deploy.parity import Reference, check_directory  # noqa: E402
from edgesam_deploy.parity.report import table  # noqa: E402
from edgesam_deploy.processing import PromptError  # noqa: E402
from edgesam_deploy.runtimes import open_session  # noqa: E402
from edgesam_deploy.runtimes.base import NotRunnableHere  # noqa: E402
from edgesam_deploy.runtimes.executorch import program_outputs  # noqa: E402
from edgesam_deploy.vocabulary import ENCODER, Precision, Role, Target  # noqa: E402

pytestmark = pytest.mark.slow

PRECISIONS = (Precision.FP32,)
MAX_POINTS = 16


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, conformance_model) -> Path:
    out = tmp_path_factory.mktemp("executorch")
    options = ExportOptions.of(ExecutorchOptions(PRECISIONS, MAX_POINTS))
    source = ModelSource("edgesam", "checkpoint", path=str(conformance_path()))
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


def test_decoder_rewrites_keep_it_in_few_xnnpack_partitions(manifest):
    decoder = _record(manifest, Role.DECODER, Precision.FP32)
    assert set(decoder.details["partitions"]) == {"XnnpackBackend"}
    assert decoder.details["total_partitions"] <= 6  # 45 without the rewrites (docs/executorch.md)
    assert "aten.native_layer_norm.default" not in decoder.details["outside_delegate"]
    encoder = _record(manifest, Role.ENCODER, Precision.FP32)
    assert encoder.details["total_partitions"] == 1 and not encoder.details["outside_delegate"]


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


class TinyEncoder(nn.Module):
    """Encoder-shaped graph: image [1, 3, 1024, 1024] -> [1, 256, 64, 64] through a patch conv,
    LayerNorm2d, GELU and a 1x1 conv (the op kinds the real encoder's lowering meets)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 256, 16, stride=16)
        self.norm = LayerNorm2d(256)
        self.act = nn.GELU()
        self.proj = nn.Conv2d(256, 256, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.norm(self.patch(image))))


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, list[np.ndarray], np.ndarray]:
    """The rewritten small encoder, two calibration images and its float output on the first."""
    graph = delegable(TinyEncoder().eval())[0]
    images = [
        np.random.default_rng(i).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
        for i in range(2)
    ]
    with torch.no_grad():
        reference = graph(torch.from_numpy(images[0])).numpy()
    return graph, images, reference


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def _written(data: bytes, tmp_path: Path) -> Path:
    path = tmp_path / "encoder.pte"
    path.write_bytes(data)
    assert check_program(path, ENCODER, MAX_POINTS) == []
    return path


def test_int8_path_quantizes_into_xnnpack(tiny, tmp_path):
    graph, images, reference = tiny
    fp32, _ = lower(export_graph(graph, ENCODER, MAX_POINTS), xnnpack_partitioner())
    feeds = [(torch.from_numpy(x),) for x in images]
    quantized = quantize_int8(graph, ENCODER, feeds, MAX_POINTS)
    data, census = lower(export_graph(quantized, ENCODER, MAX_POINTS), xnnpack_partitioner())
    _written(data, tmp_path)
    assert set(census.partitions) == {"XnnpackBackend"}
    assert not [op for op in census.outside if "quantize" in op], census.outside
    assert len(data) < 0.5 * len(fp32)
    assert _cosine(reference, program_outputs(data, images[:1])[0]) > 0.99


def test_fp16_path_keeps_norms_fp32_and_gelu_in_the_delegate(tiny, tmp_path):
    graph, images, reference = tiny
    half = Fp16Graph(copy.deepcopy(graph))
    assert norms_in_fp32(half.net) == 1 and tanh_gelu(half.net) == 1
    data, census = lower(export_graph(half, ENCODER, MAX_POINTS), xnnpack_partitioner())
    _written(data, tmp_path)
    assert "aten.gelu.default" not in census.outside and "aten.gelu" not in census.outside
    assert _cosine(reference, program_outputs(data, images[:1])[0]) > 0.999


def test_coreml_delegate_is_structural_only_on_linux(tiny, tmp_path, random_model):
    graph, _, _ = tiny
    data, census = lower(export_graph(graph, ENCODER, MAX_POINTS), coreml_partitioner())
    assert census.partitions == {"CoreMLBackend": 1} and not census.outside
    (tmp_path / "executorch").mkdir()
    path = _written(data, tmp_path / "executorch")
    record = ArtifactRecord(
        f"executorch/{path.name}",
        Target.EXECUTORCH,
        Role.ENCODER,
        Precision.COREML_FP16,
        [],
        [],
        len(data),
        sha256_path(path),
        {"partitions": census.partitions},
    )
    Manifest(model=ModelSource("edgesam", "random", seed=0).as_dict(), artifacts=[record]).save(
        tmp_path
    )
    with pytest.raises(NotRunnableHere, match="CoreMLBackend"):
        open_session(record, tmp_path)
    (result,) = check_directory(tmp_path, random_model)
    assert not result.measured and result.passed and result.runtime == "not measured here"
    console = Console(record=True, width=200)
    console.print(table([result]))
    assert "not measured here" in console.export_text()


def test_int8_alias_is_the_static_variant():
    exporter = get_exporter(Target.EXECUTORCH)
    assert exporter.resolve_precisions(("int8", "fp32")) == [Precision.INT8_STATIC, Precision.FP32]
