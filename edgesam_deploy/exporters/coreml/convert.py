"""Core ML export: ML programs ``coreml/{encoder,decoder}.<precision>.mlpackage``.

Encoder ``image`` [1,3,1024,1024] -> ``image_embeddings`` [1,256,64,64] (folded, bilinear);
decoder ``image_embeddings``, ``point_coords`` [1,N,2], ``point_labels`` [1,N] -> ``scores`` [1,4],
``masks`` [1,4,256,256] with N a RangeDim 1..max_points. fp16 programs keep in fp32 the op groups
(``runtimes.coreml_fp16.FP32_GROUPS``) where a measurement on a calibration photo finds fp16 overflow
risk, unless ``CoremlOptions.fp32_ops`` names them. Compressed variants start from the fp16 program.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ...errors import DeployError, first_line, require
from ...fileio import atomic_output, remove
from ...graphs import example_inputs
from ...manifest import PREPROCESSING, ArtifactRecord
from ...quantization.coreml_compress import (
    ACTIVATION_COMPRESSIONS,
    BITS_PER_WEIGHT,
    WEIGHT_COMPRESSIONS,
    check_activation_quantization_supported,
    compress_weights,
    quantize_activations,
)
from ...vocabulary import GraphSpec, Precision, Role, Target
from ..base import ExportContext, Exporter
from .checks import check_package
from .options import FP32_OPS_AUTO, CoremlOptions

LICENSE = "NTU S-Lab License 1.0 (weights)"
AUTHOR = (
    "EdgeSAM weights: C. Zhou, X. Li, C. C. Loy, B. Dai (NTU S-Lab); converted by edgesam-deploy"
)
DESCRIPTIONS = {
    "image": "RGB image resized (long side 1024), normalized ((x - mean) / std, 0..255 scale), zero-padded, NCHW",
    "image_embeddings": "image embeddings from the EdgeSAM encoder, 1 x 256 x 64 x 64",
    "point_coords": "prompt points (x, y) in the 1024 x 1024 input frame, 1 x N x 2; without a box append (0, 0)",
    "point_labels": "1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding point; 1 x N",
    "mask_input": "low-res logits of a previous prediction, 1 x 1 x 256 x 256 (refinement)",
    "has_mask_input": "1 to use mask_input, 0 to ignore it; shape 1",
    "scores": "one score per mask, 1 x 4 (IoU prediction or stability score)",
    "masks": "low-res mask logits 1 x 4 x 256 x 256 (token 0 is the single-mask output); "
    "threshold at 0 after upsampling",
}
SHORT = {
    Role.ENCODER: "EdgeSAM image encoder (RepViT-M1, re-parameterized, bilinear fusion)",
    Role.DECODER: "EdgeSAM prompt encoder + mask decoder, N = 1..{n} points",
}


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
    target = Target.COREML
    extra = "coreml"
    required_modules = ("coremltools",)
    precisions = (Precision.FP16, Precision.FP32, *WEIGHT_COMPRESSIONS, *ACTIVATION_COMPRESSIONS)
    default_precisions = (Precision.FP16,)
    options_class = CoremlOptions
    aliases = {"int8": Precision.INT8_WEIGHT}  # runs everywhere; int8-full needs macOS to export

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        ct = require("coremltools", "coreml")
        opts: CoremlOptions = self.options(ctx)
        precisions = self.resolve_precisions(opts.precisions)
        for p in precisions:
            check_activation_quantization_supported(p)
        if Precision.INT8_FULL in precisions and opts.min_ios < 17:
            raise DeployError("Core ML int8 activations need --min-ios 17 or later")
        ctx.progress("coreml: preparing the calibration samples")
        images = ctx.calibration_images[:1]
        names = ctx.spec(Role.DECODER).input_names
        samples = {
            Role.ENCODER: [(torch.from_numpy(images[0]),)],
            Role.DECODER: [
                tuple(torch.from_numpy(f[k]) for k in names)
                for f in ctx.calibration_decoder_feeds[: len(images) * 5]
            ],
        }
        records = []
        for role in Role:
            records.extend(self._export_role(ctx, ct, opts, role, precisions, samples[role]))
        return records

    @staticmethod
    def _tensor_types(ct: Any, spec: GraphSpec, max_points: int) -> tuple[list[Any], list[Any]]:
        """coremltools input and output types of ``spec``'s graph (N a RangeDim 1..max_points)."""
        n = ct.RangeDim(lower_bound=1, upper_bound=max_points, default=2, symbol="N")
        inputs = [
            ct.TensorType(
                name=s.name, shape=tuple(n if d is None else d for d in s.shape), dtype=np.float32
            )
            for s in spec.inputs
        ]
        return inputs, [ct.TensorType(name=name) for name in spec.output_names]

    def _convert(
        self, ct: Any, opts: CoremlOptions, spec: GraphSpec, traced: Any, fp32_ops: list[str] | None
    ) -> Any:
        """Traced graph -> ML program; ``fp32_ops`` None: all fp32, else fp16 except those groups."""
        from ...runtimes.coreml_fp16 import mil_op_selector

        inputs, outputs = self._tensor_types(ct, spec, opts.max_points)
        if fp32_ops is None:
            precision = ct.precision.FLOAT32
        else:
            precision = ct.transform.FP16ComputePrecision(op_selector=mil_op_selector(fp32_ops))
        ios = getattr(ct.target, f"iOS{opts.min_ios}")
        try:
            return ct.convert(
                traced,
                inputs=inputs,
                outputs=outputs,
                convert_to="mlprogram",
                compute_precision=precision,
                minimum_deployment_target=ios,
                skip_model_load=True,
            )
        except Exception as exc:  # the converter raises plain exceptions
            raise DeployError(
                f"Core ML conversion of the {spec.role} failed: {first_line(exc, 300)}"
            ) from exc

    def _export_role(
        self,
        ctx: ExportContext,
        ct: Any,
        opts: CoremlOptions,
        role: Role,
        precisions: list[Precision],
        samples: list[tuple[torch.Tensor, ...]],
    ) -> list[ArtifactRecord]:
        """Every precision of ``role``: convert, save, check the package back, describe it."""
        from ...runtimes.coreml_fp16 import activation_report, validate_groups

        graph = ctx.graph(role)
        ctx.progress(f"coreml: tracing the {role}")
        with torch.no_grad():
            example = example_inputs(role, mask_input=ctx.options.mask_input)
            traced = torch.jit.trace(graph, example, check_trace=False)
        measured: dict[str, Any] = {}
        fp32_ops: list[str] = []
        if any(p != Precision.FP32 for p in precisions):
            ctx.progress(f"coreml: measuring fp16 activations of the {role}")
            chosen = None if opts.fp32_ops == FP32_OPS_AUTO else validate_groups(opts.fp32_ops)
            report = activation_report(graph, samples, chosen)
            fp32_ops, measured = report.fp32_ops, report.as_dict()
        fp16: list[Any] = []  # the fp16 program, converted once, the base of every compressed one
        records = []
        for precision in precisions:
            ctx.progress(f"coreml: {role} {precision}")
            if precision == Precision.FP32:
                mlmodel = self._convert(ct, opts, ctx.spec(role), traced, None)
            else:
                fp16 = fp16 or [self._convert(ct, opts, ctx.spec(role), traced, fp32_ops)]
                mlmodel = self._compressed(fp16[0], ctx.spec(role), precision, samples)
            kept = fp32_ops if precision != Precision.FP32 else []
            self._set_metadata(mlmodel, ctx, opts, role, precision, kept)
            path = ctx.out_dir / "coreml" / f"{ctx.stem(role)}.{precision}.mlpackage"
            _save(mlmodel, path)
            details = self._details(path, opts, ctx.spec(role), kept)
            if precision != Precision.FP32:
                details["fp16_activations"] = measured
            records.append(self.make_record(ctx, path, role, precision, **details))
        self._add_compression_details(ctx, records, samples)
        return records

    def _compressed(
        self,
        fp16: Any,
        spec: GraphSpec,
        precision: Precision,
        samples: list[tuple[torch.Tensor, ...]],
    ) -> Any:
        """The fp16 program, or its weight-compressed / activation-quantized variant."""
        if precision in WEIGHT_COMPRESSIONS:
            return compress_weights(fp16, precision)
        if precision in ACTIVATION_COMPRESSIONS:
            return quantize_activations(fp16, self._sample_data(spec, samples))
        return fp16

    @staticmethod
    def _details(
        path: Path, opts: CoremlOptions, spec: GraphSpec, fp32_ops: list[str]
    ) -> dict[str, Any]:
        """Check a saved package back (DeployError listing its problems) and describe it."""
        role = spec.role
        check = check_package(path, spec, opts.max_points)
        if check["problems"]:
            raise DeployError(f"{path}: " + "; ".join(check["problems"]))
        details: dict[str, Any] = {
            "format": "mlprogram",
            "min_ios": opts.min_ios,
            "compute_units": opts.compute_units,
            "fp32_ops": fp32_ops,
            "fp32_ops_choice": opts.fp32_ops,
            "op_census": check["census"],
            "input_ranges": {f["name"]: f["range"] for f in check["io"]["inputs"]},
            "folded_encoder": role == Role.ENCODER,
            "upsampling": "bilinear",
        }
        if role == Role.DECODER:
            details["max_points"] = opts.max_points
        return details

    @staticmethod
    def _sample_data(
        spec: GraphSpec, samples: list[tuple[torch.Tensor, ...]]
    ) -> list[dict[str, np.ndarray]]:
        names = spec.input_names
        return [{n: t.numpy() for n, t in zip(names, s)} for s in samples]

    def _add_compression_details(
        self,
        ctx: ExportContext,
        records: list[ArtifactRecord],
        samples: list[tuple[torch.Tensor, ...]],
    ) -> None:
        """Size against fp16 (when exported too) and the emulated cost on the calibration sample:
        embedding cosine / low-res mask IoU against the fp32 graph, beside the fp16 figure."""
        by_precision = {r.precision: r for r in records}
        compressed = [r for r in records if r.precision in BITS_PER_WEIGHT]
        if not compressed:
            return
        costs = {
            p: self._emulated_cost(ctx, by_precision[p], samples)
            for p in ["fp16", *[r.precision for r in compressed]]
            if p in by_precision
        }
        fp16 = by_precision.get("fp16")
        for r in compressed:
            info: dict[str, Any] = {
                "bits_per_weight": BITS_PER_WEIGHT[r.precision],
                "emulated_cost": costs[r.precision],
            }
            if fp16 is not None:
                info["fp16_size_bytes"] = fp16.size_bytes
                info["size_vs_fp16"] = r.size_bytes / fp16.size_bytes
                info["fp16_emulated"] = costs["fp16"]
            r.details["compression"] = info

    @staticmethod
    def _emulated_cost(
        ctx: ExportContext, record: ArtifactRecord, samples: list[tuple[torch.Tensor, ...]]
    ) -> dict[str, float]:
        from ...parity import metrics as M
        from ...runtimes.coreml import CoremlEmulationSession

        session = CoremlEmulationSession(record, ctx.out_dir / record.file, ctx.model)
        graph = ctx.graph(record.role)
        data = CoremlExporter._sample_data(record.graph, samples)
        cos, ious = [], []
        with torch.no_grad():
            for feed, args in zip(data, samples):
                out = session.run(feed)
                if record.role == Role.ENCODER:
                    cos.append(M.cosine(graph(*args).numpy(), out["image_embeddings"]))
                else:
                    ref = graph(*args)[1].numpy() > 0
                    ious.extend(M.mask_iou(ref[0], out["masks"][0] > 0)[0].tolist())
        if record.role == Role.ENCODER:
            return {"emb_cosine_min": float(np.min(cos)), "samples": len(cos)}
        return {
            "lowres_mask_iou_mean": float(np.mean(ious)),
            "lowres_mask_iou_min": float(np.min(ious)),
            "samples": len(data),
        }

    @staticmethod
    def _set_metadata(
        mlmodel: Any,
        ctx: ExportContext,
        opts: CoremlOptions,
        role: Role,
        precision: Precision,
        fp32_ops: list[str],
    ) -> None:
        """What Xcode shows: author, license, description, per-feature descriptions, and
        user-defined entries (precision, compute units, preprocessing constants)."""
        spec = ctx.spec(role)
        mlmodel.author = AUTHOR
        mlmodel.license = LICENSE
        mlmodel.version = __version__
        mlmodel.short_description = f"{SHORT[role].format(n=opts.max_points)}; {precision}"
        for name in spec.input_names:
            mlmodel.input_description[name] = DESCRIPTIONS[name]
        for name in spec.output_names:
            mlmodel.output_description[name] = DESCRIPTIONS[name]
        meta = {
            "edgesam.role": str(role),
            "edgesam.precision": str(precision),
            "edgesam.compute_units": str(opts.compute_units),
            "edgesam.min_ios": str(opts.min_ios),
            "edgesam.fp32_ops": ",".join(fp32_ops),
            "edgesam.model": json.dumps(ctx.source.as_dict(), sort_keys=True),
            "edgesam.pixel_mean": ",".join(f"{v:g}" for v in PREPROCESSING["pixel_mean"]),
            "edgesam.pixel_std": ",".join(f"{v:g}" for v in PREPROCESSING["pixel_std"]),
            "edgesam.preprocessing": json.dumps(PREPROCESSING),
        }
        if role == Role.DECODER:
            meta["edgesam.scores"] = str(ctx.options.scores)
            meta["edgesam.max_points"] = str(opts.max_points)
        mlmodel.user_defined_metadata.update(meta)
