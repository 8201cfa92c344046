"""Export orchestration: load once, run each target's exporter, gate with parity, write the manifest."""

from __future__ import annotations

from pathlib import Path

from ..checkpoints import ModelSource
from ..errors import DeployError
from ..exportdir import export_transaction
from ..manifest import MANIFEST_NAME, ArtifactRecord, Manifest, ManifestError
from ..modeling import EdgeSam
from ..parity import ArtifactParity, check_directory, reference_description
from ..vocabulary import ProgressFn, Role, Target, counting
from . import EXPORTERS, get_exporter
from .base import ExportContext, Exporter, ExportOptions

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


def _existing_manifest(out_dir: Path, source: ModelSource) -> Manifest:
    """The directory's manifest to extend (one of another model is refused), or a new one."""
    if not (out_dir / MANIFEST_NAME).exists():
        return Manifest(model=source.as_dict())
    manifest = Manifest.load(out_dir)
    if manifest.model != source.as_dict():
        raise ManifestError(
            f"{out_dir} holds an export of another model; choose an empty --out directory"
        )
    return manifest


def _conversions(exporter: Exporter, ctx: ExportContext) -> int:
    """How many artifacts ``exporter`` writes in ``ctx``: each of its precisions, per role."""
    return len(Role) * len(exporter.resolve_precisions(exporter.options(ctx).precisions))


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
    manifest. Dependencies of every target are checked before anything is written. The export is
    one transaction (``exportdir``): it commits completely or leaves the directory as it was; an
    existing manifest of the same model is extended, one of another model is refused.
    """
    exporters = [get_exporter(t) for t in targets]
    for exporter in exporters:
        exporter.check_dependencies()
    out_dir = Path(out_dir)
    steps = counting(progress)
    with export_transaction(out_dir) as txn:
        manifest = _existing_manifest(out_dir, source)
        ctx = ExportContext(
            model=model, source=source, out_dir=txn.staging, options=options, progress=steps
        )
        conversions = sum(_conversions(e, ctx) for e in exporters)
        steps.step(f"exporting {conversions} artifact(s): {', '.join(targets)}", conversions)
        new: list[ArtifactRecord] = []
        for exporter in exporters:
            new.extend(exporter.export(ctx))
        manifest.add(new)
        txn.commit(manifest, [r.file for r in new])
        results: list[ArtifactParity] = []
        if run_parity:
            files = [r.file for r in new]
            results = check_directory(out_dir, model, files=files, progress=steps)
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
