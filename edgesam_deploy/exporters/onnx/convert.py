"""ONNX target: fp32, fp16, int8-dynamic and int8-static graphs of the official export contract.

Tracing uses the legacy TorchScript exporter at opset 17 (the dynamo exporter turns 17 into 18 and
writes external weights); int8 encoders are traced at opset 20 from the equalized encoder; graphs are
simplified with onnxslim. Reasons and measurements: docs/onnx.md.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from ...errors import DeployError, first_line
from ...fileio import atomic_output
from ...graphs import example_inputs, rewrite_details
from ...manifest import ArtifactRecord
from ...modeling.decoder_fast import AttentionForm
from ...vocabulary import GraphSpec, Precision, Role, Target
from ..base import ExportContext, Exporter
from .checks import check_static_decoder, opset_of
from .options import Int8Weights, OnnxOptions

OPSET = 17
# the rewritten decoder's attention form: one graph for every N (docs/decoder-speed.md)
DECODER_ATTENTION = AttentionForm.INPUT_SPACE
FP16_GUARD_IMAGES = 2  # calibration images whose activation peaks the fp16 overflow guard reads
INT8_OPSET = 20  # int8 encoders: GELU as one Gelu node, so ORT's QDQ fusion matches (docs/onnx.md)
SIMPLIFIER = "onnxslim"
EXPORTER = "torch.onnx legacy TorchScript exporter (dynamo=False)"
FP16_INPUT_POLICY_REASON = (
    "the prompt encoding (coords + 0.5) / 1024 -> Fourier features -> sin/cos: in fp16 a "
    "coordinate near 1024 "
    "moves in 0.5 px steps and sin/cos of large phases lose digits; it is N x 256 values, free in "
    "fp32"
)


def _policies(weights: Int8Weights = Int8Weights.SEVEN_BIT) -> dict[str, Any]:
    """The measured precision policies per role (see docs/onnx.md), int8 weights ``weights`` wide."""
    from ...quantization.onnx_quant import Fp16Policy, Int8Policy

    bits = {"weight_bits": weights.bits, "weight_bits_reason": INT8_WEIGHTS_REASON[weights]}

    fp16 = Fp16Policy(
        keep_ops={
            "LayerNormalization": "mean/variance over 256 channels of 4096 tokens; fp32 lowers the decoder's "
            "logit error and raises its min mask IoU (docs/onnx.md)",
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
        **bits,
    )
    # the decoder's blocks are chosen by the search (--min-iou); nothing is excluded by hand
    decoder_int8 = Int8Policy(op_types=("MatMul", "Gemm"), **bits)
    return {"fp16": fp16, "encoder_int8": encoder_int8, "decoder_int8": decoder_int8}


INT8_WEIGHTS_REASON = {
    Int8Weights.SEVEN_BIT: "on x86 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of "
    "products in 16 bits, which 8-bit weights can saturate; 7-bit weights run right on every CPU "
    "(docs/onnx.md)",
    Int8Weights.EIGHT_BIT: "--int8-weights 8-bit: the full range, for x86 CPUs with VNNI "
    "(avx512_vnni, avx_vnni) and ARM CPUs, which add products in 32 bits; on an x86 CPU without "
    "VNNI these weights can saturate (docs/onnx.md)",
}


LATE_BLOCK_REASON = (
    "last four blocks of the 192-channel stage, read directly by the fusion: kept float for "
    "embedding "
    "cosine and mask IoU at the cost of float convolutions (measurements: docs/onnx.md)"
)
DECODER_INT8_NOTE = (
    "decoder kept float32: on CPU the int8 decoders measured (static QDQ per block of the "
    "rewritten decoder, MatMul/Gemm quantized) were not faster than fp32, the int8 products' "
    "savings going to the quantize/dequantize nodes, and only those keeping most blocks float held "
    "the mask IoU (docs/mixed-precision.md, Decoder); export --min-iou searches them; the int8 "
    "variant is an int8 encoder beside this fp32 decoder"
)


class OnnxExporter(Exporter):
    target = Target.ONNX
    extra = "onnx"
    required_modules = ("onnx", "onnxruntime", "onnxslim")
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_STATIC)
    default_precisions = (Precision.FP32, Precision.FP16)  # int8 on request (docs/onnx.md)
    options_class = OnnxOptions
    aliases = {"int8": Precision.INT8_STATIC}  # calibrated QDQ: the faster and more accurate int8

    def export(self, ctx: ExportContext) -> list[ArtifactRecord]:
        """Write ``onnx/{encoder,decoder}.<precision>.onnx`` under ``ctx.out_dir``."""
        # onnxslim's shape inference silently degrades without onnxruntime
        self.check_dependencies()
        precisions = self.resolve_precisions(self.options(ctx).precisions)
        if self.options(ctx).min_iou is not None and Precision.INT8_STATIC not in precisions:
            raise DeployError("--min-iou chooses the float blocks of int8-static: request it")
        records = []
        for role in Role:
            ctx.progress(
                f"onnx: tracing the {role} (opset {OPSET}) and simplifying with {SIMPLIFIER}"
            )
            fp32 = self._trace(ctx.graph(role, DECODER_ATTENTION), ctx.spec(role), OPSET)
            if role == Role.DECODER:
                check_static_decoder(fp32)
            for precision in precisions:
                ctx.progress(f"onnx: {role} {precision}")
                model, details = self._variant(ctx, role, precision, fp32)
                path = ctx.out_dir / "onnx" / f"{ctx.stem(role)}.{precision}.onnx"
                save_model(model, path)
                common = {
                    "opset": opset_of(model),
                    "simplifier": SIMPLIFIER,
                    "exporter": EXPORTER,
                    "runtime": "onnxruntime",
                }
                if role == Role.DECODER:
                    common["decoder_graph"] = rewrite_details(DECODER_ATTENTION)
                records.append(self.make_record(ctx, path, role, precision, **common, **details))
        return records

    @staticmethod
    def _trace(graph: torch.nn.Module, spec: GraphSpec, opset: int) -> Any:
        """Trace ``graph`` (the graph of ``spec``) to an in-memory ONNX model and simplify it."""
        import onnx
        import onnxslim

        dynamic = {
            s.name: {i: "num_points" for i, d in enumerate(s.shape) if d is None}
            for s in spec.inputs
        }
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on Python-side shape arithmetic
            torch.onnx.export(
                graph,
                example_inputs(spec.role, 3, mask_input=len(spec.inputs) > 3),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                dynamic_axes={k: v for k, v in dynamic.items() if v} or None,
                do_constant_folding=True,
            )
        model = onnxslim.slim(onnx.load_from_string(buf.getvalue()))
        model.producer_name = "edgesam-deploy"
        return model

    def _variant(
        self, ctx: ExportContext, role: Role, precision: Precision, fp32: Any
    ) -> tuple[Any, dict[str, Any]]:
        """The ``precision`` version of the simplified fp32 model and its record details."""
        from ...quantization import onnx_quant as Q

        if precision == Precision.FP32:
            return fp32, {}
        policies = _policies(self.options(ctx).weights)
        if precision == Precision.FP16:
            return Q.to_fp16(fp32, policies["fp16"], self._feeds(ctx, role)[:FP16_GUARD_IMAGES])
        if role == Role.DECODER:
            if precision == Precision.INT8_STATIC and self.options(ctx).min_iou is not None:
                return searched_int8_decoder(ctx, fp32, self.options(ctx))
            return fp32, {"weights": "float32", "int8_decoder": DECODER_INT8_NOTE}
        if precision == Precision.INT8_DYNAMIC:
            return Q.quantize_int8_dynamic(fp32, policies["encoder_int8"])
        model, details = self._int8_static_encoder(ctx, policies["encoder_int8"])
        return model, {**details, "calibration": ctx.calibration_source()}

    def _int8_static_encoder(self, ctx: ExportContext, policy: Any) -> tuple[Any, dict[str, Any]]:
        """The hand-picked int8 encoder (``hand_picked_int8_encoder``), or with ``--min-iou`` the
        one the mixed-precision search chooses from the same equalized source."""
        model, details, source = hand_picked_int8_encoder(ctx, policy)
        if self.options(ctx).min_iou is None:
            return model, details
        return searched_int8_encoder(ctx, source, policy, (model, details), self.options(ctx))

    @staticmethod
    def _feeds(ctx: ExportContext, role: Role) -> list[dict]:
        if role == Role.ENCODER:
            return encoder_feeds(ctx)
        return ctx.calibration_decoder_feeds


def encoder_feeds(ctx: ExportContext) -> list[dict[str, Any]]:
    """The encoder's calibration feeds: {"image": 1 x 3 x 1024 x 1024} per calibration image."""
    return [{"image": img} for img in ctx.calibration_images]


