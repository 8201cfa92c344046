"""Core ML export: ML programs ``coreml/{encoder,decoder}.<precision>.mlpackage``.

Encoder ``image`` [1,3,1024,1024] -> ``image_embeddings`` [1,256,64,64] (folded, bilinear);
decoder ``image_embeddings``, ``point_coords`` [1,N,2], ``point_labels`` [1,N] -> ``scores`` [1,4],
``masks`` [1,4,256,256] with N a RangeDim 1..max_points. fp16 programs keep in fp32 the op groups
(``coreml_checks.FP32_GROUPS``) where a measurement on a calibration photo finds fp16 overflow risk,
unless ``target_options["fp32_ops"]`` names them. Compressed variants start from the fp16 program.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import DeployError, first_line, require
from ..fileio import atomic_output, remove
from ..graphs import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, example_inputs
from ..manifest import PREPROCESSING, ArtifactRecord
from ..quantization.coreml_compress import (
    ACTIVATION_COMPRESSIONS, BITS_PER_WEIGHT, WEIGHT_COMPRESSIONS, check_activation_quantization_supported,
    compress_weights, quantize_activations,
)
from ..runtimes.coreml import check_compute_units
from .base import ExportContext, Exporter

MIN_IOS = (16, 17, 18)
LICENSE = "NTU S-Lab License 1.0 (weights)"
AUTHOR = "EdgeSAM weights: C. Zhou, X. Li, C. C. Loy, B. Dai (NTU S-Lab); converted by edgesam-deploy"
DESCRIPTIONS = {
    "image": "RGB image resized (long side 1024), normalized ((x - mean) / std, 0..255 scale), zero-padded, NCHW",
    "image_embeddings": "image embeddings from the EdgeSAM encoder, 1 x 256 x 64 x 64",
    "point_coords": "prompt points (x, y) in the 1024 x 1024 input frame, 1 x N x 2; without a box append (0, 0)",
    "point_labels": "1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding point; 1 x N",
    "scores": "one score per mask, 1 x 4 (IoU prediction or stability score)",
    "masks": "low-res mask logits 1 x 4 x 256 x 256 (token 0 is the single-mask output); threshold at 0 after upsampling",
}
SHORT = {
    "encoder": "EdgeSAM image encoder (RepViT-M1, re-parameterized, bilinear fusion)",
    "decoder": "EdgeSAM prompt encoder + mask decoder, N = 1..{n} points",
}


def _ios_target(ct: Any, min_ios: int) -> Any:
    if min_ios not in MIN_IOS:
        raise DeployError(f"--min-ios {min_ios}: Core ML export supports {', '.join(map(str, MIN_IOS))}")
    return getattr(ct.target, f"iOS{min_ios}")


def _save(mlmodel: Any, path: Path) -> None:
    """Save a package atomically (coremltools insists on the .mlpackage suffix, so stage beside it)."""
    with atomic_output(path) as tmp:
        staging = tmp.with_name(tmp.name + ".mlpackage")
        try:
            mlmodel.save(str(staging))
            os.replace(staging, tmp)
        finally:
            remove(staging)


class CoremlExporter(Exporter):
    target = "coreml"
    extra = "coreml"
    required_modules = ("coremltools",)
    precisions = ("fp16", "fp32", *WEIGHT_COMPRESSIONS, *ACTIVATION_COMPRESSIONS)
    default_precisions = ("fp16",)

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        ct = require("coremltools", "coreml")
        opts = ctx.options
        precisions = self.resolve_precisions(opts.precisions)
        for p in precisions:
            check_activation_quantization_supported(p)
        if "int8-full" in precisions and opts.min_ios < 17:
            raise DeployError("Core ML int8 activations need --min-ios 17 or later")
        ios = _ios_target(ct, opts.min_ios)
        units = check_compute_units(opts.compute_units)
        if not 1 <= opts.max_points <= 64:
            raise DeployError(f"--max-points {opts.max_points}: choose 1..64")
        images = ctx.calibration_images[:1]
        from ..quantization.calibration import decoder_calibration_feeds

        samples = {
            "encoder": [(torch.from_numpy(images[0]),)],
            "decoder": [
                tuple(torch.from_numpy(f[k]) for k in ("image_embeddings", "point_coords", "point_labels"))
                for f in decoder_calibration_feeds(ctx.encoder_graph, images)
            ],
        }
        records = []
        for role in ("encoder", "decoder"):
            records.extend(self._export_role(ctx, ct, role, precisions, ios, units, samples[role]))
        return records

    def _convert(self, ct: Any, ctx: ExportContext, role: str, traced: torch.jit.ScriptModule, ios: Any, fp32_ops: list[str] | None) -> Any:
        """Traced graph -> ML program; ``fp32_ops`` None: all fp32, else fp16 except those groups."""
        from ..coreml_checks import mil_op_selector

        if role == "encoder":
            inputs = [ct.TensorType(name="image", shape=ENCODER_INPUTS[0].shape, dtype=np.float32)]
            outputs = [ct.TensorType(name=s.name) for s in ENCODER_OUTPUTS]
        else:
            n = ct.RangeDim(lower_bound=1, upper_bound=ctx.options.max_points, default=2, symbol="N")
            inputs = [
                ct.TensorType(name="image_embeddings", shape=DECODER_INPUTS[0].shape, dtype=np.float32),
                ct.TensorType(name="point_coords", shape=(1, n, 2), dtype=np.float32),
                ct.TensorType(name="point_labels", shape=(1, n), dtype=np.float32),
            ]
            outputs = [ct.TensorType(name=s.name) for s in DECODER_OUTPUTS]
        precision = ct.precision.FLOAT32 if fp32_ops is None else ct.transform.FP16ComputePrecision(op_selector=mil_op_selector(fp32_ops))
        try:
            return ct.convert(
                traced, inputs=inputs, outputs=outputs, convert_to="mlprogram", compute_precision=precision,
                minimum_deployment_target=ios, skip_model_load=True,
            )
        except Exception as exc:  # the converter raises plain exceptions
            raise DeployError(f"Core ML conversion of the {role} failed: {first_line(exc, 300)}") from exc

    def _export_role(
        self, ctx: ExportContext, ct: Any, role: str, precisions: list[str], ios: Any, units: str, samples: list[tuple[torch.Tensor, ...]]
    ) -> list[ArtifactRecord]:
        from ..coreml_checks import activation_report, check_package, validate_groups

        opts = ctx.options
        graph = ctx.encoder_graph if role == "encoder" else ctx.decoder_graph
        example = example_inputs()[0 if role == "encoder" else 1]
        ctx.progress(f"coreml: tracing the {role}")
        with torch.no_grad():
            traced = torch.jit.trace(graph, example, check_trace=False)
        fp16_based = [p for p in precisions if p != "fp32"]
        measured: dict[str, Any] = {}
        fp32_ops: list[str] = []
        if fp16_based:
            ctx.progress(f"coreml: measuring fp16 activations of the {role}")
            requested = opts.target_options.get("fp32_ops", "auto")
            report = activation_report(graph, samples, None if requested == "auto" else validate_groups(requested))
            fp32_ops, measured = report.fp32_ops, report.as_dict()
        base: dict[str, Any] = {}
        records = []
        for precision in precisions:
            ctx.progress(f"coreml: {role} {precision}")
            if precision == "fp32":
                mlmodel = self._convert(ct, ctx, role, traced, ios, None)
            else:
                if "fp16" not in base:
                    base["fp16"] = self._convert(ct, ctx, role, traced, ios, fp32_ops)
                mlmodel = base["fp16"]
                if precision in WEIGHT_COMPRESSIONS:
                    mlmodel = compress_weights(mlmodel, precision)
                elif precision in ACTIVATION_COMPRESSIONS:
                    mlmodel = quantize_activations(mlmodel, self._sample_data(role, samples))
            self._set_metadata(mlmodel, ctx, role, precision, units, fp32_ops if precision != "fp32" else [])
            path = ctx.out_dir / "coreml" / f"{role}.{precision}.mlpackage"
            _save(mlmodel, path)
            check = check_package(path, role, opts.max_points)
            if check["problems"]:
                raise DeployError(f"{path}: " + "; ".join(check["problems"]))
            details: dict[str, Any] = {
                "format": "mlprogram",
                "min_ios": opts.min_ios,
                "compute_units": units,
                "fp32_ops": fp32_ops if precision != "fp32" else [],
                "fp32_ops_choice": opts.target_options.get("fp32_ops", "auto"),
                "op_census": check["census"],
                "input_ranges": {f["name"]: f["range"] for f in check["io"]["inputs"]},
                "folded_encoder": role == "encoder",
                "upsampling": "bilinear",
            }
            if role == "decoder":
                details["max_points"] = opts.max_points
            if precision != "fp32":
                details["fp16_activations"] = measured
            records.append(self.make_record(
                ctx, path, role, precision,
                ENCODER_INPUTS if role == "encoder" else DECODER_INPUTS,
                ENCODER_OUTPUTS if role == "encoder" else DECODER_OUTPUTS,
                **details,
            ))
        self._add_compression_details(ctx, records, samples)
        return records

    @staticmethod
    def _sample_data(role: str, samples: list[tuple[torch.Tensor, ...]]) -> list[dict[str, np.ndarray]]:
        names = ("image",) if role == "encoder" else ("image_embeddings", "point_coords", "point_labels")
        return [{n: t.numpy() for n, t in zip(names, s)} for s in samples]

    def _add_compression_details(self, ctx: ExportContext, records: list[ArtifactRecord], samples: list[tuple[torch.Tensor, ...]]) -> None:
        """Size against fp16 (when exported too) and the emulated cost on the calibration sample:
        embedding cosine / low-res mask IoU against the fp32 graph, beside the fp16 figure."""
        by_precision = {r.precision: r for r in records}
        compressed = [r for r in records if r.precision in BITS_PER_WEIGHT]
        if not compressed:
            return
        costs = {p: self._emulated_cost(ctx, by_precision[p], samples) for p in ["fp16", *[r.precision for r in compressed]] if p in by_precision}
        fp16 = by_precision.get("fp16")
        for r in compressed:
            info: dict[str, Any] = {"bits_per_weight": BITS_PER_WEIGHT[r.precision], "emulated_cost": costs[r.precision]}
            if fp16 is not None:
                info["fp16_size_bytes"] = fp16.size_bytes
                info["size_vs_fp16"] = r.size_bytes / fp16.size_bytes
                info["fp16_emulated"] = costs["fp16"]
            r.details["compression"] = info

    @staticmethod
    def _emulated_cost(ctx: ExportContext, record: ArtifactRecord, samples: list[tuple[torch.Tensor, ...]]) -> dict[str, float]:
        from ..parity import metrics as M
        from ..runtimes.coreml import CoremlEmulationSession

        session = CoremlEmulationSession(record, ctx.out_dir / record.file, ctx.model)
        graph = ctx.encoder_graph if record.role == "encoder" else ctx.decoder_graph
        data = CoremlExporter._sample_data(record.role, samples)
        cos, ious = [], []
        with torch.no_grad():
            for feed, args in zip(data, samples):
                out = session.run(feed)
                if record.role == "encoder":
                    cos.append(M.cosine(graph(*args).numpy(), out["image_embeddings"]))
                else:
                    ref = graph(*args)[1].numpy() > 0
                    ious.extend(M.mask_iou(ref[0], out["masks"][0] > 0)[0].tolist())
        if record.role == "encoder":
            return {"emb_cosine_min": float(np.min(cos)), "samples": len(cos)}
        return {"lowres_mask_iou_mean": float(np.mean(ious)), "lowres_mask_iou_min": float(np.min(ious)), "samples": len(data)}

    @staticmethod
    def _set_metadata(mlmodel: Any, ctx: ExportContext, role: str, precision: str, units: str, fp32_ops: list[str]) -> None:
        """What Xcode shows: author, license, description, per-feature descriptions, and
        user-defined entries (precision, compute units, preprocessing constants)."""
        mlmodel.author = AUTHOR
        mlmodel.license = LICENSE
        mlmodel.version = __version__
        mlmodel.short_description = f"{SHORT[role].format(n=ctx.options.max_points)}; {precision}"
        specs = (ENCODER_INPUTS, ENCODER_OUTPUTS) if role == "encoder" else (DECODER_INPUTS, DECODER_OUTPUTS)
        for s in specs[0]:
            mlmodel.input_description[s.name] = DESCRIPTIONS[s.name]
        for s in specs[1]:
            mlmodel.output_description[s.name] = DESCRIPTIONS[s.name]
        meta = {
            "edgesam.role": role,
            "edgesam.precision": precision,
            "edgesam.compute_units": units,
            "edgesam.min_ios": str(ctx.options.min_ios),
            "edgesam.fp32_ops": ",".join(fp32_ops),
            "edgesam.model": json.dumps(ctx.source.as_dict(), sort_keys=True),
            "edgesam.pixel_mean": ",".join(f"{v:g}" for v in PREPROCESSING["pixel_mean"]),
            "edgesam.pixel_std": ",".join(f"{v:g}" for v in PREPROCESSING["pixel_std"]),
            "edgesam.preprocessing": json.dumps(PREPROCESSING),
        }
        if role == "decoder":
            meta["edgesam.scores"] = ctx.options.scores
            meta["edgesam.max_points"] = str(ctx.options.max_points)
        mlmodel.user_defined_metadata.update(meta)
