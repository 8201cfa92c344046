"""One sub-package per target behind the ``Exporter`` interface (after Hugging Face optimum's
exporters): ``options.py`` (the target's options dataclass), ``convert.py`` (the exporter) and the
target's own checks. Imported lazily so converters stay optional extras.
"""

from __future__ import annotations

from ..registry import LazyRegistry
from ..vocabulary import Target
from .base import ExportContext, Exporter, ExportOptions, OptionsError, TargetOptions

EXPORTERS = LazyRegistry(
    "target",
    {
        Target.ONNX: "edgesam_deploy.exporters.onnx.convert:OnnxExporter",
        Target.TFLITE: "edgesam_deploy.exporters.tflite.convert:TfliteExporter",
        Target.COREML: "edgesam_deploy.exporters.coreml.convert:CoremlExporter",
        Target.EXECUTORCH: "edgesam_deploy.exporters.executorch.convert:ExecutorchExporter",
    },
)


def get_exporter(target: Target | str) -> Exporter:
    """Instantiate the exporter of ``target``; DeployError naming the choices for an unknown one."""
    return EXPORTERS[target]()


__all__ = [
    "EXPORTERS",
    "ExportContext",
    "ExportOptions",
    "Exporter",
    "OptionsError",
    "TargetOptions",
    "get_exporter",
]
