"""The host's parity figure of each benchmarked artifact, shown beside the device's: recorded at
export if the file is unchanged, else computed now against the PyTorch fp32 reference here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import DeployError
from ..fileio import sha256_path
from ..manifest import Manifest
from ..parity import Reference, check_directory
from .device_parity import summary_of
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
            out[entry["file"]] = ParitySummary(
                entry["passed"],
                entry["metrics"],
                entry["failures"],
                entry.get("runtime", ""),
                "manifest",
                "host",
            )
    return out


def attach_host_parity(
    results: list[ArtifactResult],
    export_dir: Path,
    manifest: Manifest,
    reference: Callable[[], Reference],
    compute: bool,
    progress: Callable[[str], None] = lambda m: None,
) -> None:
    """Fill ``result.host_parity`` of the exported artifacts in ``results``: the recorded figure of
    any of them; with ``compute`` (rows measured on another device), a figure computed here for
    measured rows without a record (``reference`` is called only then). Artifacts that cannot be
    checked here say why in ``extra``. Each file is judged once, whatever its number of rows (one
    per compute-unit setting on an iPhone)."""
    listed = {a.file: a for a in manifest.artifacts}
    known: dict[str, ParitySummary | None] = dict(_recorded(manifest, export_dir))
    for result in results:
        if result.file not in listed:
            continue
        if result.file not in known and compute and result.measured:
            known[result.file] = _host_summary(result, export_dir, reference, progress)
        result.host_parity = known.get(result.file)


def adopt_recorded(results: list[ArtifactResult]) -> None:
    """Rows timed on this host whose unchanged file was judged here at export take that record as
    their parity: the same artifact on the same machine is not judged twice (``parity DIR``
    judges it again on request)."""
    for result in results:
        recorded = result.host_parity
        if result.measured and result.parity is None and recorded and recorded.source == "manifest":
            result.parity, result.parity_measured_on = recorded, "host"
            result.host_parity, result.parity_reason = None, ""  # the host column: "this row"


def _host_summary(
    result: ArtifactResult,
    export_dir: Path,
    reference: Callable[[], Reference],
    progress: Callable[[str], None],
) -> ParitySummary | None:
    """Parity of ``result``'s artifact judged on this host (None, with the reason in ``extra``,
    where it cannot run here)."""
    progress(f"{result.file}: parity on this host")
    try:
        model = reference()
        (res,) = check_directory(export_dir, model.model, files=[result.file], reference=model)
        return summary_of(res)
    except (DeployError, ImportError) as exc:  # e.g. no runtime for this target on this machine
        result.extra["parity_error"] = f"parity not checked here: {exc}"
        return None
