"""Helpers of the bench tests (no tests here): a small ONNX export directory made without the exporters."""

from __future__ import annotations

from pathlib import Path

import torch

from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.fileio import sha256_path, size_bytes
from edgesam_deploy.graphs import DecoderGraph, EncoderGraph, example_inputs
from edgesam_deploy.manifest import ArtifactRecord, Manifest
from edgesam_deploy.modeling import EdgeSam
from edgesam_deploy.vocabulary import DECODER, ENCODER, Role


def _record(root: Path, file: str, spec, **details) -> ArtifactRecord:
    path = root / file
    return ArtifactRecord(
        file,
        "onnx",
        spec.role,
        "fp32",
        [s.as_dict() for s in spec.inputs],
        [s.as_dict() for s in spec.outputs],
        size_bytes(path),
        sha256_path(path),
        details,
    )


def make_onnx_export(root: Path, model: EdgeSam, seed: int = 0) -> Path:
    """Encoder and decoder as fp32 ONNX (opset 17, dynamic point count) with a manifest of a seeded model."""
    root.mkdir(parents=True, exist_ok=True)
    image, decoder_args = example_inputs(Role.ENCODER)[0], example_inputs(Role.DECODER)
    with torch.no_grad():
        torch.onnx.export(
            EncoderGraph(model).eval(),
            (image,),
            root / "encoder.onnx",
            input_names=["image"],
            output_names=["image_embeddings"],
            opset_version=17,
            dynamo=False,
        )
        torch.onnx.export(
            DecoderGraph(model).eval(),
            decoder_args,
            root / "decoder.onnx",
            input_names=["image_embeddings", "point_coords", "point_labels"],
            output_names=["scores", "masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=17,
            dynamo=False,
        )
    manifest = Manifest(model=ModelSource("edgesam", "random", seed=seed).as_dict())
    manifest.add(
        [
            _record(root, "encoder.onnx", ENCODER),
            _record(root, "decoder.onnx", DECODER, scores="iou"),
        ]
    )
    manifest.save(root)
    return root


def subset_export(src: Path, dst: Path, files: list[str]) -> Path:
    """A copy of export directory ``src`` holding only ``files`` (and a manifest listing them)."""
    import shutil

    manifest = Manifest.load(src)
    dst.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy2(src / file, dst / file)
    Manifest(
        model=manifest.model,
        tools=manifest.tools,
        artifacts=[a for a in manifest.artifacts if a.file in files],
    ).save(dst)
    return dst
