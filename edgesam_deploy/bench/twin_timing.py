"""Runs inside the emulated ARM64 twin: load each artifact of a bundle and time it on the bundle's
own feeds (``python -m edgesam_deploy.bench.twin_timing BUNDLE OUT.json RUNS WARMUP``).

The bundle's case ids are the latency keys of the report (``encoder``, ``decoder_1_click``,
``decoder_16_points``). Like the device side it needs NumPy and the runtime only. The times are
the emulator's, never a device's: the host labels them ``emulated``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ..device.protocol import Bundle, read_tensor
from ..device.run import ARTIFACTS_DIR, open_artifact
from .metrics import timed


def time_artifact(
    bundle: Bundle, bundle_dir: Path, index: int, runs: int, warmup: int
) -> dict[str, Any]:
    """Load time, the session's description and the run times (ms) of each case of ``index``."""
    artifact = bundle.artifacts[index]
    start = time.perf_counter()
    session = open_artifact(bundle_dir / ARTIFACTS_DIR / artifact.file, artifact, bundle.settings)
    out: dict[str, Any] = {
        "load_ms": (time.perf_counter() - start) * 1e3,
        "runtime": session.runtime,
        "details": session.describe(),
        "samples_ms": {},
    }
    for case_id in artifact.cases:
        case = bundle.case(case_id)
        feeds = {name: read_tensor(bundle_dir, spec) for name, spec in case.feeds.items()}
        out["samples_ms"][case_id] = timed(lambda feeds=feeds: session.run(feeds), runs, warmup)
    return out


def main(argv: list[str]) -> int:
    bundle_dir, out_file, runs, warmup = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    bundle = Bundle.load(bundle_dir)
    results = {}
    for index, artifact in enumerate(bundle.artifacts):
        try:
            results[artifact.file] = time_artifact(bundle, bundle_dir, index, runs, warmup)
        except Exception as exc:  # noqa: BLE001 - runtimes raise their own types
            message = (str(exc).strip().splitlines() or [""])[0][:300]
            results[artifact.file] = {"error": f"{type(exc).__name__}: {message}"}
    out_file.write_text(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
