"""Tests only: stop a real export at a named step with a real signal.

``$EDGESAM_DEPLOY_TEST_HOOK`` = ``STEP[=NAME]:ACTION``. The first time the process reaches
``STEP`` (for ``written``: once the file called ``NAME`` is in place) it sends itself
``SIGACTION`` (``INT``, ``KILL``, ``TERM``),
or with ``pause:MARKER`` creates the file ``MARKER`` and waits until the test deletes it. Steps:
``written`` (fileio.atomic_output), ``commit`` (journal written, nothing moved yet), ``moved``
(first file of a commit moved), ``locked`` (export directory locked), ``startup`` (before the
CLI and torch are imported). Unset, it does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

HOOK_ENV = "EDGESAM_DEPLOY_TEST_HOOK"
PAUSE_LIMIT_S = 600.0
_FIRED: set[str] = set()


def hook(step: str, name: str = "") -> None:
    """Act if ``$EDGESAM_DEPLOY_TEST_HOOK`` names this step (and file name)."""
    spec = os.environ.get(HOOK_ENV)
    if not spec:
        return
    where, _, action = spec.partition(":")
    want_step, _, want_name = where.partition("=")
    if want_step != step or (want_name and want_name != name) or spec in _FIRED:
        return
    _FIRED.add(spec)  # once per process: a commit finished after the signal passes the step again
    if action.startswith("pause:"):
        marker = Path(action[len("pause:") :])
        marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    os.kill(os.getpid(), getattr(signal, f"SIG{action}"))
    time.sleep(1.0)  # let a caught signal (INT) be delivered here, at this step
