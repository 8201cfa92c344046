"""This machine as a benchmark file records it: platform, CPU model, clock and the vector
extensions its GEMM kernels can use (two machines of one cloud "kind" can differ by 2x in
GEMM throughput; the file must say which one ran)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")

# The extensions that decide which GEMM / convolution kernels MLAS, XNNPACK and oneDNN pick.
VECTOR_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The first processor's model, family/model id, clock and vector flags from /proc/cpuinfo text.

    Handles x86 (``model name``, ``flags``) and arm64 (``CPU implementer``/``CPU part``,
    ``Features``; ``Model`` on a Raspberry Pi). Keys with no value in ``text`` are left out.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields:
            fields[key] = value.strip()
    info: dict[str, Any] = {}
    model = fields.get("model name") or fields.get("Model")
    if model:
        info["cpu"] = model
    if "cpu family" in fields and "model" in fields:
        info["cpu_id"] = f"family {fields['cpu family']} model {fields['model']}"
    elif "CPU implementer" in fields and "CPU part" in fields:
        info["cpu_id"] = f"implementer {fields['CPU implementer']} part {fields['CPU part']}"
    if "cpu MHz" in fields:
        info["cpu_mhz"] = round(float(fields["cpu MHz"]))
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    if flags:
        info["vector"] = [f for f in VECTOR_FLAGS if f in flags]
    return info


def _macos_cpu() -> dict[str, Any]:
    """The CPU brand string on macOS (``sysctl``), or nothing."""
    try:
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"cpu": out.stdout.strip()} if out.returncode == 0 and out.stdout.strip() else {}


def cpu_details() -> dict[str, Any]:
    """This machine's processor, with the CPU model, id, clock and vector flags where it says them."""
    details: dict[str, Any] = {"processor": platform.processor() or platform.machine()}
    if CPUINFO.is_file():
        details.update(parse_cpuinfo(CPUINFO.read_text(errors="replace")))
    elif platform.system() == "Darwin":
        details.update(_macos_cpu())
    return details


def host_machine(threads: int | None = None) -> dict[str, Any]:
    """What a benchmark file says about where it ran: platform, CPU details, CPUs, threads."""
    machine = {"platform": platform.platform(), **cpu_details(), "cpus": os.cpu_count()}
    return machine if threads is None else {**machine, "threads": threads}


def cpu_summary(details: dict[str, Any]) -> str:
    """One line for a report: ``AMD EPYC (family 25 model 17, 2596 MHz; avx2 fma ...)``, or ""."""
    mhz = f"{details['cpu_mhz']} MHz" if "cpu_mhz" in details else ""
    ident = ", ".join(filter(None, (details.get("cpu_id", ""), mhz)))
    inner = "; ".join(filter(None, (ident, " ".join(details.get("vector", ())))))
    name = details.get("cpu", "")
    return f"{name} ({inner})" if name and inner else name or inner


def adds_int8_pairs_in_16_bits(details: dict[str, Any]) -> bool:
    """Whether this CPU (``cpu_details``) is an x86 one without VNNI, whose u8 x s8 kernels
    (``vpmaddubsw``) add pairs of products in 16 bits: 8-bit weights can saturate there."""
    vector = set(details.get("vector", ()))
    return "avx2" in vector and not vector & {"avx512_vnni", "avx_vnni"}
