"""TFLite (LiteRT) export for Android: litert-torch (torch.export) -> fp32 flatbuffer -> AEQ variants.

Files: ``tflite/encoder.<precision>.tflite`` (signature ``encoder``: ``image`` [1, 3, 1024, 1024]
-> ``image_embeddings`` [1, 256, 64, 64]) and ``tflite/decoder.<precision>.tflite`` with one
signature per point count N (``decoder_n<N>``: ``image_embeddings`` [1, 256, 64, 64],
``point_coords`` [1, N, 2], ``point_labels`` [1, N] -> ``scores`` [1, 4], ``masks`` [1, 4, 256, 256]).

litert-torch cannot lower a dynamic N, and padding a prompt with label -1 points is not neutral (the
padding tokens take part in the two-way attention), so every N gets its own exact signature; all
signatures share one copy of the weights. See docs/tflite.md for the measurements behind this.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ..errors import DeployError
from ..fileio import atomic_output
from ..graphs import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, DecoderGraph, EncoderGraph, example_inputs
from ..manifest import ArtifactRecord, package_versions
from ..runtimes.litert import encoder_outputs
from ..quantization.tflite_quant import FULL_INT8_FLOAT_KEPT, decoder_calibration, quantize_model, recipe_for
from ..tflite_inspect import TfliteSummary, require_no_flex
from .base import ExportContext, Exporter

ENCODER_SIGNATURE = "encoder"
DECODER_SIGNATURE = "decoder_n{n}"
CONVERTER = "litert-torch"
_VERSIONED = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torch")


def decoder_signature(n: int) -> str:
    """Signature key of the decoder that takes exactly ``n`` points."""
    return DECODER_SIGNATURE.format(n=n)


def point_counts(num_points: int, target_options: dict[str, Any]) -> list[int]:
    """The decoder's point counts: ``target_options['point_counts']`` if given, else 1..num_points."""
    counts = target_options.get("point_counts") or range(1, num_points + 1)
    try:
        out = sorted({int(n) for n in counts})
    except (TypeError, ValueError) as exc:
        raise DeployError(f"tflite point_counts must be whole numbers, got {counts!r}") from exc
    if not out or out[0] < 1 or out[-1] > 64:
        raise DeployError(f"tflite point counts must lie in 1..64, got {out or 'none'}")
    return out


class _NamedEncoder(nn.Module):
    """Returns a dict so the converter names the output ``image_embeddings``."""

    def __init__(self, graph: EncoderGraph) -> None:
        super().__init__()
        self.net = graph

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_embeddings": self.net(image)}


class _NamedDecoder(nn.Module):
    """Returns a dict so the converter names the outputs ``scores`` and ``masks``."""

    def __init__(self, graph: DecoderGraph) -> None:
        super().__init__()
        self.net = graph

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        scores, masks = self.net(image_embeddings, point_coords, point_labels)
        return {"scores": scores, "masks": masks}


