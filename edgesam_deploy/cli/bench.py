"""``edgesam-deploy bench``: FPS, latency, memory and parity of an export directory on a device."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import api
from ..bench.report import plot_path, print_report, write_json_report, write_markdown
from ..bench.runners import RunnerOptions
from ..errors import DeployError
from ..fileio import check_outputs
from ..manifest import MANIFEST_NAME
from .options import RandomWeightsOpt, err_console, out_console, path_option
from .progress import progress_reporter


def bench(
    device: str = typer.Option(
        "host", "--device", help="Device profile (see `edgesam-deploy devices`)."
    ),
    artifacts: Optional[Path] = path_option(
        None, "--artifacts", help="Export directory with manifest.json (required).", file_okay=False
    ),
    profiles: Optional[Path] = path_option(
        None,
        "--profiles",
        help="TOML file with your own profiles (default: $EDGESAM_DEPLOY_PROFILES).",
        dir_okay=False,
    ),
    runs: int = typer.Option(20, "--runs", help="Timed runs per measurement (after the warm-up)."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed warm-up runs per measurement."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="CPU threads (default: the profile's, else the runtime's)."
    ),
    json_out: Optional[Path] = path_option(
        None, "--json", help="Write the results as JSON.", dir_okay=False
    ),
    report: Optional[Path] = path_option(
        None,
        "--report",
        help="Write a Markdown report (and a latency PNG beside it).",
        dir_okay=False,
    ),
    no_parity: bool = typer.Option(False, "--no-parity", help="Skip the parity summary."),
    no_reference: bool = typer.Option(
        False, "--no-reference", help="Do not measure the PyTorch reference beside the artifacts."
    ),
    emulate: bool = typer.Option(
        False,
        "--emulate",
        help="Run on the device's emulated ARM64 twin (QEMU user mode; docs/emulation.md).",
    ),
    parity_photos: Optional[str] = typer.Option(
        None,
        "--parity-photos",
        help="Parity photos, comma-separated (default: all four; with --emulate: coffee).",
    ),
    benchmark_model: Optional[Path] = path_option(
        None,
        "--benchmark-model",
        help="adb: LiteRT's benchmark_model binary for the phone.",
        dir_okay=False,
    ),
    adb_serial: Optional[str] = typer.Option(
        None,
        "--adb-serial",
        help="adb: serial of the phone (default: the profile's variable, else the only device).",
    ),
    ssh_host: Optional[str] = typer.Option(
        None, "--ssh-host", help="ssh: [user@]host or a Host of your ssh config."
    ),
    ssh_config: Optional[Path] = path_option(
        None, "--ssh-config", help="ssh: an ssh_config file (ssh -F).", dir_okay=False
    ),
    remote_python: Optional[str] = typer.Option(
        None,
        "--remote-python",
        help="ssh: Python with edgesam-deploy on the board (default python3).",
    ),
    remote_dir: Optional[str] = typer.Option(
        None, "--remote-dir", help="ssh: working directory on the board."
    ),
    remote_command: Optional[str] = typer.Option(
        None,
        "--remote-command",
        help="ssh: command template run on the board, with {python} {artifacts} {json} {runs} {warmup} {threads}.",
    ),
    xcode_device: Optional[str] = typer.Option(
        None, "--xcode-device", help="xcode: UDID of the iPhone, or a Simulator's name or UDID."
    ),
    xcode_team: Optional[str] = typer.Option(
        None,
        "--xcode-team",
        help="xcode: Apple development team id that signs the app (default: the profile's).",
    ),
    timeout: float = typer.Option(
        1800.0, "--timeout", help="Seconds allowed per measurement or device command."
    ),
    checkpoint: Optional[Path] = path_option(
        None,
        "--checkpoint",
        help="Reference weights for parity, if not where the manifest says.",
        dir_okay=False,
    ),
    random_weights: Optional[int] = RandomWeightsOpt,
) -> None:
    """Measure encoder and decoder latency, FPS, time to first mask, memory and parity on a device.

    Artifacts of DIR that the device cannot run are listed as not measured, with the reason.
    """
    check_outputs(
        {
            "--json": json_out,
            "--report": report,
            "--report's plot": plot_path(report) if report else None,
        },
        inputs={f"--artifacts' {MANIFEST_NAME}": artifacts / MANIFEST_NAME if artifacts else None},
    )
    options = RunnerOptions(
        ssh_host=ssh_host,
        ssh_config=ssh_config,
        remote_python=remote_python,
        remote_dir=remote_dir,
        remote_command=remote_command,
        adb_serial=adb_serial,
        benchmark_model=benchmark_model,
        xcode_device=xcode_device,
        xcode_team=xcode_team,
        timeout_s=timeout,
    )
    if artifacts is None:  # an unreachable device says so first
        api.probe(device, profiles=profiles, emulate=emulate, runner=options)
        raise DeployError(
            "--artifacts DIR is required: an export directory with manifest.json (edgesam-deploy "
            "export)"
        )
    photos = api.comma_list("--parity-photos", parity_photos)
    with progress_reporter(f"bench {device}") as progress:
        result = api.bench(
            artifacts,
            device,
            runs=runs,
            warmup=warmup,
            threads=threads,
            parity=not no_parity,
            reference=not no_reference,
            emulate=emulate,
            parity_photos=photos,
            profiles=profiles,
            runner=options,
            checkpoint=checkpoint,
            random_weights=random_weights,
            progress=progress,
        )
    print_report(result, out_console())
    if json_out:
        write_json_report(json_out, result)
    if report:
        plot = write_markdown(report, result)
        err_console.print(f"wrote {report}" + (f" and {plot}" if plot else ""))
