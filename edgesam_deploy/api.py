"""The Python API: export, parity and bench as functions returning dataclasses.

The CLI commands call these (one code path); every bad input raises a ``DeployError`` subclass.
``to_dict()`` of each result is the JSON document the matching command writes (the manifest,
``parity --json``, ``bench --json``). The model is given as ``model=(EdgeSam, ModelSource)`` (what
``load_model`` returns), a callable that returns it (called once the inputs are checked), or the
``variant`` / ``checkpoint`` / ``random_weights`` to load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .bench.run import BenchSettings, run_bench
from .bench.runners import RunnerOptions, get_runner
from .bench.runners.emulated import DEFAULT_PHOTOS as EMULATED_PHOTOS
from .bench.schema import BenchReport
from .checkpoints import ModelSource, load_model, load_model_for_source
from .devices import DeviceProfile, get_profile
from .errors import DeployError
from .exportdir import check_output_dir, settle
from .exporters import ExportOptions, TargetOptions, get_exporter
from .exporters.coreml.options import CoremlOptions
from .exporters.executorch.options import ExecutorchOptions
from .exporters.onnx.options import Int8Weights, OnnxOptions
from .exporters.pipeline import resolve_targets, run_export
from .exporters.tflite.options import TfliteOptions
from .manifest import Manifest
from .modeling import EdgeSam
from .modeling.image_encoder import UpsampleMode
from .parity import ArtifactParity, check_directory, reference_description
from .parity.report import summary, write_json_report, write_junit
from .quantization.calibration import calibration_photos
from .vocabulary import ComputeUnit, Precision, ProgressFn, ScoreKind, Target

LoadedModel = tuple[EdgeSam, ModelSource]
ModelArg = LoadedModel | Callable[[], LoadedModel] | None


def _silent(message: str) -> None:
    """The default progress callback: says nothing."""


def resolve_model(
    model: ModelArg,
    variant: str = "edgesam",
    checkpoint: Path | str | None = None,
    random_weights: int | None = None,
    upsample_mode: UpsampleMode = "bilinear",
) -> LoadedModel:
    """``model`` as given, called, or loaded from ``variant`` / ``checkpoint`` / ``random_weights``
    (with ``upsample_mode``, the stage-3 upsampling)."""
    if model is None:
        path = None if checkpoint is None else Path(checkpoint)
        return load_model(
            variant, checkpoint=path, random_seed=random_weights, upsample_mode=upsample_mode
        )
    return model() if callable(model) else model


@dataclass
class ParityResult:
    """Every judged artifact (``artifacts``) and what they were compared against."""

    artifacts: list[ArtifactParity]
    reference: dict

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.artifacts)

    @property
    def failed(self) -> list[str]:
        """Files of the artifacts that failed their gate."""
        return [r.file for r in self.artifacts if not r.passed]

    def to_dict(self) -> dict:
        """The ``parity --json`` document."""
        return summary(self.artifacts, self.reference)

    def write_json(self, path: Path | str) -> None:
        write_json_report(Path(path), self.artifacts, self.reference)

    def write_junit(self, path: Path | str) -> None:
        """JUnit XML: one test case per artifact."""
        write_junit(Path(path), self.artifacts)


@dataclass
class ExportResult:
    """An export: its directory, its manifest and the parity gate of the new artifacts (None when
    skipped)."""

    out_dir: Path
    manifest: Manifest
    parity: ParityResult | None

    @property
    def passed(self) -> bool:
        """True unless the parity gate ran and an artifact failed it."""
        return self.parity is None or self.parity.passed

    def to_dict(self) -> dict:
        """The ``manifest.json`` document."""
        return self.manifest.to_dict()


def _joined(value: str | Sequence[str] | None) -> str | None:
    """A comma list as the CLI takes it, from a string or a sequence of names."""
    return value if value is None or isinstance(value, str) else ",".join(map(str, value))


def comma_list(option: str, text: str | None) -> list[str] | None:
    """The names of a comma-separated option (None: not given, i.e. its default); one that names
    nothing (``''``, ``' , '``) is refused rather than read as the default."""
    if text is None:
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise DeployError(f"{option} {text!r} names nothing; leave it out for the default")
    return names


def split_precisions(
    text: str | None, targets: list[Target]
) -> dict[Target, tuple[str, ...] | None]:
    """Comma list -> per-target subsets (None: the target's defaults). A name may be a precision
    or an alias such as ``int8`` (each target's recommended variant); one that no chosen target
    knows is an error."""
    wanted = comma_list("--precision", text)
    if wanted is None:
        return {t: None for t in targets}
    exporters = {t: get_exporter(t) for t in targets}
    unknown = [p for p in wanted if not any(e.knows(p) for e in exporters.values())]
    if unknown:
        choices = sorted({str(p) for e in exporters.values() for p in (*e.precisions, *e.aliases)})
        raise DeployError(
            f"unknown precision {', '.join(unknown)} for {', '.join(targets)}; choose from "
            f"{', '.join(choices)}"
        )
    return {t: tuple(p for p in wanted if e.knows(p)) for t, e in exporters.items()}


def _check_int8_weights(
    int8_weights: Int8Weights | str | None,
    targets: list[Target],
    per_target: dict[Target, tuple[str, ...] | None],
) -> None:
    """``--int8-weights`` sets the width of ONNX's int8 weights: refused (before the model loads)
    without ONNX among the targets or an int8 precision among ONNX's."""
    if int8_weights is None:
        return
    if Target.ONNX not in targets:
        raise DeployError("--int8-weights: the ONNX int8 graphs' option (--target onnx)")
    precisions = get_exporter(Target.ONNX).resolve_precisions(per_target[Target.ONNX])
    if not {Precision.INT8_STATIC, Precision.INT8_DYNAMIC} & set(precisions):
        raise DeployError("--int8-weights sets the int8 graphs' weights: request int8-static")


def export(
    out: Path | str,
    target: str | Sequence[Target | str] = "all",
    *,
    precision: str | Sequence[str] | None = None,
    scores: ScoreKind = ScoreKind.IOU,
    calibration_dir: Path | str | None = None,
    calibration_size: int = 8,
    num_points: int = 16,
    max_points: int = 16,
    min_ios: int = 17,
    compute_units: ComputeUnit = ComputeUnit.ALL,
    mask_input: bool = False,
    min_iou: float | None = None,
    search_margin: float | None = None,
    search_images: int | None = None,
    int8_weights: Int8Weights | str | None = None,
    parity: bool = True,
    model: ModelArg = None,
    variant: str = "edgesam",
    checkpoint: Path | str | None = None,
    random_weights: int | None = None,
    progress: ProgressFn = _silent,
) -> ExportResult:
    """Export the encoder and decoder graphs for each target (``"all"``, ``"onnx,tflite"`` or a
    list) into ``out`` with ``manifest.json``, then run the parity gate on them (``parity``).
    ``precision``: names or aliases such as ``int8`` (default: each target's defaults).
    ``min_iou``: ONNX int8-static, TFLite int8-full and ExecuTorch int8-static keep float the
    fewest encoder blocks that meet this mean mask IoU, and the gate's min-IoU floor raised by
    ``search_margin``, on ``search_images`` held-out photos (docs/mixed-precision.md,
    docs/tflite.md, docs/executorch.md; default: the hand-picked blocks for ONNX, every block
    int8 for the others). ``int8_weights``: the ONNX int8 graphs' weight width (``Int8Weights``,
    default 7-bit; docs/onnx.md)."""
    targets = resolve_targets(_joined(target) or "")
    per_target = split_precisions(_joined(precision), targets)
    targets = [t for t in targets if per_target[t] != ()]
    _check_int8_weights(int8_weights, targets, per_target)
    search = {"min_iou": min_iou, "search_margin": search_margin, "search_images": search_images}
    builders: dict[Target, TargetOptions] = {
        Target.ONNX: OnnxOptions(per_target.get(Target.ONNX), **search, int8_weights=int8_weights),
        Target.TFLITE: TfliteOptions(
            per_target.get(Target.TFLITE), tuple(range(1, num_points + 1)), **search
        ),
        Target.COREML: CoremlOptions(
            per_target.get(Target.COREML), min_ios, compute_units, max_points
        ),
        Target.EXECUTORCH: ExecutorchOptions(
            per_target.get(Target.EXECUTORCH), max_points, **search
        ),
    }
    options = ExportOptions(
        scores=ScoreKind(scores),
        calibration_dir=None if calibration_dir is None else Path(calibration_dir),
        calibration_size=calibration_size,
        mask_input=mask_input,
        targets={t: builders[t] for t in targets},
    )
    if options.calibration_dir is not None:  # a wrong one is refused before the model loads
        calibration_photos(options.calibration_dir, calibration_size)
    out = Path(out)
    check_output_dir(out)
    net, source = resolve_model(model, variant, checkpoint, random_weights)
    manifest, results = run_export(
        net, source, targets, out, options, run_parity=parity, progress=progress
    )
    judged = ParityResult(results, reference_description()) if parity else None
    return ExportResult(out, manifest, judged)


def parity(
    directory: Path | str,
    *,
    files: Sequence[str] | None = None,
    checkpoint: Path | str | None = None,
    progress: ProgressFn = _silent,
) -> ParityResult:
    """Judge every artifact of an export directory (or only ``files``, relative to it) against
    the PyTorch fp32 reference of the weights its manifest names (``checkpoint``: where they are,
    if not where the manifest says)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DeployError(f"{directory}: not a directory")
    settle(directory)
    manifest = Manifest.load(directory)
    if not manifest.artifacts:
        raise DeployError(f"{directory}: the manifest lists no artifacts")
    known = {a.file for a in manifest.artifacts}
    missing = [f for f in files or () if f not in known]
    if missing:
        raise DeployError(f"not in the manifest: {', '.join(missing)}")
    path = None if checkpoint is None else Path(checkpoint)
    model, source = load_model_for_source(manifest.model, path)
    progress(f"reference: {source.label}")
    results = check_directory(directory, model, files=list(files or ()) or None, progress=progress)
    return ParityResult(results, reference_description())


def _checked(runner: RunnerOptions | None) -> RunnerOptions:
    """The runner options (default ones if None), their timeout checked."""
    options = runner or RunnerOptions()
    if not options.timeout_s > 0:  # also refuses NaN
        raise DeployError(f"--timeout {options.timeout_s:g}: must be more than 0 seconds")
    return options


def _profile(device: str, profiles: Path | str | None, emulate: bool) -> DeviceProfile:
    profile = get_profile(device, None if profiles is None else Path(profiles))
    return profile.emulated() if emulate else profile


def probe(
    device: str = "host",
    *,
    profiles: Path | str | None = None,
    emulate: bool = False,
    runner: RunnerOptions | None = None,
) -> str:
    """Reach ``device`` (a profile name, see ``edgesam-deploy devices``) and describe it; a device
    that is not there is a DeviceError."""
    return get_runner(_profile(device, profiles, emulate), _checked(runner)).probe()


def _reference_loader(
    directory: Path,
    checkpoint: Path | None,
    random_weights: int | None,
    progress: ProgressFn,
) -> Callable[[], EdgeSam]:
    """Load the reference weights on first use: ``random_weights``, ``checkpoint``, or what the
    manifest names."""

    @functools.cache
    def load() -> EdgeSam:
        source = Manifest.load(directory).model
        if random_weights is not None:
            model, loaded = load_model(source.get("variant", "edgesam"), random_seed=random_weights)
        else:
            model, loaded = load_model_for_source(source, checkpoint)
        progress(f"reference: {loaded.label}")
        return model

    return load


def bench(
    artifacts: Path | str,
    device: str = "host",
    *,
    runs: int = 20,
    warmup: int = 3,
    threads: int | None = None,
    parity: bool = True,
    reference: bool = True,
    emulate: bool = False,
    parity_photos: Sequence[str] | None = None,
    profiles: Path | str | None = None,
    runner: RunnerOptions | None = None,
    checkpoint: Path | str | None = None,
    random_weights: int | None = None,
    progress: ProgressFn = _silent,
) -> BenchReport:
    """Measure the artifacts of an export directory that ``device`` runs: latency, FPS, memory,
    and parity where it runs (``parity_photos``: default all four; one photo when emulated).
    ``reference`` also times the PyTorch reference here; ``runner`` holds connection settings
    (ssh, adb, xcode, timeout)."""
    options = _checked(runner)
    profile = _profile(device, profiles, emulate)
    directory = Path(artifacts)
    if not directory.is_dir():
        raise DeployError(f"{directory}: not a directory")
    settle(directory)
    photos = list(parity_photos) if parity_photos else None
    if emulate and photos is None:
        photos = list(EMULATED_PHOTOS)  # a full-size encoder takes minutes per photo emulated
    settings = BenchSettings(
        runs=runs,
        warmup=warmup,
        threads=threads,
        parity=parity,
        reference=reference,
        parity_photos=photos,
    )
    path = None if checkpoint is None else Path(checkpoint)
    loader = _reference_loader(directory, path, random_weights, progress)
    if path is not None or random_weights is not None:
        loader()  # weights asked for by name are checked before measuring, needed or not
    return run_bench(profile, directory, settings, options, loader, progress)


__all__ = [
    "ExportResult",
    "LoadedModel",
    "ParityResult",
    "bench",
    "export",
    "load_model",
    "parity",
    "probe",
    "resolve_model",
    "split_precisions",
]
