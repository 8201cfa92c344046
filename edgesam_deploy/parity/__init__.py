"""Parity of exported artifacts against the PyTorch reference: the CI gate of every target.

Calling this package, ``edgesam_deploy.parity(DIR)``, is ``edgesam_deploy.api.parity(DIR)``.
"""

from __future__ import annotations

from pathlib import Path

from ..api_callable import make_callable
from ..manifest import Manifest
from ..modeling import EdgeSam
from ..runtimes import open_session
from ..runtimes.base import NotRunnableHere
from ..samples import PARITY_PHOTOS, standard_prompts
from ..vocabulary import ProgressFn, counting
from .engine import ArtifactParity, Reference, case_count, evaluate


def reference_description() -> dict:
    """What the artifacts are compared against (stored with every parity result)."""
    return {
        "model": "PyTorch fp32, bilinear stage-3 upsampling, unfolded",
        "photos": list(PARITY_PHOTOS),
        "prompts": list(standard_prompts(100, 100)),
    }


def check_directory(
    export_dir: Path,
    model: EdgeSam,
    files: list[str] | None = None,
    progress: ProgressFn = lambda m: None,
    reference: Reference | None = None,
) -> list[ArtifactParity]:
    """Evaluate every artifact listed in ``export_dir``'s manifest (or only ``files``);
    ``progress`` counts the parity cases of all of them."""
    manifest = Manifest.load(export_dir)
    records = [r for r in manifest.artifacts if files is None or r.file in files]
    steps = counting(progress)
    reference = reference or Reference(model)
    steps.step("parity: the PyTorch reference")
    total = sum(case_count(r, reference) for r in records)
    steps.step(f"parity: {len(records)} artifact(s)", total=total)
    results = []
    for record in records:
        try:
            session = open_session(record, export_dir, model=model)
        except NotRunnableHere as exc:
            results.append(ArtifactParity.not_measured(record, str(exc)))
            steps.advance(case_count(record, reference))
            continue
        result = evaluate(session, reference, steps)
        changed = manifest.changed(record)
        if changed:
            result.failures.append(changed)
            result.passed = False
        results.append(result)
    return results


__all__ = ["ArtifactParity", "Reference", "evaluate", "check_directory", "reference_description"]
make_callable(__name__)
