"""Where a benchmark ran: the CPU model, id, clock and vector flags read from /proc/cpuinfo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgesam_deploy.bench.emulation import cpuinfo_text
from edgesam_deploy.bench.host import CPUINFO, cpu_summary, host_machine, parse_cpuinfo

# The first processor's block of this project's CI machine, recorded 2026-12-06 (AMD Zen 4).
EPYC = Path(__file__).parent / "data" / "cpuinfo" / "amd-epyc-family25-model17.txt"


def test_x86_cpuinfo_recorded():
    info = parse_cpuinfo(EPYC.read_text())
    assert info == {
        "cpu": "AMD EPYC",
        "cpu_id": "family 25 model 17",
        "cpu_mhz": 2596,
        "vector": ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"],
    }
    assert cpu_summary(info) == (
        "AMD EPYC (family 25 model 17, 2596 MHz; avx2 fma avx512f avx512_vnni avx512_bf16)"
    )


def test_only_the_first_processor_is_read():
    second = EPYC.read_text().replace("model name\t: AMD EPYC", "model name\t: other")
    assert parse_cpuinfo(EPYC.read_text() + second)["cpu"] == "AMD EPYC"


def test_arm64_cpuinfo_as_the_twin_writes_it():
    """The emulated twin's cpuinfo (Cortex-A76 with asimd and asimddp, as a Raspberry Pi 5's
    kernel names them) reads back as its MIDR and features; a Pi's ``Model`` line is its name."""
    asimd, asimddp = 1 << 1, 1 << 20
    text = cpuinfo_text("cortex-a76", asimd | asimddp | 1, 0, 4)
    info = parse_cpuinfo(text)
    assert info == {"cpu_id": "implementer 0x41 part 0xd0b", "vector": ["asimd", "asimddp"]}
    assert cpu_summary(info) == "implementer 0x41 part 0xd0b; asimd asimddp"
    named = parse_cpuinfo(text + "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
    assert named["cpu"] == "Raspberry Pi 5 Model B Rev 1.0"


def test_nothing_known_says_nothing():
    assert parse_cpuinfo("") == {}
    assert cpu_summary({}) == ""


@pytest.mark.skipif(not CPUINFO.is_file(), reason="no /proc/cpuinfo (not Linux)")
def test_this_machine():
    machine = host_machine(3)
    assert machine["cpus"] == os.cpu_count() and machine["threads"] == 3
    assert machine["platform"] and machine["processor"]
    parsed = parse_cpuinfo(CPUINFO.read_text())
    assert {k: machine[k] for k in parsed} == parsed
    assert "threads" not in host_machine()
