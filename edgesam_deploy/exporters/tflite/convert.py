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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import DeployError
from ...fileio import atomic_output
from ...graphs import DecoderGraph, EncoderGraph, example_inputs, rewrite_details
from ...manifest import ArtifactRecord, package_versions
from ...modeling.decoder_fast import AttentionForm
from ...quantization.tflite_quant import (
    FULL_INT8_FLOAT_KEPT,
    decoder_calibration,
    quantize_model,
    recipe_for,
)
from ...runtimes.litert import encoder_outputs
from ...vocabulary import DECODER, GraphSpec, Precision, Role, Target, graph_spec
from ..base import ExportContext, Exporter
from .inspection import TfliteSummary, require_no_flex
from .options import TfliteOptions
from .search import searched_int8_full_encoder

ENCODER_SIGNATURE = "encoder"
DECODER_SIGNATURE = "decoder_n{n}"
CONVERTER = "litert-torch"
# the rewritten decoder's attention form: input space for few points, chosen per signature
DECODER_ATTENTION = AttentionForm.AUTO
# int8 decoders are quantized from the reference graph: their recipes (quantization/tflite_quant.py)
# select ops by the reference's module names (TwoWayAttentionBlock) and were measured on it
REFERENCE = "reference graph (int8 recipes were chosen on it; docs/decoder-speed.md)"
_VERSIONED = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torch")


def decoder_signature(n: int) -> str:
    """Signature key of the decoder that takes exactly ``n`` points."""
    return DECODER_SIGNATURE.format(n=n)


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

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor | None = None,
        has_mask_input: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        scores, masks = self.net(
            image_embeddings, point_coords, point_labels, mask_input, has_mask_input
        )
        return {"scores": scores, "masks": masks}


@contextmanager
def quiet_converter() -> Iterator[None]:
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

    (image,) = example_inputs(Role.ENCODER)
    module = _NamedEncoder(graph).eval()
    with quiet_converter():
        converter = litert_torch.Converter().signature(
            ENCODER_SIGNATURE, module, sample_kwargs={"image": image}
        )
        return converter.convert().model_content()


def convert_decoder(graph: DecoderGraph, counts: list[int], spec: GraphSpec = DECODER) -> bytes:
    """fp32 flatbuffer of the decoder, one signature ``decoder_n<N>`` per N in ``counts`` (shared weights)."""
    import litert_torch

    module = _NamedDecoder(graph).eval()
    converter = litert_torch.Converter()
    mask_input = len(spec.inputs) > len(DECODER.inputs)
    for n in counts:
        sample = dict(zip(spec.input_names, example_inputs(Role.DECODER, n, mask_input)))
        converter.signature(decoder_signature(n), module, sample_kwargs=sample)
    with quiet_converter():
        return converter.convert().model_content()


