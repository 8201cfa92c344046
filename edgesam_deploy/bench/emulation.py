"""The emulated ARM64 twin: Debian's arm64 Python with the host's runtime wheels, under QEMU.

Built on first use from Debian's packages (``mmdebstrap`` unpacks a sysroot; nothing runs under
emulation) and PyPI's aarch64 wheels pinned to the versions installed here, then cached under
``$EDGESAM_DEPLOY_CACHE``, ``$XDG_CACHE_HOME/edgesam-deploy`` or ``~/.cache/edgesam-deploy``.
Programs run as ``qemu-aarch64-static -cpu MODEL -L ROOT ROOT/usr/bin/python3.11``: no
binfmt_misc. ``-L`` also redirects ``/proc/cpuinfo``, so each CPU model gets a root whose cpuinfo
describes an ARM CPU (ONNX Runtime crashes on the host's x86 one).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeviceError
from ..fileio import atomic_output, write_json
from ..manifest import package_versions
from ..vocabulary import ProgressFn

QEMU = "qemu-aarch64-static"
SUITE = "bookworm"
PYTHON = "python3.11"  # bookworm's Python; the wheels are chosen for it
PYTHON_TAG = ("3.11", "cp311")
GLIBC_MINOR = 36  # bookworm's glibc 2.36: the newest manylinux tag the twin can load
DEBIAN_PACKAGES = ("python3.11", "libstdc++6")
WHEELS = ("numpy", "onnxruntime", "ai-edge-litert")  # pinned to the host's installed versions
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "EDGESAM_DEPLOY_DEBIAN_MIRROR"
PKG_KEEP_S = 7 * 86400  # copies of older package sources are removed after a week
INSTALL_HINT = "apt-get install qemu-user-static mmdebstrap (or run scripts/install-system-deps.sh)"

# MIDR implementer and part number of QEMU's CPU models, for /proc/cpuinfo
_MIDR = {
    "cortex-a35": (0x41, 0xD04),
    "cortex-a53": (0x41, 0xD03),
    "cortex-a57": (0x41, 0xD07),
    "cortex-a72": (0x41, 0xD08),
    "cortex-a76": (0x41, 0xD0B),
    "neoverse-n1": (0x41, 0xD0C),
    "a64fx": (0x46, 0x001),
    "max": (0x00, 0x051),
}
# Linux arm64 AT_HWCAP and AT_HWCAP2 bits, in bit order, as /proc/cpuinfo names them
_HWCAP = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma "
    "lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg"
).split()
_HWCAP2 = (
    "dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm "
    "svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme smei16i64 smef64f64 smei8i32 "
    "smef16f32 smeb16f32 smef32f32 smefa64 wfxt"
).split()
_AUXVAL = (
    "import ctypes; c = ctypes.CDLL(None); c.getauxval.restype = ctypes.c_ulong; "
    "print(c.getauxval(16), c.getauxval(26))"
)
_VERSIONS = (
    "import json, platform, importlib.metadata as m; names = {names!r}; "
    "[__import__(n) for n in ('numpy', 'onnxruntime', 'ai_edge_litert.interpreter')]; "
    "print(json.dumps({{'python': platform.python_version(), "
    "'wheels': {{n: m.version(n) for n in names}}}}))"
)


class EmulationError(DeviceError):
    """The ARM64 twin cannot be built or run here."""


def cache_root() -> Path:
    """Twins' folder under ``$EDGESAM_DEPLOY_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    if os.environ.get("EDGESAM_DEPLOY_CACHE"):
        base = Path(os.environ["EDGESAM_DEPLOY_CACHE"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgesam-deploy"
    return base / "arm64-twin"


def host_tool(name: str, package: str) -> str:
    """Path of a host program, or an EmulationError saying which Debian package provides it."""
    found = shutil.which(name)
    if found is None:
        raise EmulationError(f"the ARM64 twin needs '{name}' ({package}): {INSTALL_HINT}")
    return found


def wheel_pins() -> dict[str, str]:
    """The runtime packages installed here with their versions: the twin gets the same ones."""
    pins = package_versions(WHEELS)
    if "numpy" not in pins:
        raise EmulationError("numpy is not installed here, so the twin's version cannot be pinned")
    return pins


def debian_mirror(apt: Path = Path("/etc/apt")) -> str:
    """``$EDGESAM_DEPLOY_DEBIAN_MIRROR``, else the apt mirror of the suite here, else Debian's."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    one_line = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in filter(Path.is_file, one_line):
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            suites, types = fields.get("Suites", "").split(), fields.get("Types", "").split()
            if "deb" in types and SUITE in suites:
                return fields.get("URIs", DEFAULT_MIRROR).split()[0]
    return DEFAULT_MIRROR


def _check(argv: list[str], what: str, timeout: float = 900.0, **kw) -> str:
    """Run a build step; EmulationError with its last output line if it fails."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        raise EmulationError(f"ARM64 twin: {what} timed out after {exc.timeout:.0f} s") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        last = lines[-1].strip()[:300] if lines else "no output"
        raise EmulationError(f"ARM64 twin: {what} failed (exit {proc.returncode}): {last}")
    return proc.stdout


def _pip_argv(site: Path, pins: dict[str, str]) -> list[str]:
    """pip downloading aarch64 wheels for the twin's Python (each manylinux tag listed: pip does
    not expand manylinux_2_36 to the older tags)."""
    tags = [f"manylinux_2_{minor}_aarch64" for minor in range(17, GLIBC_MINOR + 1)]
    platforms = [arg for tag in [*tags, "manylinux2014_aarch64"] for arg in ("--platform", tag)]
    version, abi = PYTHON_TAG
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-warn-conflicts",
        "--target",
        str(site),
        "--only-binary=:all:",
        "--python-version",
        version,
        "--implementation",
        "cp",
        "--abi",
        abi,
        *platforms,
        *(f"{name}=={version}" for name, version in pins.items()),
    ]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (another process building the same twin waits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _du_mib(path: Path) -> float:
    return sum(p.lstat().st_size for p in path.rglob("*")) / 2**20


def cpuinfo_text(model: str, hwcap: int, hwcap2: int, cpus: int) -> str:
    """An arm64 /proc/cpuinfo for QEMU CPU ``model`` with the features its HWCAP bits name."""
    features = [n for i, n in enumerate(_HWCAP) if hwcap >> i & 1]
    features += [n for i, n in enumerate(_HWCAP2) if hwcap2 >> i & 1]
    implementer, part = _MIDR[model.split(",")[0]]
    block = (
        f"BogoMIPS\t: 50.00\nFeatures\t: {' '.join(features)}\n"
        f"CPU implementer\t: {implementer:#04x}\n"
        f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part:#05x}\nCPU revision\t: 0\n"
    )
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(cpus))


@dataclass(frozen=True)
class Twin:
    """A built twin: ``sysroot/`` (Debian arm64), ``site/`` (wheels), ``cpu/<model>/`` roots."""

    root: Path

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def info(self) -> dict:
        """What the build recorded: Python and wheel versions, build time, size, mirror."""
        return json.loads((self.root / "twin.json").read_text())

    def qemu_argv(self, cpu: str, root: Path | None = None) -> list[str]:
        """qemu running the twin's Python with CPU model ``cpu`` (``root``: its cpuinfo root)."""
        root = root or self.sysroot
        return [
            host_tool(QEMU, "qemu-user-static"),
            "-cpu",
            cpu,
            "-L",
            str(root),
            str(root / "usr" / "bin" / PYTHON),
        ]

    def cpu_root(self, cpu: str) -> Path:
        """A root for ``cpu``: links into the sysroot plus its own proc/cpuinfo (made once)."""
        dest = self.root / "cpu" / re.sub(r"[^A-Za-z0-9_.-]", "_", cpu)
        if (dest / "proc" / "cpuinfo").is_file():
            return dest
        with _locked(self.root / "cpu" / ".lock"):
            if (dest / "proc" / "cpuinfo").is_file():
                return dest
            check_cpu_model(cpu)
            auxval = _check(self.qemu_argv(cpu) + ["-c", _AUXVAL], "reading HWCAP")
            hwcap, hwcap2 = map(int, auxval.split())
            with atomic_output(dest) as tmp:
                (tmp / "proc").mkdir(parents=True)
                for entry in self.sysroot.iterdir():
                    if entry.name != "proc":
                        (tmp / entry.name).symlink_to(Path("..", "..", "sysroot", entry.name))
                text = cpuinfo_text(cpu, hwcap, hwcap2, os.cpu_count() or 1)
                (tmp / "proc" / "cpuinfo").write_text(text)
        return dest

    def package_path(self) -> Path:
        """A copy of this package's sources in the cache (one per content) for the twin."""
        source = Path(__file__).resolve().parents[1]
        files = sorted(source.rglob("*.py"))
        digest = hashlib.sha256()
        for f in files:
            digest.update(str(f.relative_to(source)).encode() + b"\0" + f.read_bytes())
        dest = self.root / "pkg" / digest.hexdigest()[:16]
        if dest.exists():
            return dest
        with _locked(self.root / "pkg" / ".lock"):
            if not dest.exists():
                with atomic_output(dest) as tmp:
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(source, tmp / source.name, ignore=ignore)
                stale = time.time() - PKG_KEEP_S
                for old in dest.parent.iterdir():
                    if old.name[0] != "." and old != dest and old.stat().st_mtime < stale:
                        shutil.rmtree(old)
        return dest

    def run_python(
        self, argv: list[str], cpu: str, timeout: float, workdir: Path
    ) -> subprocess.CompletedProcess[str]:
        """Run the twin's Python with ``argv`` on CPU model ``cpu`` in ``workdir`` (its TMPDIR too),
        with this package's sources and the wheels importable."""
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONPATH": f"{self.package_path()}:{self.site}",
            "PYTHONNOUSERSITE": "1",
        }
        try:
            argv = self.qemu_argv(cpu, self.cpu_root(cpu)) + argv
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
            )
        except subprocess.TimeoutExpired as exc:
            raise EmulationError(f"ARM64 twin ({cpu}): no answer in {exc.timeout:.0f} s") from exc

    def describe(self, cpu: str) -> dict:
        """Where emulated numbers come from: QEMU version, CPU model, Python and wheel versions."""
        qemu = _check([host_tool(QEMU, "qemu-user-static"), "--version"], "qemu --version")
        info = self.info
        return {
            "emulator": qemu.splitlines()[0].strip(),
            "cpu_model": cpu,
            "sysroot": f"Debian {SUITE} arm64",
            "python": info["python"],
            "wheels": info["wheels"],
            "cache": str(self.root),
        }


