"""EdgeSAM deployment toolchain.

The Python API (``edgesam_deploy.api``, ``edgesam_deploy.api_segment``) is imported on first use,
so ``import edgesam_deploy`` stays light (no torch): ``load_model``, ``export``, ``parity``,
``bench``, ``segment`` and their result types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "api",
    "export": "api",
    "probe": "api",
    "ExportResult": "api",
    "ParityResult": "api",
    "segment": "api_segment",
    "SegmentResult": "api_segment",
    # packages that are also the API function of their name (api_callable)
    "parity": "parity",
    "bench": "bench",
}

if (
    TYPE_CHECKING
):  # what type checkers see; at run time ``parity`` and ``bench`` are callable packages
    from .api import ExportResult, ParityResult, bench, export, load_model, parity, probe
    from .api_segment import SegmentResult, segment


def __getattr__(name: str) -> Any:
    """Import the API on first use of one of its names."""
    if name not in _LAZY:
        raise AttributeError(f"module 'edgesam_deploy' has no attribute '{name}'")
    module = importlib.import_module(f".{_LAZY[name]}", __name__)
    return module if module.__name__.endswith(f".{name}") else getattr(module, name)


__all__ = [
    "ExportResult",
    "ParityResult",
    "SegmentResult",
    "__version__",
    "bench",
    "export",
    "load_model",
    "parity",
    "probe",
    "segment",
]
