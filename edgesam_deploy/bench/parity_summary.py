"""The parity verdict of each benchmarked artifact: recorded at export if the file is unchanged,
else computed now against the PyTorch fp32 reference on this machine."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DeployError
from ..fileio import sha256_path
from ..manifest import Manifest
from ..modeling import EdgeSam
from ..parity import Reference, check_directory
from .schema import ArtifactResult, ParitySummary


def _recorded(manifest: Manifest, export_dir: Path) -> dict[str, ParitySummary]:
    """Parity stored in the manifest, for files whose SHA-256 still matches their record."""
    sha = {a.file: a.sha256 for a in manifest.artifacts}
    out = {}
    for entry in (manifest.parity or {}).get("artifacts", []):
        if not entry.get("measured", True):  # e.g. an Apple-only delegate checked on Linux
            continue
        path = Path(export_dir) / entry["file"]
        if entry["file"] in sha and path.exists() and sha256_path(path) == sha[entry["file"]]:
            out[entry["file"]] = ParitySummary(entry["passed"], entry["metrics"], entry["failures"], entry.get("runtime", ""), "manifest")
    return out


def attach_parity(
    results: list[ArtifactResult],
    export_dir: Path,
    manifest: Manifest,
    model: Callable[[], EdgeSam],
    progress: Callable[[str], None] = lambda m: None,
) -> None:
    """Fill ``result.parity`` of the exported artifacts in ``results``: recorded parity for any of them,
    computed parity for measured ones without a record (``model`` is called only then). Artifacts
    that cannot be checked here say why in ``extra``."""
    listed = {a.file for a in manifest.artifacts}
    recorded = _recorded(manifest, export_dir)
    missing = [r.file for r in results if r.measured and r.file in listed and r.file not in recorded]
    computed: dict[str, ParitySummary] = {}
    if missing:
        weights = model()
        reference = Reference(weights)
        for file in missing:
            progress(f"{file}: parity")
            try:
                (res,) = check_directory(export_dir, weights, files=[file], reference=reference)
            except (DeployError, ImportError) as exc:  # e.g. no runtime for this target on this machine
                next(r for r in results if r.file == file).extra["parity_error"] = f"parity not checked here: {exc}"
                continue
            computed[file] = ParitySummary(res.passed, res.metrics, res.failures, res.runtime, "computed")
    for result in results:
        result.parity = recorded.get(result.file) or computed.get(result.file)
