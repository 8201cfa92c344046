"""A fake ``xcrun`` / ``xcodebuild`` for tests/test_bench_xcode.py (run by wrappers of both names
on PATH). It answers the device-listing commands with recorded real outputs, keeps an app data
container in a folder, and plays the benchmark app when "launched": it unpacks the job pack,
checks the bundle's feeds, and writes bench.json or the device-parity outputs in the formats of
apps/ios. Its timings are fixed test values and its parity outputs are the reference's own (or
corrupted on request): a test of the host's orchestration, never a device measurement.

Environment: FAKE_STATE (a folder: calls.jsonl, container/), FAKE_DATA (tests/data/xcode),
FAKE_REFERENCE (index.json of reference outputs per case), FAKE_BUILD_LOG (a recorded failed
build log to print), FAKE_CORRUPT (an artifact file whose parity outputs become NaN),
FAKE_APP_ERROR (the one-line error the app reports in done.json).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from edgesam_deploy.bench.parsers.xcode_app import read_pack, write_pack

STATE = Path(os.environ["FAKE_STATE"])
DOCUMENTS = STATE / "container" / "Documents"
STATS = {"p50": 10.0, "p90": 12.0, "min": 9.0, "mean": 10.5, "std": 0.5, "max": 13.0}
OUTPUTS = {"encoder": ["image_embeddings"], "decoder": ["scores", "masks"]}


def option(name: str) -> str:
    return sys.argv[sys.argv.index(name) + 1]


def fail(message: str) -> None:
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def check_feeds(bundle: Path, protocol: dict) -> None:
    """Every feed listed, present, of the size its shape needs; every artifact present."""
    for case in protocol["cases"]:
        for feed in case["feeds"].values():
            path = bundle / feed["file"]
            if not path.is_file() or path.stat().st_size != 4 * math.prod(feed["shape"]):
                raise ValueError(f"bad feed {feed['file']}")
    for artifact in protocol["artifacts"]:
        if not (bundle / "artifacts" / artifact["file"]).exists():
            raise ValueError(f"missing artifact {artifact['file']}")


def bench(job: dict, protocol: dict) -> dict:
    rows, pipelines = [], []
    stats = {**STATS, "runs": job["runs"]}
    for unit in job["compute_units"]:
        for artifact in protocol["artifacts"]:
            keys = (
                ["encoder"]
                if artifact["role"] == "encoder"
                else ["decoder_1_click", "decoder_16_points"]
            )
            row = {
                "file": artifact["file"],
                "compute_units": unit,
                "measured": True,
                "reason": "",
                "load_ms": 100.0,
                "peak_rss_mib": 200.0,
                "rss_delta_mib": 50.0,
                "latency": {k: stats for k in keys},
                "extra": {"compile_ms": 900.0},
            }
            if artifact["role"] == "decoder":
                row["clicks_per_s"] = 95.0
            rows.append(row)
        for spec in job["pipelines"]:
            pipelines.append(
                {
                    **spec,
                    "compute_units": unit,
                    "measured": True,
                    "reason": "",
                    "fps": 100.0,
                    "end_to_end": stats,
                    "time_to_first_mask_ms": 1500.0,
                }
            )
    device = {
        "system": "iOS 17.5",
        "machine": "iPhone14,7",
        "processors": "6",
        "simulator": "false",
    }
    return {
        "format": "edgesam-ios-bench",
        "version": 1,
        "run_id": job["run_id"],
        "device": device,
        "artifacts": rows,
        "pipelines": pipelines,
    }


def parity(job: dict, protocol: dict, outputs: Path) -> None:
    reference = json.loads(Path(os.environ["FAKE_REFERENCE"]).read_text())
    root = Path(os.environ["FAKE_REFERENCE"]).parent
    entries = []
    for index, artifact in enumerate(protocol["artifacts"]):
        written = {}
        for case in artifact["cases"]:
            written[case] = {}
            for name in OUTPUTS[artifact["role"]]:
                spec = reference[case][name]
                data = np.fromfile(root / spec["file"], dtype="<f4")
                if artifact["file"] == os.environ.get("FAKE_CORRUPT"):
                    data = np.full_like(data, np.nan)
                dest = f"{index}/{case}/{name}.bin"
                (outputs / dest).parent.mkdir(parents=True, exist_ok=True)
                (outputs / dest).write_bytes(data.tobytes())
                written[case][name] = {**spec, "file": dest}
        runtime = {"runtime": "coreml", "compute_units": job["parity_compute_units"], "os": "17.5"}
        entries.append(
            {
                "file": artifact["file"],
                "status": "ok",
                "error": "",
                "runtime": runtime,
                "outputs": written,
            }
        )
    (outputs / "results.json").write_text(
        json.dumps(
            {
                "protocol": "edgesam-device-parity",
                "version": 1,
                "device": {"system": "iOS 17.5"},
                "artifacts": entries,
            }
        )
    )


def play_app(run_id: str) -> None:
    """What apps/ios does after a launch, with fixed numbers."""
    work, out = STATE / "app", STATE / "out"
    for folder in (work, out):
        shutil.rmtree(folder, ignore_errors=True)
    out.mkdir(parents=True)
    status = {"run_id": run_id, "status": "ok", "error": ""}
    try:
        if os.environ.get("FAKE_APP_ERROR"):
            raise ValueError(os.environ["FAKE_APP_ERROR"])
        read_pack(DOCUMENTS / f"edgesam-job-{run_id}.pack", work)
        job = json.loads((work / "job.json").read_text())
        protocol = json.loads((work / "bundle" / "protocol.json").read_text())
        check_feeds(work / "bundle", protocol)
        if job["mode"] == "timing":
            (out / "bench.json").write_text(json.dumps(bench(job, protocol)))
        else:
            (out / "outputs").mkdir()
            parity(job, protocol, out / "outputs")
        write_pack(DOCUMENTS / f"edgesam-result-{run_id}.pack", {p.name: p for p in out.iterdir()})
    except (ValueError, KeyError, OSError) as exc:
        status = {"run_id": run_id, "status": "error", "error": str(exc)}
    (DOCUMENTS / f"edgesam-done-{run_id}.json").write_text(json.dumps(status))


def devicectl(args: list[str]) -> None:
    if args[:2] == ["list", "devices"]:
        shutil.copy(
            Path(os.environ["FAKE_DATA"]) / "devicectl_list_devices_maestro.json",
            option("--json-output"),
        )
    elif args[:3] == ["device", "copy", "to"]:
        DOCUMENTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(option("--source"), STATE / "container" / option("--destination"))
    elif args[:3] == ["device", "copy", "from"]:
        source = STATE / "container" / option("--source")
        if not source.is_file():
            fail(f"The file {option('--source')} doesn't exist.")
        shutil.copy(source, option("--destination"))
    elif args[:3] == ["device", "process", "launch"]:
        play_app(args[args.index("--run-id") + 1])
    elif args[:3] != ["device", "install", "app"]:
        fail(f"unexpected devicectl {args}")


def simctl(args: list[str]) -> None:
    if args[:2] == ["list", "--json"]:
        print((Path(os.environ["FAKE_DATA"]) / "simctl_list_marathon_3.json").read_text())
    elif args[0] == "get_app_container":
        print(STATE / "container")
    elif args[0] == "launch":
        play_app(args[args.index("--run-id") + 1])
    elif args[0] == "install":  # an installed app has its data container
        DOCUMENTS.mkdir(parents=True, exist_ok=True)
    elif args[0] != "bootstatus":
        fail(f"unexpected simctl {args}")


def xcodebuild(args: list[str]) -> None:
    if args == ["-version"]:
        print("Xcode 15.4\nBuild version 15F31d")
        return
    if os.environ.get("FAKE_BUILD_LOG"):
        print(Path(os.environ["FAKE_BUILD_LOG"]).read_text())
        sys.exit(65)
    platform = "iphonesimulator" if "Simulator" in option("-destination") else "iphoneos"
    app = (
        Path(option("-derivedDataPath"))
        / "Build"
        / "Products"
        / f"Release-{platform}"
        / "EdgeSAMBench.app"
    )
    app.mkdir(parents=True, exist_ok=True)
    (app / "EdgeSAMBench").write_text("not a binary")


def main() -> None:
    tool, args = sys.argv[1], sys.argv[2:]  # the wrapper on PATH passes its own name first
    with open(STATE / "calls.jsonl", "a") as calls:
        calls.write(json.dumps([tool, *args]) + "\n")
    if tool == "xcodebuild":
        xcodebuild(args)
    elif args[0] == "devicectl":
        devicectl(args[1:])
    elif args[0] == "simctl":
        simctl(args[1:])
    else:
        fail(f"unexpected xcrun {args}")


if __name__ == "__main__":
    main()
