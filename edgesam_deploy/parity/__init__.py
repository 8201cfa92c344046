"""Parity of exported artifacts against the PyTorch reference: the CI gate of every target."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..manifest import Manifest
from ..modeling import EdgeSam
from ..runtimes import open_session
from .engine import ArtifactParity, Reference, evaluate


def check_directory(
    export_dir: Path,
    model: EdgeSam,
    files: list[str] | None = None,
    progress: Callable[[str], None] = lambda m: None,
    reference: Reference | None = None,
) -> list[ArtifactParity]:
    """Evaluate every artifact listed in ``export_dir``'s manifest (or only ``files``)."""
    manifest = Manifest.load(export_dir)
    reference = reference or Reference(model)
    results = []
    for record in manifest.artifacts:
        if files is not None and record.file not in files:
            continue
        session = open_session(record, export_dir, model=model)
        results.append(evaluate(session, reference, progress))
    return results


__all__ = ["ArtifactParity", "Reference", "evaluate", "check_directory"]