@contextmanager
def _quiet_converter() -> Iterator[None]:
    """Silence litert-torch's progress printing for the duration of a conversion."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    old = os.environ.get(key)
    os.environ[key] = "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old



def convert_encoder(graph: EncoderGraph) -> bytes:
    """fp32 flatbuffer of the encoder, one signature ``encoder``."""
    import litert_torch

    (image,), _ = example_inputs()
    with _quiet_converter():
        model = litert_torch.Converter().signature(ENCODER_SIGNATURE, _NamedEncoder(graph).eval(), sample_kwargs={"image": image}).convert()
        return model.model_content()


def convert_decoder(graph: DecoderGraph, counts: list[int]) -> bytes:
    """fp32 flatbuffer of the decoder, one signature ``decoder_n<N>`` per N in ``counts`` (shared weights)."""
    import litert_torch

    module = _NamedDecoder(graph).eval()
    converter = litert_torch.Converter()
    for n in counts:
        _, (emb, coords, labels) = example_inputs(n)
        converter.signature(decoder_signature(n), module, sample_kwargs={"image_embeddings": emb, "point_coords": coords, "point_labels": labels})
    with _quiet_converter():
        return converter.convert().model_content()


class TfliteExporter(Exporter):
    """Encoder and decoder as LiteRT flatbuffers in fp32, fp16 weights, dynamic-range int8 and full int8."""

    target = "tflite"
    extra = "tflite"
    required_modules = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    precisions = ("fp32", "fp16", "int8-dynamic", "int8-full")
    # int8 on request only: no faster than fp32 in the LiteRT interpreter here (int8-dynamic 0.68x,
    # int8-full 0.92x) and below the int8 gate's minimum mask IoU on the seeded weights (docs/tflite.md)
    default_precisions = ("fp32", "fp16")

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        precisions = self.resolve_precisions(ctx.options.precisions)
        counts = point_counts(ctx.options.num_points, ctx.options.target_options)
        signatures = {n: decoder_signature(n) for n in counts}
        base = {"converter": CONVERTER, "versions": package_versions(_VERSIONED), "layout": "NCHW"}
        records: list[ArtifactRecord] = []
        converted: dict[float, bytes] = {}  # equalized encoders by alpha, shared by the int8 variants

        ctx.progress("tflite: converting the encoder (litert-torch)")
        encoder = convert_encoder(ctx.encoder_graph)
        for precision in precisions:
            details = {**base, "signatures": {ENCODER_SIGNATURE: {"inputs": ["image"], "outputs": ["image_embeddings"]}}}
            if precision.startswith("int8"):
                data, details["equalization"] = self._equalized_int8_encoder(ctx, precision, converted)
                details.update(self._quantization_details(ctx, "encoder", precision, len(ctx.calibration_images)))
            else:
                data = self._quantize(ctx, "encoder", precision, encoder, None, details)
            records.append(self._write(ctx, "encoder", precision, data, details))

        ctx.progress(f"tflite: converting the decoder, {len(counts)} signature(s) N = {counts[0]}..{counts[-1]}")
        decoder = convert_decoder(ctx.decoder_graph, counts)
        for precision in precisions:
            calibration = decoder_calibration(ctx.calibration_decoder_feeds, signatures) if precision == "int8-full" else None
            details = {
                **base,
                "point_counts": counts,
                "num_points": counts[-1],
                "point_padding": "none: one exact signature per N; pad nothing, pick decoder_n<N>",
                "signatures": {key: {"inputs": [s.name for s in DECODER_INPUTS], "outputs": [s.name for s in DECODER_OUTPUTS]} for key in signatures.values()},
            }
            records.append(self._write(ctx, "decoder", precision, self._quantize(ctx, "decoder", precision, decoder, calibration, details), details))
        return records

    @staticmethod
    def _equalized_int8_encoder(ctx: ExportContext, precision: str, converted: dict[float, bytes]) -> tuple[bytes, dict[str, Any]]:
        """The int8 encoder quantized from the equalized encoder whose output stays closest to the
        float encoder on the calibration images; ``converted`` caches one conversion per strength."""
        calibration = {ENCODER_SIGNATURE: [{"image": x} for x in ctx.calibration_images]} if precision == "int8-full" else None

        def build(graph: EncoderGraph, alpha: float) -> bytes:
            if alpha not in converted:
                ctx.progress(f"tflite: converting the encoder equalized with alpha {alpha}")
                converted[alpha] = convert_encoder(graph)
            ctx.progress(f"tflite: encoder {precision}, alpha {alpha}")
            return quantize_model(converted[alpha], recipe_for(precision, "encoder"), calibration)

        return ctx.best_equalized(build, encoder_outputs)

    @staticmethod
    def _quantize(ctx: ExportContext, role: str, precision: str, fp32: bytes,
                  calibration: dict[str, list[dict]] | None, details: dict[str, Any]) -> bytes:
        """``fp32`` quantized to ``precision`` (unless fp32); what was done goes into ``details``."""
        if precision == "fp32":
            return fp32
        details.update(TfliteExporter._quantization_details(ctx, role, precision, len(next(iter(calibration.values()))) if calibration else 0))
        return quantize_model(fp32, recipe_for(precision, role), calibration)

    @staticmethod
    def _quantization_details(ctx: ExportContext, role: str, precision: str, feeds_per_signature: int) -> dict[str, Any]:
        details: dict[str, Any] = {"tool": "ai-edge-quantizer", "recipe": recipe_for(precision, role)}
        if precision == "int8-full":
            details["float_kept"] = FULL_INT8_FLOAT_KEPT[role].as_dict()
            details["calibration"] = {
                "images": len(ctx.calibration_images),
                "source": str(ctx.options.calibration_dir) if ctx.options.calibration_dir else "scikit-image sample photos",
                "feeds_per_signature": feeds_per_signature,
            }
        return {"quantization": details}

    def _write(self, ctx: ExportContext, role: str, precision: str, data: bytes, details: dict[str, Any]) -> ArtifactRecord:
        """Write atomically, refuse Flex/custom ops, and describe the file."""
        path = Path(ctx.out_dir) / "tflite" / f"{role}.{precision}.tflite"
        ctx.progress(f"tflite: {path.name}")
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
            summary = require_no_flex(tmp)
        inputs, outputs = (ENCODER_INPUTS, ENCODER_OUTPUTS) if role == "encoder" else (DECODER_INPUTS, DECODER_OUTPUTS)
        return self.make_record(ctx, path, role, precision, inputs, outputs, **details, **_graph_facts(summary))


def _graph_facts(summary: TfliteSummary) -> dict[str, Any]:
    """Op statistics of a written flatbuffer for the manifest."""
    return {
        "ops": summary.num_ops,
        "op_counts": dict(summary.op_counts_first.most_common()),
        "flex_ops": summary.flex_ops,
        "int8_tensors": summary.tensor_types.get("INT8", 0),
        "input_types": sorted(set(summary.input_types.values())),
    }