def fp16_policy() -> Any:
    """The fp16 policy of both graphs (what stays float32, and why)."""
    return _policies()["fp16"]


def encoder_int8_policy(weights: Int8Weights = Int8Weights.SEVEN_BIT) -> Any:
    """The hand-picked int8 policy of the encoder (what stays float, and why)."""
    return _policies(weights)["encoder_int8"]


def decoder_int8_policy(weights: Int8Weights = Int8Weights.SEVEN_BIT) -> Any:
    """The int8 policy the decoder's search starts from: every MatMul and Gemm quantized."""
    return _policies(weights)["decoder_int8"]


def decoder_int8_source(ctx: ExportContext, fp32: Any | None = None) -> Any:
    """The fp32 decoder the export writes (``fp32``, or traced here) with its nodes renamed under
    their blocks' scopes (``quantization.decoder_blocks``): the source of int8 decoders."""
    from ...quantization.decoder_blocks import scoped_decoder

    if fp32 is None:
        fp32 = OnnxExporter._trace(
            ctx.graph(Role.DECODER, DECODER_ATTENTION), ctx.spec(Role.DECODER), OPSET
        )
    return scoped_decoder(fp32)


def hand_picked_int8_encoder(
    ctx: ExportContext, policy: Any, alphas: tuple[float, ...] | None = None
) -> tuple[Any, dict[str, Any], Any]:
    """The equalized encoder traced at INT8_OPSET and quantized with ``policy`` on the calibration
    images, with the equalization strength (of ``alphas``, default the search's) that keeps it
    closest to the float encoder -> (int8 model, record details, the float source it came from)."""
    from ...quantization import onnx_quant as Q

    feeds = encoder_feeds(ctx)
    details: dict[float, dict[str, Any]] = {}
    sources: dict[float, Any] = {}

    def build(graph: Any, alpha: float) -> Any:
        ctx.progress(
            f"onnx: int8 encoder, equalization alpha {alpha}, calibrating on {len(feeds)} images"
        )
        source, pools = Q.spatial_means_to_global_pool(
            OnnxExporter._trace(graph, ctx.spec(Role.ENCODER), INT8_OPSET)
        )
        sources[alpha] = source
        model, details[alpha] = Q.quantize_int8_static(source, policy, feeds)
        details[alpha]["squeeze_excite_means_as_global_average_pool"] = pools
        return model

    model, equalization = ctx.best_equalized(
        build, lambda m, images: Q.first_outputs(m, [{"image": x} for x in images]), alphas
    )
    alpha = equalization["alpha"]
    return model, {**details[alpha], "equalization": equalization}, sources[alpha]


