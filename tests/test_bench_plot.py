"""The benchmark plot: latency (encoder + one click) against mask IoU per pipeline, its Pareto
frontier, and the pipelines it leaves out."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgesam_deploy.bench.report import write_markdown
from edgesam_deploy.bench.schema import (
    DECODER_1,
    ENCODER,
    ArtifactResult,
    BenchReport,
    DeviceInfo,
    ParitySummary,
    PipelineResult,
    Stats,
)
from edgesam_deploy.bench.tradeoff import pareto_front, tradeoff_points


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([], []),
        ([(10.0, 0.9)], [0]),
        # slower and worse than index 0: dominated; the slow exact one stays
        ([(10.0, 0.99), (20.0, 0.95), (40.0, 1.0)], [0, 2]),
        # same latency, lower IoU: dominated; same IoU, slower: dominated
        ([(10.0, 0.99), (10.0, 0.98), (12.0, 0.99)], [0]),
        # identical points dominate neither
        ([(30.0, 0.9), (5.0, 0.8), (30.0, 0.9)], [1, 0, 2]),
        # input order does not matter; the front comes back by latency
        ([(50.0, 1.0), (8.0, 0.9), (20.0, 0.97), (25.0, 0.96)], [1, 2, 0]),
    ],
)
def test_pareto_front(points, front):
    assert pareto_front(points) == front


def _stats(p50: float) -> Stats:
    return Stats(p50, p50 * 1.1, p50 * 0.9, p50, 10)


def _row(file: str, target: str, precision: str, mb: float, iou: float | None, runtime: str):
    """A measured artifact row with a host parity verdict (``iou`` None: parity skipped)."""
    role = "encoder" if "encoder" in file else "decoder"
    row = ArtifactResult(file, target, role, precision, int(mb * 1e6), runtime, measured=True)
    row.latency = {ENCODER if role == "encoder" else DECODER_1: _stats(1.0)}
    if iou is not None:
        row.parity = ParitySummary(True, {"mask_iou_mean": iou}, [], runtime, "computed")
        row.parity_measured_on = "host"
    return row


def _pipe(enc: str, dec: str, label: str, frame_ms: float | None) -> PipelineResult:
    pipe = PipelineResult(enc, dec, label, measured=frame_ms is not None)
    if frame_ms is None:
        pipe.reason = "encoder or decoder not measured"
    else:
        pipe.end_to_end, pipe.fps = _stats(frame_ms), 1e3 / frame_ms
    return pipe


@pytest.fixture
def report() -> BenchReport:
    """Figures of the shape `bench --device host` records (seeded weights, 2 threads)."""
    rows = [
        _row("onnx/encoder.fp32.onnx", "onnx", "fp32", 22.1, 1.0, "onnxruntime"),
        _row("onnx/decoder.fp32.onnx", "onnx", "fp32", 20.5, 1.0, "onnxruntime"),
        _row("onnx/encoder.fp16.onnx", "onnx", "fp16", 11.1, 0.9986, "onnxruntime"),
        _row("onnx/decoder.fp16.onnx", "onnx", "fp16", 11.0, 0.9964, "onnxruntime"),
        _row("onnx/encoder.int8-static.onnx", "onnx", "int8-static", 6.0, 0.981, "onnxruntime"),
        _row("tflite/encoder.fp32.tflite", "tflite", "fp32", 22.2, 1.0, "litert"),
        _row("tflite/decoder.fp32.tflite", "tflite", "fp32", 23.5, 1.0, "litert"),
        _row("tflite/encoder.fp16.tflite", "tflite", "fp16", 11.3, None, "litert"),
        _row("tflite/decoder.fp16.tflite", "tflite", "fp16", 15.7, None, "litert"),
    ]
    unmeasured = ArtifactResult("coreml/encoder.fp16.mlpackage", "coreml", "encoder", "fp16", 1)
    pipes = [
        _pipe("onnx/encoder.fp32.onnx", "onnx/decoder.fp32.onnx", "onnx fp32", 180.0),
        _pipe("onnx/encoder.fp16.onnx", "onnx/decoder.fp16.onnx", "onnx fp16", 240.0),
        _pipe(
            "onnx/encoder.int8-static.onnx",
            "onnx/decoder.fp32.onnx",
            "onnx int8-static + fp32 decoder",
            120.0,
        ),
        _pipe("tflite/encoder.fp32.tflite", "tflite/decoder.fp32.tflite", "tflite fp32", 150.0),
        _pipe("tflite/encoder.fp16.tflite", "tflite/decoder.fp16.tflite", "tflite fp16", 160.0),
        _pipe(unmeasured.file, "coreml/decoder.fp16.mlpackage", "coreml fp16", None),
    ]
    return BenchReport(
        DeviceInfo("host", "local", "this machine"),
        {"runs": 10, "warmup": 2, "threads": 2},
        {},
        {"kind": "random", "seed": 0},
        [*rows, unmeasured],
        pipes,
    )


def test_points_pair_latency_with_the_worse_stage_and_name_the_missing(report):
    points, missing = tradeoff_points(report)
    assert sorted((p.runtime, p.label) for p in points) == [
        ("litert", "fp32"),
        ("onnxruntime", "fp16"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8-static + fp32 decoder"),
    ]
    by_label = {p.label: p for p in points if p.runtime == "onnxruntime"}
    int8 = by_label["int8-static + fp32 decoder"]
    assert (int8.latency_ms, int8.iou, int8.runtime) == (120.0, 0.981, "onnxruntime")
    assert int8.size_mb == pytest.approx(26.5) and int8.iou_measured_on == ("host",)
    fp16 = by_label["fp16"]
    assert fp16.iou == 0.9964  # the decoder's, lower than the encoder's
    assert missing == ["tflite fp16 (mask IoU)", "coreml fp16 (latency)"]
    front = pareto_front([(p.latency_ms, p.iou) for p in points])
    on_front = {(points[i].runtime, points[i].label) for i in front}
    assert on_front == {("onnxruntime", "int8-static + fp32 decoder"), ("litert", "fp32")}


def test_fps_alone_gives_the_latency(report):
    """Runners that time each graph alone record FPS from the summed p50s, no frame stats."""
    pipe = report.pipelines[0]
    pipe.end_to_end, pipe.fps = None, 4.0
    points, _ = tradeoff_points(report)
    assert 250.0 in [p.latency_ms for p in points]


def test_rows_per_compute_unit_pair_with_their_pipeline():
    """An iPhone report has one row per file and compute-unit setting, and one pipeline each."""
    rows, pipes = [], []
    for unit, iou, frame in (("ALL", 0.998, 30.0), ("CPU_ONLY", 0.9995, 90.0)):
        for file in ("coreml/encoder.fp16.mlpackage", "coreml/decoder.fp16.mlpackage"):
            row = _row(file, "coreml", "fp16", 10.0, iou, "coreml")
            row.runtime_details = {"compute_units": unit}
            rows.append(row)
        pipes.append(_pipe(rows[-2].file, rows[-1].file, f"coreml fp16 ({unit}, device)", frame))
    report = BenchReport(DeviceInfo("iphone14", "xcode"), {}, {}, {}, rows, pipes)
    points, missing = tradeoff_points(report)
    assert [(p.label, p.iou, p.latency_ms) for p in points] == [
        ("fp16 (ALL, device)", 0.998, 30.0),
        ("fp16 (CPU_ONLY, device)", 0.9995, 90.0),
    ]
    assert not missing and pareto_front([(p.latency_ms, p.iou) for p in points]) == [0, 1]


def test_plot_is_written_readable_and_lists_what_it_left_out(report, tmp_path):
    md = tmp_path / "bench.md"
    plot = write_markdown(md, report)
    assert plot == tmp_path / "bench-latency.png"
    pixels = np.asarray(Image.open(plot).convert("L"))
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600
    assert (pixels < 128).mean() > 0.01 and len(np.unique(pixels)) > 20  # drawn, not blank
    text = md.read_text()
    assert "![latency against mask IoU per pipeline](bench-latency.png)" in text
    assert "not measured: tflite fp16 (mask IoU), coreml fp16 (latency)" in text
    assert "| onnx/encoder.fp16.onnx fp16 |" in text  # the table stays


def test_one_point_is_drawn(report, tmp_path):
    report.pipelines = report.pipelines[:1]
    plot = write_markdown(tmp_path / "bench.md", report)
    assert plot is not None and "Left off" not in (tmp_path / "bench.md").read_text()


def test_no_point_no_plot(report, tmp_path):
    for row in report.artifacts:
        row.parity = None
    plot = write_markdown(tmp_path / "bench.md", report)
    assert plot is None and not (tmp_path / "bench-latency.png").exists()
    assert "not measured: onnx fp32 (mask IoU)" in (tmp_path / "bench.md").read_text()
