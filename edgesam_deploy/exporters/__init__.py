"""One module per target behind the ``Exporter`` interface; imported lazily so extras stay optional."""
from __future__ import annotations

import importlib

from ..errors import DeployError
from .base import ExportContext, Exporter, ExportOptions

_EXPORTERS = {
    "onnx": "edgesam_deploy.exporters.onnx:OnnxExporter",
    "tflite": "edgesam_deploy.exporters.tflite:TfliteExporter",
    "coreml": "edgesam_deploy.exporters.coreml:CoremlExporter",
}
TARGETS = tuple(_EXPORTERS)


def get_exporter(target: str) -> Exporter:
    """Instantiate the exporter of ``target`` (onnx, tflite, coreml)."""
    if target not in _EXPORTERS:
        raise DeployError(f"unknown target '{target}'; choose from {', '.join(TARGETS)} or all")
    module, cls = _EXPORTERS[target].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["ExportContext", "ExportOptions", "Exporter", "TARGETS", "get_exporter"]