SEARCH_LATENCY_RUNS = 5


def _evaluator(
    kind: Any,
    ctx: ExportContext,
    source: Any,
    policy: Any,
    feeds: list[dict[str, Any]],
    search: OnnxOptions,
    scratch: Path,
    role: Role = Role.ENCODER,
) -> Any:
    """An evaluator of class ``kind`` (``Evaluator`` or ``Fp16Evaluator``) of ``source``, a
    ``role`` graph: reduced with ``feeds`` (the first calibration images, or the decoder feeds
    made from them), judged on ``search.scoring_images`` held-out photos against ``search``'s
    target in ``kind.precision``'s gate of ``role``."""
    from ...quantization.search_target import search_target
    from ...quantization.sensitivity import _in_memory_record, scoring_reference
    from ..search_options import calibrated_on

    assert search.min_iou is not None  # the search's options, not an export's without --min-iou
    reference = scoring_reference(ctx.model, search.scoring_images)
    margin = search.margin_for(kind.precision)
    target = search_target(search.min_iou, margin, kind.precision, role)
    names = calibrated_on(ctx)[: len(feeds)]
    if role == Role.ENCODER:
        return kind(source, policy, feeds, reference, target, scratch, names)
    record = _in_memory_record(kind.precision, ctx.spec(role), ctx.options.scores)
    return kind(source, policy, feeds, reference, target, scratch, names, record)


