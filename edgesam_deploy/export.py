"""Export orchestration: load once, run each target's exporter, gate with parity, write the manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .checkpoints import ModelSource
from .errors import DeployError
from .exportdir import export_transaction
from .exporters import TARGETS, ExportContext, ExportOptions, get_exporter
from .manifest import MANIFEST_NAME, ArtifactRecord, Manifest, ManifestError
from .modeling import EdgeSam
from .parity import ArtifactParity, check_directory, reference_description


def resolve_targets(target: str) -> list[str]:
    """``all`` or a comma-separated list -> target names (validated, at least one)."""
    names = list(TARGETS) if target == "all" else [t.strip() for t in target.split(",") if t.strip()]
    if not names:
        choices = ", ".join(TARGETS)
        raise DeployError(f"--target {target!r} names no target; choose from {choices} or all")
    for name in names:
        get_exporter(name)  # raises DeployError for an unknown target
    return names


def _existing_manifest(out_dir: Path, source: ModelSource) -> Manifest:
    """The directory's manifest to extend (one of another model is refused), or a new one."""
    if not (out_dir / MANIFEST_NAME).exists():
        return Manifest(model=source.as_dict())
    manifest = Manifest.load(out_dir)
    if manifest.model != source.as_dict():
        raise ManifestError(f"{out_dir} holds an export of another model; choose an empty --out directory")
    return manifest


def run_export(
    model: EdgeSam,
    source: ModelSource,
    targets: list[str],
    out_dir: Path,
    options: ExportOptions,
    run_parity: bool = True,
    progress: Callable[[str], None] = lambda m: None,
) -> tuple[Manifest, list[ArtifactParity]]:
    """Export ``targets`` into ``out_dir`` and record them (and their parity) in its manifest.

    Dependencies of every target are checked before anything is written. The export is one
    transaction (``exportdir``): it commits completely or leaves the directory as it was; an
    existing manifest of the same model is extended, one of another model is refused.
    """
    exporters = [get_exporter(t) for t in targets]
    for exporter in exporters:
        exporter.check_dependencies()
    out_dir = Path(out_dir)
    with export_transaction(out_dir) as txn:
        manifest = _existing_manifest(out_dir, source)
        ctx = ExportContext(
            model=model, source=source, out_dir=txn.staging, options=options, progress=progress
        )
        new: list[ArtifactRecord] = []
        for exporter in exporters:
            progress(f"{exporter.target}: exporting")
            new.extend(exporter.export(ctx))
        manifest.add(new)
        txn.commit(manifest, [r.file for r in new])
        results: list[ArtifactParity] = []
        if run_parity:
            files = [r.file for r in new]
            results = check_directory(out_dir, model, files=files, progress=progress)
            previous = {a["file"]: a for a in (manifest.parity or {}).get("artifacts", [])}
            previous.update({r.file: r.as_dict() for r in results})
            manifest.parity = {
                "passed": all(a["passed"] for a in previous.values()),
                "reference": reference_description(),
                "artifacts": list(previous.values()),
            }
            manifest.save(out_dir)
    return manifest, results


__all__ = ["resolve_targets", "run_export"]
