"""Export orchestration: load once, run each target's exporter, gate with parity, write the manifest."""
from __future__ import annotations

from pathlib import Path

from ..checkpoints import ModelSource
from ..errors import DeployError
from ..manifest import ArtifactRecord, Manifest, ManifestError
from ..modeling import EdgeSam
from ..parity import ArtifactParity, check_directory, reference_description
from ..vocabulary import ProgressFn, Target
from . import EXPORTERS, get_exporter
from .base import ExportContext, ExportOptions

ALL_TARGETS = "all"


def resolve_targets(target: str) -> list[Target]:
    """``all`` or a comma-separated list -> targets (validated, at least one)."""
    if target.strip() == ALL_TARGETS:
        return [Target(t) for t in EXPORTERS]
    names = [t.strip() for t in target.split(",") if t.strip()]
    if not names:
        raise DeployError(f"--target: name at least one of {', '.join(EXPORTERS)} or {ALL_TARGETS}")
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        choices = ", ".join(EXPORTERS)
        raise DeployError(f"unknown target '{unknown[0]}'; choose from {choices} or {ALL_TARGETS}")
    return [Target(n) for n in dict.fromkeys(names)]


def run_export(
    model: EdgeSam,
    source: ModelSource,
    targets: list[Target],
    out_dir: Path,
    options: ExportOptions,
    run_parity: bool = True,
    progress: ProgressFn = lambda m: None,
) -> tuple[Manifest, list[ArtifactParity]]:
    """Export ``targets`` into ``out_dir`` against one ``ExportContext`` (graphs, calibration data
    and the equalization search are computed once) and record them, with their parity, in its
    manifest. Dependencies of every target are checked before anything is written. An existing
    manifest of the same model is extended; one of another model is refused.
    """
    exporters = [get_exporter(t) for t in targets]
    for exporter in exporters:
        exporter.check_dependencies()
    out_dir = Path(out_dir)
    try:
        manifest = Manifest.load(out_dir)
        if manifest.model != source.as_dict():
            raise ManifestError(f"{out_dir} holds an export of another model; choose an empty --out directory")
    except ManifestError as exc:
        if (out_dir / "manifest.json").exists():
            raise exc
        manifest = Manifest(model=source.as_dict())
    ctx = ExportContext(model=model, source=source, out_dir=out_dir, options=options, progress=progress)
    new: list[ArtifactRecord] = []
    for exporter in exporters:
        progress(f"{exporter.target}: exporting")
        records = exporter.export(ctx)
        manifest.add(records)
        manifest.save(out_dir)  # each finished target is recorded even if a later one fails
        new.extend(records)
    results: list[ArtifactParity] = []
    if run_parity:
        results = check_directory(out_dir, model, files=[r.file for r in new], progress=progress)
        previous = {a["file"]: a for a in (manifest.parity or {}).get("artifacts", [])}
        previous.update({r.file: r.as_dict() for r in results})
        manifest.parity = {
            "passed": all(a["passed"] for a in previous.values()),
            "reference": reference_description(),
            "artifacts": list(previous.values()),
        }
        manifest.save(out_dir)
    return manifest, results


__all__ = ["ALL_TARGETS", "resolve_targets", "run_export"]
