"""Parity measured where the benchmark ran: write a bundle of the parity cases, let the runner run
it on its device, judge what comes back with the host's parity engine (docs/device-parity.md)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from ..device.protocol import Settings
from ..devices import DeviceProfile
from ..errors import DeployError
from ..manifest import ArtifactRecord
from ..parity import ArtifactParity, Reference
from ..parity.bundle import write_bundle
from ..parity.judge import judge_device_outputs
from .runners import BenchRequest, Runner
from .schema import ArtifactResult, ParitySummary


def summary_of(result: ArtifactParity, source: str = "computed") -> ParitySummary:
    """The bench report's view of one parity result."""
    return ParitySummary(
        result.passed, result.metrics, result.failures, result.runtime, source, result.measured_on
    )


def protocol_settings(profile: DeviceProfile, threads: int | None) -> Settings:
    """The bundle's run settings: the profile's runtime options and the benchmark's threads."""
    return Settings(
        threads=threads,
        runtime=profile.runtime,
        delegate=profile.delegate,
        compute_units=profile.compute_units,
    )


def outside_protocol(record: ArtifactRecord) -> str | None:
    """Why the protocol's cases cannot judge ``record`` (None if they can)."""
    if record.details.get("mask_input"):
        return "protocol v1 has no previous-mask cases (decoder with mask_input)"
    return None


def measure_device_parity(
    runner: Runner,
    request: BenchRequest,
    results: list[ArtifactResult],
    reference: Callable[[], Reference],
    settings: Settings,
) -> None:
    """Fill ``parity`` and ``parity_measured_on`` of the rows whose outputs the device can return,
    and ``parity_reason`` of the others. ``reference`` is called only if some artifact runs."""
    by_file = {r.file: r for r in results}
    chosen = []
    for record in request.artifacts:
        row = by_file[record.file]
        if row.parity is not None:  # already judged on this host (the export's record)
            continue
        reason = (
            runner.parity_unsupported(record)
            or outside_protocol(record)
            or ("" if row.measured else f"not run on the device ({row.reason})")
        )
        if reason:
            row.parity_reason = reason
        else:
            chosen.append(record)
    if not chosen:
        return
    with tempfile.TemporaryDirectory(prefix="edgesam-parity-") as tmp:
        bundle, outputs = Path(tmp) / "bundle", Path(tmp) / "outputs"
        request.progress(f"parity: bundle of {len(chosen)} artifact(s) for {runner.profile.name}")
        ref = reference()
        write_bundle(bundle, ref, chosen, request.export_dir, settings)
        try:
            request.progress(f"parity: running the cases ({runner.measured_on})")
            runner.run_parity(bundle, outputs, request)
        except DeployError as exc:  # the device went away: these rows say so, the bench goes on
            for record in chosen:
                by_file[record.file].parity_reason = f"device parity did not complete: {exc}"
            return
        request.progress("parity: judging the outputs against the PyTorch reference")
        for judged in judge_device_outputs(bundle, outputs, ref, runner.measured_on):
            row = by_file[judged.file]
            row.parity, row.parity_measured_on = summary_of(judged), judged.measured_on
            row.parity_reason = ""
