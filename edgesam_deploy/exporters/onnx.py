"""ONNX target: fp32, fp16, int8-dynamic and int8-static graphs of the official export contract.

Tracing uses the legacy TorchScript exporter at opset 17 (the dynamo exporter turns 17 into 18 and
writes external weights); graphs are simplified with onnxslim. Reasons and measurements: docs/onnx.md.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import DeployError
from ..fileio import atomic_output
from ..graphs import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, TensorSpec, example_inputs
from ..manifest import ArtifactRecord
from ..samples import CALIBRATION_PHOTOS
from .base import ExportContext, Exporter

OPSET = 17
SIMPLIFIER = "onnxslim"
EXPORTER = "torch.onnx legacy TorchScript exporter (dynamo=False)"
# ops that make shapes data-dependent or hide control flow: NPU compilers and TensorRT reject them
FORBIDDEN_DECODER_OPS = frozenset({"NonZero", "Compress", "Unique", "TopK", "NonMaxSuppression", "Loop", "If", "Scan", "Range"})
FP16_INPUT_POLICY_REASON = (
    "the prompt encoding (coords + 0.5) / 1024 -> Fourier features -> sin/cos: in fp16 a coordinate near 1024 "
    "moves in 0.5 px steps and sin/cos of large phases lose digits; it is N x 256 values, free in fp32"
)


def _policies() -> dict[str, Any]:
    """The measured precision policies per role (see docs/onnx.md)."""
    from ..quantization.onnx_quant import Fp16Policy, Int8Policy

    fp16 = Fp16Policy(
        keep_ops={
            "LayerNormalization": "mean/variance over 256 channels of 4096 tokens; fp32 lowered the decoder's "
                                  "logit error 0.0145 -> 0.0126 and raised min mask IoU 0.894 -> 0.926",
            "ReduceSum": "stability-score pixel counts reach 65536 > fp16 max; fp16 sums of ones stall at 2048",
        },
        fp32_inputs=("point_coords", "point_labels"),
        fp32_inputs_reason=FP16_INPUT_POLICY_REASON,
    )
    encoder_int8 = Int8Policy(
        op_types=("Conv",),
        exclude_scopes={
            "/encoder/features.0/": "stem on the raw normalized image (3 channels)",
            "/encoder/fuse_stage": "multi-scale fusion feeding the neck",
            "/encoder/neck": "convs and LayerNorm2d producing the embeddings",
        },
    )  # measured: quantizing all 107 convs gave embedding cosine 0.984, these exclusions 0.9985
    return {"fp16": fp16, "encoder_int8": encoder_int8}


DECODER_INT8_NOTE = (
    "decoder kept float32: every int8 decoder measured (dynamic and static QDQ, MatMul/Gemm quantized, with the "
    "prompt path, mask head or whole transformer excluded) gave mean mask IoU 0.65-0.85 (< 0.95) and was not faster "
    "on CPU; the int8 variant is an int8 encoder beside this fp32 decoder"
)


class OnnxExporter(Exporter):
    target = "onnx"
    extra = "onnx"
    required_modules = ("onnx", "onnxruntime", "onnxslim")
    precisions = ("fp32", "fp16", "int8-dynamic", "int8-static")
    # int8 on request only: measured slower than fp32 in ONNX Runtime CPU (int8-static 0.84x,
    # int8-dynamic 0.25x) and below the int8 mask-IoU gate on the seeded weights (docs/onnx.md)
    default_precisions = ("fp32", "fp16")

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        """Write ``onnx/{encoder,decoder}.<precision>.onnx`` under ``ctx.out_dir``."""
        self.check_dependencies()
        precisions = self.resolve_precisions(ctx.options.precisions)
        records = []
        for role in ("encoder", "decoder"):
            ctx.progress(f"onnx: tracing the {role} (opset {OPSET}) and simplifying with {SIMPLIFIER}")
            fp32 = self._trace(ctx, role)
            if role == "decoder":
                check_static_decoder(fp32)
            for precision in precisions:
                ctx.progress(f"onnx: {role} {precision}")
                model, details = self._variant(ctx, role, precision, fp32)
                path = ctx.out_dir / "onnx" / f"{role}.{precision}.onnx"
                save_model(model, path)
                inputs, outputs = (ENCODER_INPUTS, ENCODER_OUTPUTS) if role == "encoder" else (DECODER_INPUTS, DECODER_OUTPUTS)
                common = {"opset": OPSET, "simplifier": SIMPLIFIER, "exporter": EXPORTER, "runtime": "onnxruntime"}
                records.append(self.make_record(ctx, path, role, precision, inputs, outputs, **common, **details))
        return records

    def _trace(self, ctx: ExportContext, role: str) -> Any:
        """Trace ``ctx.<role>_graph`` to an in-memory ONNX model and simplify it."""
        import onnx
        import onnxslim

        graph = ctx.encoder_graph if role == "encoder" else ctx.decoder_graph
        enc_in, dec_in = example_inputs(num_points=3)
        specs: tuple[TensorSpec, ...] = ENCODER_INPUTS if role == "encoder" else DECODER_INPUTS
        outputs = ENCODER_OUTPUTS if role == "encoder" else DECODER_OUTPUTS
        dynamic = {s.name: {i: "num_points" for i, d in enumerate(s.shape) if d is None} for s in specs}
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on Python-side shape arithmetic
            torch.onnx.export(
                graph, enc_in if role == "encoder" else dec_in, buf, dynamo=False, opset_version=OPSET,
                input_names=[s.name for s in specs], output_names=[s.name for s in outputs],
                dynamic_axes={k: v for k, v in dynamic.items() if v} or None, do_constant_folding=True,
            )
        model = onnxslim.slim(onnx.load_from_string(buf.getvalue()))
        model.producer_name = "edgesam-deploy"
        return model

    def _variant(self, ctx: ExportContext, role: str, precision: str, fp32: Any) -> tuple[Any, dict[str, Any]]:
        """The ``precision`` version of the simplified fp32 model and its record details."""
        from ..quantization import onnx_quant as Q

        if precision == "fp32":
            return fp32, {}
        policies = _policies()
        if precision == "fp16":
            return Q.to_fp16(fp32, policies["fp16"], self._feeds(ctx, role)[:2])
        if role == "decoder":
            return fp32, {"weights": "float32", "int8_decoder": DECODER_INT8_NOTE}
        if precision == "int8-dynamic":
            return Q.quantize_int8_dynamic(fp32, policies["encoder_int8"])
        ctx.progress(f"onnx: calibrating the encoder on {len(ctx.calibration_images)} images")
        model, details = Q.quantize_int8_static(fp32, policies["encoder_int8"], self._feeds(ctx, role))
        return model, {**details, "calibration": calibration_source(ctx)}

    @staticmethod
    def _feeds(ctx: ExportContext, role: str) -> list[dict]:
        if role == "encoder":
            return [{"image": img} for img in ctx.calibration_images]
        return ctx.calibration_decoder_feeds


def calibration_source(ctx: ExportContext) -> dict[str, Any]:
    """Where the calibration images came from (recorded with every calibrated artifact)."""
    count = len(ctx.calibration_images)
    if ctx.options.calibration_dir is not None:
        return {"source": str(ctx.options.calibration_dir), "images": count}
    return {"source": "scikit-image sample photos", "photos": list(CALIBRATION_PHOTOS)[:count], "images": count}


def check_static_decoder(model: Any) -> None:
    """Refuse a decoder with data-dependent shapes: forbidden ops or outputs of unknown shape."""
    import onnx

    bad = sorted({n.op_type for n in model.graph.node if n.op_type in FORBIDDEN_DECODER_OPS})
    if bad:
        raise DeployError(f"the decoder graph contains {', '.join(bad)}: label selection must be arithmetic")
    inferred = onnx.shape_inference.infer_shapes(model)
    for out in inferred.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
        if None in dims or not dims:
            raise DeployError(f"the decoder output {out.name} has a data-dependent shape {dims}")


def save_model(model: Any, path: Path) -> None:
    """Validate and write a single-file ONNX model atomically (weights embedded)."""
    import onnx

    if model.ByteSize() >= 2**31:
        raise DeployError(f"{path.name}: over 2 GB, cannot be a single-file ONNX model")
    with atomic_output(path) as tmp:
        onnx.save_model(model, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise DeployError(f"{path.name}: invalid ONNX ({str(exc).splitlines()[0][:200]})") from exc