def int8_evaluator(
    ctx: ExportContext,
    source: Any,
    policy: Any,
    search: OnnxOptions,
    scratch: Path,
    role: Role = Role.ENCODER,
) -> Any:
    """A sensitivity ``Evaluator`` of ``source`` (an encoder, or a ``decoder_int8_source``):
    activation ranges from ``ctx``'s calibration images (the decoder: its calibration feeds, made
    from them), judged on ``search.scoring_images`` held-out photos against ``search``'s target
    for ``role``."""
    from ...quantization.sensitivity import Evaluator

    feeds = encoder_feeds(ctx) if role == Role.ENCODER else ctx.calibration_decoder_feeds
    return _evaluator(Evaluator, ctx, source, policy, feeds, search, scratch, role)


def searched_int8_encoder(
    ctx: ExportContext,
    source: Any,
    policy: Any,
    hand_picked: tuple[Any, dict[str, Any]],
    options: OnnxOptions,
) -> tuple[Any, dict[str, Any]]:
    """The int8 encoder of ``source`` whose fewest float blocks reach ``options.min_iou`` (and the
    int8 gate's other floors, the min-IoU one raised by the margin) on the held-out scoring
    photos, or the ``hand_picked`` (model, details) where it meets the target and runs faster;
    the choice and its measured cost go in the details."""
    from ...quantization.mixed import search

    with tempfile.TemporaryDirectory(prefix="edgesam-search-") as scratch:
        ev = int8_evaluator(ctx, source, policy, options, Path(scratch))
        ctx.progress(
            f"onnx: mixed-precision search for mean mask IoU {options.min_iou:g}, min-IoU margin "
            f"{options.margin:g}, on {', '.join(ev.reference.photo_names)}"
        )
        hand = ev.judge_model(hand_picked[0], "hand-picked", details=hand_picked[1])
        chosen, record = search(ev, hand, SEARCH_LATENCY_RUNS, ctx.progress)
    record["search_margin"] = options.margin
    # equalization and graph rewrites are the hand-picked encoder's; exclusions are the chosen one's
    return chosen.model, {**hand_picked[1], **chosen.details, "mixed_precision": record}


def searched_int8_decoder(
    ctx: ExportContext, fp32: Any, options: OnnxOptions
) -> tuple[Any, dict[str, Any]]:
    """The int8 decoder of ``fp32`` whose fewest float blocks reach ``options.min_iou`` (and the
    int8 decoder gate's other floors, the min-IoU one raised by the margin) on the held-out
    scoring photos, where it is also faster than ``fp32`` at 1 and 16 points; otherwise ``fp32``
    itself, the record saying why. The search and its measured cost go in the details."""
    from ...quantization.mixed import search_decoder

    with tempfile.TemporaryDirectory(prefix="edgesam-search-") as scratch:
        source = decoder_int8_source(ctx, fp32)
        ev = int8_evaluator(
            ctx,
            source,
            decoder_int8_policy(options.weights),
            options,
            Path(scratch),
            Role.DECODER,
        )
        ctx.progress(
            f"onnx: decoder mixed-precision search for mean mask IoU {options.min_iou:g}, min-IoU "
            f"margin {options.margin:g}, on {', '.join(ev.reference.photo_names)}"
        )
        chosen, record = search_decoder(ev, SEARCH_LATENCY_RUNS, ctx.progress)
    record["search_margin"] = options.margin
    if chosen is None:
        return fp32, {
            "weights": "float32",
            "int8_decoder": record["note"],
            "mixed_precision": record,
        }
    calibration = {"calibration": ctx.calibration_source()}
    return chosen.model, {**chosen.details, **calibration, "mixed_precision": record}


