"""ExecuTorch target: ``executorch/{encoder,decoder}.<precision>.pte`` from ``torch.export``.

- ``fp32``: XNNPACK delegate. ``int8-static``: pt2e with the XNNPACK quantizer (per-channel,
  calibrated on the shared calibration images, from the best-equalized encoder), XNNPACK delegate;
  with ``min_iou`` the encoder's float blocks are chosen by measurement (``search.py``).
- ``fp16``: the encoder as a ``.half()`` graph on XNNPACK with every LayerNorm computed in fp32
  and GELU in its tanh form (XNNPACK has no fp16 GELU): it passes the fp16 gate; the fp16
  decoder did not, so the fp16 variant's decoder is the fp32 one.
- ``coreml-fp16``: the Core ML delegate (fp16 ML program); lowers on Linux, runs on Apple only.

Every graph goes through ``rewrites.delegable`` first (same function, fewer partitions) except
the Core ML one, which lowers LayerNorm and attention natively. Measurements: docs/executorch.md.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from torch import nn

from ...errors import DeployError, require
from ...fileio import atomic_output
from ...manifest import ArtifactRecord, package_versions
from ...runtimes.executorch import program_outputs
from ...vocabulary import Precision, Role, Target
from ..base import ExportContext, Exporter
from .checks import Census, check_program
from .lowering import Fp16Graph, coreml_partitioner, export_graph, lower, xnnpack_partitioner
from .options import ExecutorchOptions
from .quantize import calibration_feeds, quantize_int8, quantizer_record
from .rewrites import delegable, norms_in_fp32, tanh_gelu
from .search import searched_int8_encoder

_VERSIONED = ("executorch", "torch", "torchao", "coremltools")
# equalization strengths tried for the int8 encoder: none, and the one ONNX and TFLite settle
# near; each is a pt2e calibration plus a lowering, so the search stays short (docs/executorch.md)
INT8_ALPHAS = (0.0, 0.5)
FP16_DECODER_NOTE = (
    "decoder kept float32: the fp16 XNNPACK decoder failed the fp16 gate on the conformance "
    "weights even with LayerNorm in fp32 (measurements: docs/executorch.md); the fp16 variant "
    "is an fp16 encoder beside this decoder"
)
DECODER_INT8_NOTE = (
    "decoder kept float32 (XNNPACK delegate), as in the ONNX target: the int8 variant is an "
    "int8 encoder beside this decoder (docs/executorch.md)"
)


class ExecutorchExporter(Exporter):
    """Encoder and decoder as ExecuTorch programs for XNNPACK (fp32, fp16, int8) and Core ML."""

    target = Target.EXECUTORCH
    extra = "executorch"
    required_modules = ("executorch.exir", "executorch.runtime", "torchao")
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8_STATIC, Precision.COREML_FP16)
    default_precisions = (Precision.FP32, Precision.FP16)
    options_class = ExecutorchOptions
    aliases = {"int8": Precision.INT8_STATIC}  # the only int8 here

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        """Write ``executorch/{encoder,decoder}.<precision>.pte`` under ``ctx.out_dir``."""
        opts: ExecutorchOptions = self.options(ctx)
        precisions = self.resolve_precisions(opts.precisions)
        if opts.min_iou is not None and Precision.INT8_STATIC not in precisions:
            raise DeployError("--min-iou chooses the float blocks of int8-static: request it")
        if Precision.COREML_FP16 in precisions:
            require("coremltools", "coreml")
        records = []
        for role in Role:
            graph, rewritten = delegable(ctx.graph(role))
            fp32 = cache(
                lambda g=graph, r=role: lower(
                    export_graph(g, ctx.spec(r), opts.max_points), xnnpack_partitioner()
                )
            )
            for precision in precisions:
                ctx.progress(f"executorch: {role} {precision}, lowering")
                data, census, details = self._program(ctx, opts, role, precision, graph, fp32)
                if precision != Precision.COREML_FP16:
                    details["rewrites"] = {"modules_replaced": rewritten, "see": "rewrites.py"}
                records.append(self._write(ctx, opts, role, precision, data, census, details))
        return records

    def _program(
        self,
        ctx: ExportContext,
        opts: ExecutorchOptions,
        role: Role,
        precision: Precision,
        graph: nn.Module,
        fp32: Callable[[], tuple[bytes, Census]],
    ) -> tuple[bytes, Census, dict[str, Any]]:
        """The ``.pte`` bytes of one variant, its census and record details; ``fp32()`` gives
        the (cached) fp32 XNNPACK program of the rewritten ``graph``."""
        points = opts.max_points
        if precision == Precision.FP32:
            return *fp32(), {}
        if precision == Precision.FP16 and role == Role.DECODER:
            return *fp32(), {"weights": "float32", "fp16_decoder": FP16_DECODER_NOTE}
        if precision == Precision.FP16:
            half = Fp16Graph(copy.deepcopy(graph))
            kept = {
                "layer_norm_fp32": norms_in_fp32(half.net),
                "gelu_tanh": tanh_gelu(half.net),
            }
            return *lower(export_graph(half, ctx.spec(role), points), xnnpack_partitioner()), {
                "fp16": kept
            }
        if precision == Precision.COREML_FP16:
            program = export_graph(ctx.graph(role), ctx.spec(role), points)
            return *lower(program, coreml_partitioner()), {"delegate": "Core ML, fp16, iOS 17"}
        if role == Role.DECODER:
            return *fp32(), {"weights": "float32", "int8_decoder": DECODER_INT8_NOTE}
        default = self.int8_encoder(ctx, opts)
        return default if opts.min_iou is None else searched_int8_encoder(ctx, opts, default)

    @staticmethod
    def int8_encoder(
        ctx: ExportContext, opts: ExecutorchOptions, alphas: tuple[float, ...] | None = None
    ) -> tuple[bytes, Census, dict[str, Any]]:
        """The encoder quantized by pt2e and lowered to XNNPACK, from the equalization strength
        (``alphas``, default ``INT8_ALPHAS``; 0: none) whose ``.pte`` stays closest to the float
        encoder."""
        feeds = calibration_feeds(ctx.calibration_images)
        censuses: dict[float, Census] = {}

        def build(encoder: nn.Module, alpha: float) -> bytes:
            ctx.progress(f"executorch: int8 encoder, alpha {alpha}, {len(feeds)} images")
            spec = ctx.spec(Role.ENCODER)
            quantized = quantize_int8(delegable(encoder)[0], spec, feeds, opts.max_points)
            data, censuses[alpha] = lower(
                export_graph(quantized, spec, opts.max_points), xnnpack_partitioner()
            )
            return data

        data, equalization = ctx.best_equalized(build, program_outputs, alphas or INT8_ALPHAS)
        quantization = {**quantizer_record(), "calibration": ctx.calibration_source()}
        details = {"quantization": quantization, "equalization": equalization}
        return data, censuses[equalization["alpha"]], details

    def _write(
        self,
        ctx: ExportContext,
        opts: ExecutorchOptions,
        role: Role,
        precision: Precision,
        data: bytes,
        census: Census,
        details: dict[str, Any],
    ) -> ArtifactRecord:
        """Write the ``.pte`` atomically, check it against the contract and describe it."""
        path = Path(ctx.out_dir) / "executorch" / f"{ctx.stem(role)}.{precision}.pte"
        points = opts.max_points if role == Role.DECODER else 0
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
            problems = check_program(tmp, ctx.spec(role), opts.max_points)
            if problems:
                raise DeployError(f"{path.name}: {'; '.join(problems)}")
        spec = ctx.spec(role)
        facts = {
            "versions": package_versions(_VERSIONED),
            "io_order": {"inputs": list(spec.input_names), "outputs": list(spec.output_names)},
            "partitions": census.partitions,
            "total_partitions": census.total_partitions,
            "outside_delegate": census.outside,
            **({"max_points": points, "point_padding": "none: N is dynamic"} if points else {}),
        }
        return self.make_record(ctx, path, role, precision, **facts, **details)
