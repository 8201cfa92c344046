"""Open an artifact of any target with the runtime that executes it here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DeployError
from ..manifest import ArtifactRecord, unlike_record
from ..manifest_schema import inside
from ..registry import LazyRegistry
from ..vocabulary import Target
from .base import GraphSession

if TYPE_CHECKING:  # torch stays unimported: the device side opens sessions through this package
    from ..modeling import EdgeSam

SESSIONS = LazyRegistry(
    "runtime target",
    {
        Target.ONNX: "edgesam_deploy.runtimes.onnxruntime:OrtSession",
        Target.TFLITE: "edgesam_deploy.runtimes.litert:LiteRtSession",
        Target.COREML: "edgesam_deploy.runtimes.coreml:CoremlSession",
        Target.EXECUTORCH: "edgesam_deploy.runtimes.executorch:ExecutorchSession",
    },
)


def open_session(
    record: ArtifactRecord, root: Path, model: EdgeSam | None = None, **options: Any
) -> GraphSession:
    """Load ``record`` (relative to export dir ``root``) in its runtime; options go to the session,
    ``model`` (reference weights) to sessions that need it (see ``GraphSession.open``). A file
    whose size is not the record's, or whose graph is not the one its record declares
    (``GraphSession.check_interface``), is refused in one line."""
    if record.target not in SESSIONS:
        raise DeployError(f"no runtime for target '{record.target}'")
    path = inside(Path(root), record.file, str(root))
    reason = unlike_record(path, record)
    if reason:
        raise DeployError(f"{path}: {reason}")
    session = SESSIONS[record.target].open(record, path, model=model, **options)
    session.check_interface()
    return session


__all__ = ["GraphSession", "open_session"]
