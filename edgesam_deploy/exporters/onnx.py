"""ONNX target: fp32, fp16, int8-dynamic and int8-static graphs of the official export contract.

Tracing uses the legacy TorchScript exporter at opset 17 (the dynamo exporter turns 17 into 18 and
writes external weights); int8 encoders are traced at opset 20 from the equalized encoder; graphs are
simplified with onnxslim. Reasons and measurements: docs/onnx.md.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import DeployError, first_line
from ..fileio import atomic_output
from ..graphs import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS, TensorSpec, example_inputs
from ..manifest import ArtifactRecord
from ..samples import CALIBRATION_PHOTOS
from .base import ExportContext, Exporter

OPSET = 17
# int8 encoders: opset 20 writes GELU as one Gelu node. Traced at 17, GELU is five nodes that read the
# conv output twice; ONNX Runtime's QDQ pass then gives each reader its own DequantizeLinear, its Gelu
# fusion no longer matches, and the int8 encoder ran at 0.84x of fp32 (1.2-1.3x with the Gelu node)
INT8_OPSET = 20
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
            "/encoder/features.0/features.0.0/": "first conv on the raw normalized image (3 channels)",
            **{f"/encoder/features.{i}/": LATE_BLOCK_REASON for i in range(20, 24)},
            "/encoder/fuse_stage": "multi-scale fusion feeding the neck",
            "/encoder/neck": "convs and LayerNorm2d producing the embeddings",
        },
        reduce_range="on x86 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in 16 bits, "
                     "which 8-bit weights can saturate; 7-bit weights raised embedding cosine 0.99841 -> 0.99859",
    )  # measured: quantizing all 107 convs gave embedding cosine 0.984 (the neck alone costs that);
    # also quantizing the squeeze-excite ops (GlobalAveragePool, Sigmoid, Mul) lowered it 0.99930 -> 0.99882
    return {"fp16": fp16, "encoder_int8": encoder_int8}


LATE_BLOCK_REASON = (
    "last four blocks of the 192-channel stage, read directly by the fusion: kept float, embedding cosine "
    "0.99944 -> 0.99960 and mask IoU 0.948 -> 0.953, for about 35 ms of float convolutions per run (of 267)"
)
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
    # int8 on request only: int8-static is 1.22x of fp32 in ONNX Runtime CPU (int8-dynamic 0.25x) and,
    # on the seeded weights, below the int8 gate's minimum mask IoU (docs/onnx.md)
    default_precisions = ("fp32", "fp16")

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        """Write ``onnx/{encoder,decoder}.<precision>.onnx`` under ``ctx.out_dir``."""
        self.check_dependencies()
        precisions = self.resolve_precisions(ctx.options.precisions)
        records = []
        for role in ("encoder", "decoder"):
            ctx.progress(f"onnx: tracing the {role} (opset {OPSET}) and simplifying with {SIMPLIFIER}")
            fp32 = self._trace(ctx.encoder_graph if role == "encoder" else ctx.decoder_graph, role, OPSET)
            if role == "decoder":
                check_static_decoder(fp32)
            for precision in precisions:
                ctx.progress(f"onnx: {role} {precision}")
                model, details = self._variant(ctx, role, precision, fp32)
                path = ctx.out_dir / "onnx" / f"{role}.{precision}.onnx"
                save_model(model, path)
                inputs, outputs = (ENCODER_INPUTS, ENCODER_OUTPUTS) if role == "encoder" else (DECODER_INPUTS, DECODER_OUTPUTS)
                common = {"opset": opset_of(model), "simplifier": SIMPLIFIER, "exporter": EXPORTER, "runtime": "onnxruntime"}
                records.append(self.make_record(ctx, path, role, precision, inputs, outputs, **common, **details))
        return records

    @staticmethod
    def _trace(graph: torch.nn.Module, role: str, opset: int) -> Any:
        """Trace ``graph`` (the encoder or decoder graph) to an in-memory ONNX model and simplify it."""
        import onnx
        import onnxslim

        enc_in, dec_in = example_inputs(num_points=3)
        specs: tuple[TensorSpec, ...] = ENCODER_INPUTS if role == "encoder" else DECODER_INPUTS
        outputs = ENCODER_OUTPUTS if role == "encoder" else DECODER_OUTPUTS
        dynamic = {s.name: {i: "num_points" for i, d in enumerate(s.shape) if d is None} for s in specs}
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on Python-side shape arithmetic
            torch.onnx.export(
                graph, enc_in if role == "encoder" else dec_in, buf, dynamo=False, opset_version=opset,
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
        model, details = self._int8_static_encoder(ctx, policies["encoder_int8"])
        return model, {**details, "calibration": calibration_source(ctx)}

    def _int8_static_encoder(self, ctx: ExportContext, policy: Any) -> tuple[Any, dict[str, Any]]:
        """The equalized encoder traced at INT8_OPSET and quantized on the calibration images, with the
        equalization strength that keeps it closest to the float encoder."""
        from ..quantization import onnx_quant as Q

        feeds = self._feeds(ctx, "encoder")
        details: dict[float, dict[str, Any]] = {}

        def build(graph: Any, alpha: float) -> Any:
            ctx.progress(f"onnx: int8 encoder, equalization alpha {alpha}, calibrating on {len(feeds)} images")
            source, pools = Q.spatial_means_to_global_pool(self._trace(graph, "encoder", INT8_OPSET))
            model, details[alpha] = Q.quantize_int8_static(source, policy, feeds)
            details[alpha]["squeeze_excite_means_as_global_average_pool"] = pools
            return model

        model, equalization = ctx.best_equalized(build, lambda m, images: Q.first_outputs(m, [{"image": x} for x in images]))
        return model, {**details[equalization["alpha"]], "equalization": equalization}

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


def opset_of(model: Any) -> int:
    """The default-domain opset a model imports."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


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
            raise DeployError(f"{path.name}: invalid ONNX ({first_line(exc)})") from exc
