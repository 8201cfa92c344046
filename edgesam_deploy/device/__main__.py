"""``python -m edgesam_deploy.device BUNDLE OUTDIR [--threads N] [--delegate D]``: the device
side of the parity protocol. Needs NumPy and the runtime only. Exit 0 when results.json was
written (an artifact that failed says so in it), 2 on a bad bundle, with one line on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DeployError
from .protocol import STATUS_OK
from .run import run_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgesam_deploy.device", description=__doc__.split("\n")[0]
    )
    parser.add_argument("bundle", type=Path, help="bundle folder with protocol.json")
    parser.add_argument("outdir", type=Path, help="folder for results.json and the output tensors")
    parser.add_argument("--threads", type=int, default=None, help="override the bundle's threads")
    parser.add_argument("--delegate", default=None, help="override the bundle's delegate")
    args = parser.parse_args(argv)
    try:
        results = run_bundle(args.bundle, args.outdir, args.threads, args.delegate)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for artifact in results.artifacts:
        verdict = (
            f"{len(artifact.outputs)} case(s)"
            if artifact.status == STATUS_OK
            else f"error: {artifact.error}"
        )
        print(f"{artifact.file}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