def qemu_cpu_models() -> list[str]:
    """The CPU models this QEMU offers (``-cpu help``, which exits 1)."""
    argv = [host_tool(QEMU, "qemu-user-static"), "-cpu", "help"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


def check_cpu_model(cpu: str) -> None:
    """EmulationError unless QEMU offers ``cpu`` and its cpuinfo can be written."""
    base = cpu.split(",")[0]
    models = qemu_cpu_models()
    if base not in models or base not in _MIDR:
        known = ", ".join(m for m in models if m in _MIDR)
        raise EmulationError(f"CPU model '{cpu}' cannot be emulated here; this QEMU offers {known}")


def twin_name(pins: dict[str, str]) -> str:
    """Cache folder of a twin, e.g. 'bookworm-cp311-numpy-2.3.5-onnxruntime-1.32.0-...'."""
    return "-".join([SUITE, PYTHON_TAG[1], *(f"{n}-{v}" for n, v in sorted(pins.items()))])


def _build(dest: Path, pins: dict[str, str], progress: ProgressFn) -> None:
    """Unpack the sysroot, install the wheels and record what was built, into ``dest``."""
    start = time.perf_counter()
    mmdebstrap = host_tool("mmdebstrap", "mmdebstrap")
    mirror = debian_mirror()
    packages = ",".join(DEBIAN_PACKAGES)
    progress(f"ARM64 twin: unpacking Debian {SUITE} arm64 ({packages}) from {mirror}")
    _check(
        [
            mmdebstrap,
            "--quiet",
            "--variant=extract",
            "--arch=arm64",
            f"--include={packages}",
            SUITE,
            str(dest / "sysroot"),
            mirror,
        ],
        "mmdebstrap",
    )
    wanted = " ".join(f"{n}=={v}" for n, v in pins.items())
    progress(f"ARM64 twin: downloading aarch64 wheels {wanted}")
    _check(_pip_argv(dest / "site", pins), "pip (aarch64 wheels)")
    progress("ARM64 twin: importing the runtimes under QEMU")
    twin = Twin(dest)
    code = _VERSIONS.format(names=tuple(pins))
    env = {"PYTHONPATH": str(twin.site), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    check_root = twin.cpu_root("cortex-a76")
    found = json.loads(
        _check(
            twin.qemu_argv("cortex-a76", check_root) + ["-c", code],
            "importing the runtimes",
            env=env,
        ).splitlines()[-1]
    )
    if found["wheels"] != pins:
        raise EmulationError(f"ARM64 twin: installed {found['wheels']}, wanted {pins}")
    write_json(
        dest / "twin.json",
        {
            **found,
            "suite": SUITE,
            "mirror": mirror,
            "build_s": round(time.perf_counter() - start, 1),
            "size_mib": round(_du_mib(dest), 1),
        },
    )


def ensure_twin(progress: ProgressFn = lambda msg: None) -> Twin:
    """The cached twin of the host's runtime versions, built first if absent (one build at once)."""
    host_tool(QEMU, "qemu-user-static")
    pins = wheel_pins()
    dest = cache_root() / twin_name(pins)
    if not (dest / "twin.json").is_file():
        with _locked(cache_root() / f".{dest.name}.lock"):
            if not (dest / "twin.json").is_file():
                progress(f"ARM64 twin: building {dest} (first use, about a minute)")
                with atomic_output(dest) as tmp:
                    tmp.mkdir()
                    _build(tmp, pins, progress)
                info = Twin(dest).info
                progress(f"ARM64 twin: built in {info['build_s']} s, {info['size_mib']:.0f} MiB")
    return Twin(dest)