class TfliteExporter(Exporter):
    """Encoder and decoder as LiteRT flatbuffers in fp32, fp16 weights, dynamic-range int8 and full int8."""

    target = Target.TFLITE
    extra = "tflite"
    required_modules = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_FULL)
    default_precisions = (Precision.FP32, Precision.FP16)  # int8 on request (docs/tflite.md)
    options_class = TfliteOptions
    aliases = {"int8": Precision.INT8_DYNAMIC}  # the more accurate int8 here (docs/tflite.md)

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        opts: TfliteOptions = self.options(ctx)
        precisions = self.resolve_precisions(opts.precisions)
        if opts.min_iou is not None and Precision.INT8_FULL not in precisions:
            raise DeployError("--min-iou chooses the float blocks of int8-full: request it")
        base = {"converter": CONVERTER, "versions": package_versions(_VERSIONED), "layout": "NCHW"}
        encoders = self._encoders(ctx, precisions, base, opts)
        return encoders + self._decoders(ctx, opts, precisions, base)

    def _encoders(
        self,
        ctx: ExportContext,
        precisions: list[Precision],
        base: dict[str, Any],
        opts: TfliteOptions,
    ) -> list[ArtifactRecord]:
        """``tflite/encoder.<precision>.tflite``; int8 ones from the best-equalized encoder, the
        int8-full one with ``opts.min_iou`` from the mixed-precision search (``search.py``)."""
        records = []
        converted: dict[
            float, bytes
        ] = {}  # equalized encoders by alpha, shared by the int8 variants
        ctx.progress("tflite: converting the encoder (litert-torch)")
        encoder = convert_encoder(ctx.encoder_graph)
        spec = graph_spec(Role.ENCODER)
        signature = {"inputs": list(spec.input_names), "outputs": list(spec.output_names)}
        for precision in precisions:
            details = {**base, "signatures": {ENCODER_SIGNATURE: signature}}
            if precision.is_float:
                data = self._quantize(ctx, Role.ENCODER, precision, encoder, None, details)
            else:
                data, details["equalization"] = self.equalized_int8_encoder(
                    ctx, precision, converted
                )
                images = len(ctx.calibration_images)
                details.update(self._quantization_details(ctx, Role.ENCODER, precision, images))
                if precision == Precision.INT8_FULL and opts.min_iou is not None:
                    source = converted[details["equalization"]["alpha"]]
                    data, found = searched_int8_full_encoder(ctx, source, opts)
                    details["quantization"]["recipe"] = found["recipe"]
                    details["mixed_precision"] = found["mixed_precision"]
            records.append(self._write(ctx, Role.ENCODER, precision, data, details))
        return records

    def _decoders(
        self,
        ctx: ExportContext,
        opts: TfliteOptions,
        precisions: list[Precision],
        base: dict[str, Any],
    ) -> list[ArtifactRecord]:
        """``tflite/decoder.<precision>.tflite`` with one signature per point count."""
        counts = list(opts.point_counts)
        signatures = {n: decoder_signature(n) for n in counts}
        spec = ctx.spec(Role.DECODER)
        io = {"inputs": list(spec.input_names), "outputs": list(spec.output_names)}
        ctx.progress(
            f"tflite: converting the decoder, {len(counts)} signature(s) N = "
            f"{counts[0]}..{counts[-1]}"
        )
        sources = self._decoder_sources(ctx, counts, spec, precisions)
        records = []
        for precision in precisions:
            rewritten = precision.is_float
            calibration = None
            if precision == Precision.INT8_FULL:
                calibration = decoder_calibration(ctx.calibration_decoder_feeds, signatures)
            details = {
                **base,
                "point_counts": counts,
                "num_points": counts[-1],
                "point_padding": "none: one exact signature per N; pad nothing, pick decoder_n<N>",
                "signatures": {key: io for key in signatures.values()},
                "decoder_graph": rewrite_details(DECODER_ATTENTION) if rewritten else REFERENCE,
            }
            decoder = sources[rewritten]
            data = self._quantize(ctx, Role.DECODER, precision, decoder, calibration, details)
            records.append(self._write(ctx, Role.DECODER, precision, data, details))
        return records

    @staticmethod
    def _decoder_sources(
        ctx: ExportContext, counts: list[int], spec: GraphSpec, precisions: list[Precision]
    ) -> dict[bool, bytes]:
        """fp32 flatbuffers of the decoder, rewritten (True: for the float variants) and the
        reference (False: for the int8 ones), each converted only if a variant needs it."""
        out = {}
        for rewritten in sorted({p.is_float for p in precisions}, reverse=True):
            graph = ctx.graph(Role.DECODER, DECODER_ATTENTION if rewritten else None)
            out[rewritten] = convert_decoder(graph, counts, spec)
        return out

    @staticmethod
    def equalized_int8_encoder(
        ctx: ExportContext,
        precision: Precision,
        converted: dict[float, bytes],
        alphas: tuple[float, ...] | None = None,
    ) -> tuple[bytes, dict[str, Any]]:
        """The int8 encoder quantized from the equalized encoder (strength among ``alphas``, default
        the search's) whose output stays closest to the float encoder on the calibration images;
        ``converted`` caches one fp32 conversion per strength."""
        calibration = None
        if precision == Precision.INT8_FULL:
            calibration = {ENCODER_SIGNATURE: [{"image": x} for x in ctx.calibration_images]}

        def build(graph: EncoderGraph, alpha: float) -> bytes:
            if alpha not in converted:
                ctx.progress(f"tflite: converting the encoder equalized with alpha {alpha}")
                converted[alpha] = convert_encoder(graph)
            ctx.progress(f"tflite: encoder {precision}, alpha {alpha}")
            return quantize_model(
                converted[alpha], recipe_for(precision, Role.ENCODER), calibration
            )

        return ctx.best_equalized(build, encoder_outputs, alphas)

    @staticmethod
    def _quantize(
        ctx: ExportContext,
        role: Role,
        precision: Precision,
        fp32: bytes,
        calibration: dict[str, list[dict]] | None,
        details: dict[str, Any],
    ) -> bytes:
        """``fp32`` quantized to ``precision`` (unless fp32); what was done goes into ``details``."""
        if precision == Precision.FP32:
            return fp32
        feeds = len(next(iter(calibration.values()))) if calibration else 0
        details.update(TfliteExporter._quantization_details(ctx, role, precision, feeds))
        return quantize_model(fp32, recipe_for(precision, role), calibration)

    @staticmethod
    def _quantization_details(
        ctx: ExportContext, role: Role, precision: Precision, feeds_per_signature: int
    ) -> dict[str, Any]:
        details: dict[str, Any] = {
            "tool": "ai-edge-quantizer",
            "recipe": recipe_for(precision, role),
        }
        if precision == Precision.INT8_FULL:
            details["float_kept"] = FULL_INT8_FLOAT_KEPT[role].as_dict()
            source = ctx.calibration_source()
            details["calibration"] = {**source, "feeds_per_signature": feeds_per_signature}
        return {"quantization": details}

    def _write(
        self,
        ctx: ExportContext,
        role: Role,
        precision: Precision,
        data: bytes,
        details: dict[str, Any],
    ) -> ArtifactRecord:
        """Write atomically, refuse Flex/custom ops, and describe the file."""
        path = Path(ctx.out_dir) / "tflite" / f"{ctx.stem(role)}.{precision}.tflite"
        ctx.progress(f"tflite: {path.name}")
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
            summary = require_no_flex(tmp)
        return self.make_record(ctx, path, role, precision, **details, **_graph_facts(summary))


def _graph_facts(summary: TfliteSummary) -> dict[str, Any]:
    """Op statistics of a written flatbuffer for the manifest."""
    return {
        "ops": summary.num_ops,
        "op_counts": dict(summary.op_counts_first.most_common()),
        "flex_ops": summary.flex_ops,
        "int8_tensors": summary.tensor_types.get("INT8", 0),
        "input_types": sorted(set(summary.input_types.values())),
    }
