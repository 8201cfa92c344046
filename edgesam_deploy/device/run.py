"""The device side: run every artifact of a bundle on its cases with this device's runtime and
write the outputs and ``results.json``.

Opens the artifacts with the host's own session classes (ONNX Runtime, LiteRT), which import
neither torch nor PIL. Only judging (on the host) needs the PyTorch reference.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DeployError
from ..fileio import sha256_path
from ..manifest import ArtifactRecord
from ..runtimes.base import GraphSession
from ..vocabulary import Role, Target, graph_spec
from .protocol import (
    STATUS_ERROR,
    ArtifactOutputs,
    Bundle,
    BundleArtifact,
    Results,
    Settings,
    read_tensor,
    write_tensor,
)

ARTIFACTS_DIR = "artifacts"
# ONNX Runtime execution providers per delegate name; the CPU provider is always the fallback.
# Without a delegate: the accelerators this build has (as the host benchmark), then the CPU.
ORT_PROVIDERS = {
    "cpu": [],
    "cuda": ["CUDAExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
}
LITERT_DELEGATES = ("xnnpack", "cpu")  # what the LiteRT Python interpreter can apply by itself


def _delegate(settings: Settings, runtime: str) -> str | None:
    """The delegate of ``settings`` if it is meant for ``runtime`` (the profile names that
    runtime, or none / auto); a delegate of another runtime leaves this one at its default."""
    return settings.delegate if settings.runtime in (None, "auto", runtime) else None


def _ort_providers(delegate: str | None) -> list[str]:
    if delegate is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
        return [p for p in ORT_PROVIDERS["tensorrt"] if p in available] + ["CPUExecutionProvider"]
    if delegate not in ORT_PROVIDERS:
        raise DeployError(
            f"unknown ONNX Runtime delegate '{delegate}'; choose from {', '.join(ORT_PROVIDERS)}"
        )
    return ORT_PROVIDERS[delegate] + ["CPUExecutionProvider"]


def open_artifact(path: Path, artifact: BundleArtifact, settings: Settings) -> GraphSession:
    """Load one artifact with the runtime, threads and delegate of ``settings``."""
    record = ArtifactRecord(
        artifact.file, str(artifact.target), str(artifact.role), artifact.precision,
        [], [], path.stat().st_size, artifact.sha256,
    )  # fmt: skip
    if artifact.target == Target.ONNX:
        from ..runtimes.onnxruntime import OrtSession

        providers = _ort_providers(_delegate(settings, "onnxruntime"))
        return OrtSession(record, path, threads=settings.threads, providers=providers)
    if artifact.target == Target.TFLITE:
        from ..runtimes.litert import LiteRtSession

        delegate = _delegate(settings, "litert")
        if delegate not in (None, *LITERT_DELEGATES):
            raise DeployError(
                f"the LiteRT Python interpreter cannot apply the '{delegate}' delegate "
                f"(it runs {' or '.join(LITERT_DELEGATES)}); "
                "on a phone use the adb runner's benchmark_model"
            )
        return LiteRtSession(record, path, threads=settings.threads, xnnpack=delegate != "cpu")
    raise DeployError(
        f"target '{artifact.target}' has no runtime on this device side "
        "(Core ML runs in the iPhone app)"
    )


def _runtime_facts(session: GraphSession) -> dict:
    facts = dict(session.describe())
    package = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}.get(session.runtime)
    if package:
        try:
            facts["version"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        k: v for k, v in facts.items() if isinstance(v, (str, int, float, bool, list, type(None)))
    }


def run_artifact(bundle: Bundle, bundle_dir: Path, index: int, out_dir: Path) -> ArtifactOutputs:
    """Run artifact ``index`` on its cases; outputs go to ``out_dir/<index>/<case>/<output>.bin``.

    Whatever goes wrong (load, a run, a mismatched file) becomes this artifact's ``error``.
    """
    artifact = bundle.artifacts[index]
    result = ArtifactOutputs(artifact.file)
    path = Path(bundle_dir) / ARTIFACTS_DIR / artifact.file
    try:
        if not path.exists():
            raise DeployError(f"{ARTIFACTS_DIR}/{artifact.file} is not in the bundle")
        if artifact.sha256 and sha256_path(path) != artifact.sha256:
            raise DeployError("sha256 differs from the bundle's: the file was damaged on the way")
        session = open_artifact(path, artifact, bundle.settings)
        result.runtime = _runtime_facts(session)
        outputs = graph_spec(artifact.role).output_names
        for case_id in artifact.cases:
            case = bundle.case(case_id)
            feeds = {name: read_tensor(bundle_dir, spec) for name, spec in case.feeds.items()}
            if artifact.role == Role.DECODER and not session.accepts_points(
                feeds["point_labels"].shape[1]
            ):
                result.skipped[case_id] = f"no input for {feeds['point_labels'].shape[1]} points"
                continue
            produced = session.run(feeds)
            result.outputs[case_id] = {
                name: write_tensor(
                    out_dir, f"{index}/{case_id}/{name}.bin", np.asarray(produced[name])
                )
                for name in outputs
            }
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own types; one artifact fails
        result.status, result.error = STATUS_ERROR, _one_line(exc)
        result.outputs = {}
    return result


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    message = text[0][:300] if text else ""
    return message if isinstance(exc, DeployError) else f"{type(exc).__name__}: {message}"


def device_facts() -> dict[str, str]:
    """Where the outputs were computed."""
    return {
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "node": platform.node(),
    }


def run_bundle(
    bundle_dir: Path,
    out_dir: Path,
    threads: int | None = None,
    delegate: str | None = None,
    progress: Callable[[str], None] = lambda m: None,
) -> Results:
    """Run every artifact of the bundle at ``bundle_dir``; ``threads`` / ``delegate`` override the
    bundle's settings. Writes ``out_dir/results.json`` and returns it."""
    bundle = Bundle.load(bundle_dir)
    if threads is not None:
        bundle.settings.threads = threads
    if delegate is not None:
        bundle.settings.delegate = delegate
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for index, artifact in enumerate(bundle.artifacts):
        progress(f"{artifact.file}: {len(artifact.cases)} case(s)")
        artifacts.append(run_artifact(bundle, Path(bundle_dir), index, out_dir))
    results = Results({**device_facts(), "settings": bundle.settings.as_dict()}, artifacts)
    results.save(out_dir)
    return results
