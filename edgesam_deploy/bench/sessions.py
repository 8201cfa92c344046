"""Which artifacts can run on this machine, and with which session options.

This is the one place that maps benchmark settings (threads, accelerators) to each runtime
session's own option names.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..manifest import ArtifactRecord
from ..runtimes import GraphSession, open_session
from ..vocabulary import Target

_ORT_ACCELERATORS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def why_not_here(target: str) -> str | None:
    """None if artifacts of ``target`` can run here, else the reason."""
    if target == Target.ONNX:
        return (
            None
            if _has("onnxruntime")
            else "onnxruntime is not installed (pip install 'edgesam-deploy[onnx]')"
        )
    if target == Target.TFLITE:
        if not _has("ai_edge_litert"):
            return "ai-edge-litert is not installed (pip install 'edgesam-deploy[tflite]')"
        return (
            None
            if _has("edgesam_deploy.runtimes.litert")
            else "this edgesam-deploy has no LiteRT session"
        )
    if target == Target.COREML:
        if sys.platform != "darwin":
            return "Core ML predictions need macOS (measure on an iPhone with --device iphone14, or on a Mac)"
        return (
            None
            if _has("coremltools")
            else "coremltools is not installed (pip install 'edgesam-deploy[coreml]')"
        )
    if target == Target.EXECUTORCH:
        hint = "executorch is not installed (pip install 'edgesam-deploy[executorch]')"
        return None if _has("executorch") else hint
    return f"no runtime for target '{target}'"


def ort_providers() -> list[str]:
    """GPU providers of ONNX Runtime present here (TensorRT, CUDA), then the CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in _ORT_ACCELERATORS if p in available] + ["CPUExecutionProvider"]


def session_options(target: str, threads: int | None) -> dict:
    """Keyword options of the session class of ``target``."""
    if target == Target.ONNX:
        return {"threads": threads, "providers": ort_providers()}
    if target in ("tflite", "executorch"):
        return {"threads": threads}
    return {}


def open_local(record: ArtifactRecord, root: Path, threads: int | None) -> GraphSession:
    """Open an artifact with this machine's runtime and the benchmark's options."""
    return open_session(record, root, **session_options(record.target, threads))
