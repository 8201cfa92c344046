"""``manifest.json``: what an export directory holds, where it came from and how it was verified."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import first_line
from .fileio import sha256_path, size_bytes, write_json
from .manifest_schema import ManifestError, inside, validate_manifest
from .processing import IMG_SIZE, MEAN_RGB, STD_RGB
from .vocabulary import GraphSpec, graph_spec

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
TOOL_PACKAGES = (
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxsim",
    "onnxslim",
    "coremltools",
    "ai-edge-litert",
    "litert-torch",
    "ai-edge-quantizer",
    "scikit-image",
)

PREPROCESSING = {
    "color": "RGB uint8 H x W x 3",
    "resize": f"longest side to {IMG_SIZE}: new = int(dim * {IMG_SIZE} / max(H, W) + 0.5), PIL bilinear",
    "pixel_mean": list(MEAN_RGB),
    "pixel_std": list(STD_RGB),
    "normalize": "(pixel - mean) / std on the 0..255 scale",
    "pad": f"zeros at bottom and right to {IMG_SIZE} x {IMG_SIZE}",
    "layout": "NCHW float32 [1, 3, 1024, 1024]",
    "point_coords": "(x, y) original pixels scaled by (new_w / W, new_h / H); +0.5 is done inside the graph",
    "point_labels": "1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding; without a box append (0, 0) label -1",
    "masks": "low-res logits [1, 4, 256, 256] -> bilinear 1024 -> crop to resized size -> bilinear H x W -> > 0",
}


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``packages`` (absent ones omitted)."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def tool_versions() -> dict[str, str]:
    """Python, this package, and the installed packages an export may use."""
    return {
        "python": platform.python_version(),
        "edgesam-deploy": __version__,
        **package_versions(TOOL_PACKAGES),
    }


@dataclass
class ArtifactRecord:
    """One exported graph. ``file`` is relative to the export directory."""

    file: str
    target: str  # onnx | tflite | coreml
    role: str  # encoder | decoder
    precision: str
    inputs: list[dict]
    outputs: list[dict]
    size_bytes: int
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def graph(self) -> GraphSpec:
        """The interface of this artifact's graph (the decoder variant with mask inputs where
        ``details["mask_input"]``)."""
        return graph_spec(self.role, bool(self.details.get("mask_input")))


def unlike_record(path: Path, record: ArtifactRecord) -> str | None:
    """Why the file at ``path`` cannot be ``record``'s (missing, a dangling link, another size),
    without reading it; None if it may be."""
    if not path.exists():
        return "listed in the manifest but missing"
    size = size_bytes(path)
    if size != record.size_bytes:
        return f"{size} bytes where the manifest records {record.size_bytes}: the file changed after export"
    return None


@dataclass
class Manifest:
    """The whole export directory; artifacts of several targets share one manifest."""

    model: dict[str, Any]
    tools: dict[str, str] = field(default_factory=tool_versions)
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(PREPROCESSING))
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    parity: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def add(self, records: list[ArtifactRecord]) -> None:
        """Add records, replacing any with the same file."""
        new = {r.file for r in records}
        self.artifacts = [a for a in self.artifacts if a.file not in new] + list(records)

    root: Path | None = field(default=None, init=False, repr=False, compare=False)  # where loaded

    def to_dict(self) -> dict[str, Any]:
        """The manifest.json document."""
        return {k: v for k, v in asdict(self).items() if k != "root"}

    def save(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        write_json(path, self.to_dict())
        return path

    def artifact_path(self, record: ArtifactRecord) -> Path:
        """Where ``record``'s file is: inside the directory the manifest was loaded from (the one
        place that turns a record into a path; a path leaving the directory is a ManifestError)."""
        if self.root is None:
            raise ManifestError("this manifest was not loaded from an export directory")
        return inside(self.root, record.file, f"{self.root / MANIFEST_NAME}")

    def changed(self, record: ArtifactRecord) -> str | None:
        """Why ``record``'s file is not the one exported (``unlike_record``, or another
        SHA-256), or None."""
        path = self.artifact_path(record)
        reason = unlike_record(path, record)
        if reason is None and sha256_path(path) != record.sha256:
            return "sha256 differs from the manifest: the file changed after export"
        return reason

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        """Read and validate ``directory``'s manifest (untrusted: schema and paths checked; the
        manifest itself may be a symlink only to a file inside ``directory``)."""
        inside(directory, MANIFEST_NAME, str(directory))  # a symlinked manifest may not lead out
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(
                f"{directory}: no {MANIFEST_NAME}; is this an export directory of edgesam-deploy?"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # ValueError: bad UTF-8 or JSON, huge ints
            raise ManifestError(f"{path}: not valid JSON ({first_line(exc)})") from exc
        except OSError as exc:
            raise ManifestError(f"{path}: cannot be read ({first_line(exc)})") from exc
        validate_manifest(data, str(path))
        manifest = cls(**{**data, "artifacts": [ArtifactRecord(**a) for a in data["artifacts"]]})
        manifest.root = Path(directory)
        for record in manifest.artifacts:
            manifest.artifact_path(record)  # every path is checked once, here
        return manifest
