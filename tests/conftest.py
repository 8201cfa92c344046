"""Shared fixtures: the conformance vectors (never skipped) and seeded models built once per session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edgesam_deploy.checkpoints import load_model
from edgesam_deploy.modeling import EdgeSam

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE_ENV = "EDGESAM_CONFORMANCE"
CONFORMANCE_DIR = REPO / "tests" / "data" / "conformance"  # copies of ../shared/conformance
DEFAULT_CONFORMANCE = CONFORMANCE_DIR / "edgesam_seed0_coffee.npz"

# A suite started in the background without job control (`(make test &)`) inherits SIGINT
# ignored, and so would every child it runs: the Ctrl-C tests (testhook's INT) would then test
# nothing a user meets, since a command in a terminal's foreground always receives Ctrl-C.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def conformance_path() -> Path:
    return Path(os.environ.get(CONFORMANCE_ENV, DEFAULT_CONFORMANCE))


@pytest.fixture(scope="session")
def conformance() -> dict[str, np.ndarray]:
    """The official implementation's vectors; a missing file FAILS the tests (CI must not skip them)."""
    path = conformance_path()
    if not path.is_file():
        pytest.fail(
            f"conformance vectors not found at {path}; set {CONFORMANCE_ENV} to their path",
            pytrace=False,
        )
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def state_dict_from(conformance: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The conformance weights (stored as float16) cast to float32."""
    out = {}
    for k, v in conformance.items():
        if k.startswith("state_dict/"):
            t = torch.from_numpy(v)
            out[k[len("state_dict/") :]] = t.float() if t.is_floating_point() else t
    return out


@pytest.fixture(scope="session")
def conformance_model(conformance) -> EdgeSam:
    """EdgeSAM (bilinear) with the conformance weights, loaded strictly."""
    model = EdgeSam("bilinear")
    model.load_state_dict(state_dict_from(conformance), strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def random_model() -> EdgeSam:
    """The embedded default: seeded random weights of realistic scale (seed 0)."""
    return load_model(random_seed=0)[0]


@pytest.fixture
def private_adb_server(monkeypatch):
    """Point adb at a server of its own on a free port, and stop that server afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", port)
    yield port
    subprocess.run(["adb", "-P", port, "kill-server"], capture_output=True)
