"""Benchmark orchestration: pick the profile's artifacts, reach the device, measure, add parity."""

from __future__ import annotations

import datetime
import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..devices import DeviceProfile, select_artifacts
from ..errors import DeployError
from ..manifest import Manifest
from ..modeling import EdgeSam
from ..parity import Reference
from ..samples import PARITY_PHOTOS
from ..vocabulary import ProgressFn, counting
from .device_parity import measure_device_parity, protocol_settings
from .parity_summary import adopt_recorded, attach_host_parity
from .runners import BenchRequest, RunnerOptions, get_runner
from .schema import BenchReport

MAX_THREADS = 256  # more than any phone or board has cores; a runtime asked for 10^5 hangs


@dataclass
class BenchSettings:
    """How long and with what to measure."""

    runs: int = 20
    warmup: int = 3
    threads: int | None = None
    parity: bool = True
    reference: bool = True  # measure the PyTorch reference beside the artifacts (this machine only)
    parity_photos: list[str] | None = None  # parity photos (default: all of samples.PARITY_PHOTOS)

    def validate(self) -> None:
        if self.runs < 1 or self.warmup < 0:
            raise DeployError("--runs must be at least 1 and --warmup at least 0")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise DeployError(f"--threads must be from 1 to {MAX_THREADS}")
        unknown = sorted(set(self.parity_photos or []) - set(PARITY_PHOTOS))
        if unknown:
            raise DeployError(
                f"unknown parity photo(s) {', '.join(unknown)}; choose from "
                f"{', '.join(PARITY_PHOTOS)}"
            )


def run_bench(
    profile: DeviceProfile,
    export_dir: Path,
    settings: BenchSettings,
    options: RunnerOptions,
    model: Callable[[], EdgeSam],
    progress: ProgressFn = lambda m: None,
) -> BenchReport:
    """Measure the artifacts of ``export_dir`` that ``profile`` wants on its device.

    ``model`` gives the reference weights; it is called only for the PyTorch reference rows and
    for parity. Parity is measured on the device through the device-parity protocol and, beside
    it, on this host (recorded in the manifest, else computed here when the device is elsewhere).
    On this host, a file the export already judged here keeps that record (not judged twice).
    """
    settings.validate()
    manifest = Manifest.load(export_dir)
    records = select_artifacts(profile, manifest.artifacts, export_dir)
    runner = get_runner(profile, options)
    steps = counting(progress)
    steps.step(runner.probe())
    for record in records:  # the numbers must be those of the files the manifest describes
        changed = manifest.changed(record)
        if changed:
            raise DeployError(
                f"{manifest.artifact_path(record)}: {changed}; export again, or bench the export "
                "it came from"
            )
    threads = settings.threads or profile.threads
    with tempfile.TemporaryDirectory(prefix="edgesam-bench-") as tmp:
        reference_state = None
        if settings.reference and runner.kind == "local":
            import torch

            reference_state = Path(tmp) / "reference.pt"
            torch.save(model().state_dict(), reference_state)
        request = BenchRequest(
            Path(export_dir),
            manifest,
            records,
            settings.runs,
            settings.warmup,
            threads,
            reference_state,
            steps,
        )
        steps.step(
            f"timing {len(records)} artifact(s), {settings.warmup} warm-up and "
            f"{settings.runs} timed run(s) each"
        )
        outcome = runner.run(request)
        if settings.parity:
            reference = functools.cache(lambda: Reference(model(), settings.parity_photos))
            rows, on_device = outcome.artifacts, protocol_settings(profile, threads)
            elsewhere = runner.measured_on != "host"
            attach_host_parity(rows, export_dir, manifest, reference, elsewhere, steps)
            if not elsewhere:
                adopt_recorded(rows)
            measure_device_parity(runner, request, rows, reference, on_device)
        else:
            for row in outcome.artifacts:
                row.parity_reason = "skipped (--no-parity)"
    return BenchReport(
        device=outcome.device,
        settings={
            "runs": settings.runs,
            "warmup": settings.warmup,
            "threads": threads,
            "profile": profile.as_dict(),
        },
        versions=outcome.versions,
        model=manifest.model,
        artifacts=outcome.artifacts,
        pipelines=outcome.pipelines,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