def scan_int8_decoder(
    ctx: ExportContext,
    blocks: list[str] | None,
    search: OnnxOptions,
    alphas: tuple[float, ...] | None = None,
    runs: int = SEARCH_LATENCY_RUNS,
) -> Any:
    """The sensitivity scan (``quantization.mixed.Scan``) of the int8-static decoder's ``blocks``
    (None: all), calibrated on ``ctx``'s calibration decoder feeds and judged on ``search``'s
    scoring photos, with the greedy path to ``search``'s decoder target; timed at 1 and 16
    points. ``alphas`` (the encoder's equalization) must be None."""
    import time

    from ...quantization.mixed import run_scan
    from ...quantization.sensitivity import select_blocks

    if alphas is not None:
        raise DeployError("--alpha is the encoder's equalization strength: not for the decoder")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgesam-scan-") as scratch:
        source = decoder_int8_source(ctx)
        policy = decoder_int8_policy(search.weights)
        ev = int8_evaluator(ctx, source, policy, search, Path(scratch), Role.DECODER)
        chosen = select_blocks(ev.blocks, blocks, Role.DECODER)
        scan = run_scan(ev, chosen, None, runs, ctx.progress)
    images = len(ctx.calibration_images)
    weights = str(search.weights)
    scan.facts = _scan_facts(
        ev, search, runs, start, calibration_images=images, int8_weights=weights
    )
    scan.facts["calibration_feeds"] = len(ev.feeds)
    return scan


def scan_int8_encoder(
    ctx: ExportContext,
    blocks: list[str] | None,
    search: OnnxOptions,
    alphas: tuple[float, ...] | None = None,
    runs: int = SEARCH_LATENCY_RUNS,
) -> Any:
    """The sensitivity scan (``quantization.mixed.Scan``) of the int8-static encoder's ``blocks``
    (None: all), calibrated on ``ctx``'s calibration images and judged on ``search``'s scoring
    photos, with the greedy path to ``search``'s target."""
    import time

    from ...quantization.mixed import run_scan
    from ...quantization.sensitivity import select_blocks

    start = time.perf_counter()
    policy = encoder_int8_policy(search.weights)
    _, details, source = hand_picked_int8_encoder(ctx, policy, alphas)
    with tempfile.TemporaryDirectory(prefix="edgesam-scan-") as scratch:
        ev = int8_evaluator(ctx, source, policy, search, Path(scratch))
        scan = run_scan(ev, select_blocks(ev.blocks, blocks), policy, runs, ctx.progress)
    alpha = details["equalization"]["alpha"]
    scan.facts = _scan_facts(
        ev, search, runs, start, equalization_alpha=alpha, int8_weights=str(search.weights)
    )
    return scan


def scan_fp16_encoder(
    ctx: ExportContext, blocks: list[str] | None, search: OnnxOptions, runs: int
) -> Any:
    """The fp16 sensitivity scan (``quantization.mixed.Scan``) of the export's fp16 encoder:
    ``blocks`` (None: all) converted one at a time, the greedy path of blocks kept float32 to
    ``search``'s target in the fp16 gate, judged on its scoring photos; the overflow guard reads
    the first ``FP16_GUARD_IMAGES`` calibration images, as the export does."""
    import time

    from ...quantization.mixed import run_scan
    from ...quantization.sensitivity import select_blocks

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgesam-scan-") as scratch:
        ev = fp16_evaluator(ctx, search, Path(scratch))
        scan = run_scan(ev, select_blocks(ev.blocks, blocks), ev.base, runs, ctx.progress)
    scan.facts = _scan_facts(ev, search, runs, start)
    return scan


def fp16_evaluator(ctx: ExportContext, search: OnnxOptions, scratch: Path) -> Any:
    """An ``Fp16Evaluator`` of the export's traced fp32 encoder under the export's fp16 policy,
    its overflow guard on the first ``FP16_GUARD_IMAGES`` calibration images."""
    from ...quantization.fp16_scan import Fp16Evaluator

    ctx.progress(f"onnx: tracing the encoder (opset {OPSET}) for the fp16 scan")
    source = OnnxExporter._trace(ctx.graph(Role.ENCODER), ctx.spec(Role.ENCODER), OPSET)
    feeds = encoder_feeds(ctx)[:FP16_GUARD_IMAGES]
    policy = fp16_policy()
    return _evaluator(Fp16Evaluator, ctx, source, policy, feeds, search, scratch)


def _scan_facts(
    ev: Any, search: OnnxOptions, runs: int, start: float, **extra: Any
) -> dict[str, Any]:
    """A scan's facts: the photos that calibrated and scored, the target's margin, the runs."""
    import time

    return {
        "calibration_images": len(ev.feeds),
        "calibrated_on": ev.calibrated_on,
        "scored_on": ev.reference.photo_names,
        "search_margin": search.margin_for(ev.precision),
        **extra,
        "latency_runs": runs,
        "seconds": round(time.perf_counter() - start, 1),
    }


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
