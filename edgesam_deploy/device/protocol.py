"""The device-parity protocol, version 1 (docs/device-parity.md): the bundle the host sends, the
outputs the device sends back, and the raw little-endian float32 tensors of both.

Shared by the host (bundle writer, judge) and the device side; imports only the standard library,
NumPy and the vocabulary.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeployError
from ..vocabulary import Role, ScoreKind, Target

PROTOCOL = "edgesam-device-parity"
VERSION = 1
BUNDLE_FILE = "protocol.json"
RESULTS_FILE = "results.json"
FLOAT32 = "float32"
STATUS_OK = "ok"
STATUS_ERROR = "error"
_CASE_ID = re.compile(r"[a-z0-9_.-]+")
_LE_FLOAT32 = np.dtype("<f4")


class ProtocolError(DeployError):
    """A bundle or an outputs folder does not follow the protocol."""


@dataclass(frozen=True)
class TensorFile:
    """A raw little-endian float32 tensor in C order: its path (relative to the bundle or the
    outputs folder) and shape."""

    file: str
    shape: tuple[int, ...]
    dtype: str = FLOAT32

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _LE_FLOAT32.itemsize

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorFile:
        return cls(
            str(data["file"]), tuple(int(d) for d in data["shape"]), str(data.get("dtype", FLOAT32))
        )


def write_tensor(root: Path, file: str, array: np.ndarray) -> TensorFile:
    """Write ``array`` as raw little-endian float32 at ``root / file``."""
    path = Path(root) / file
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(array, dtype=_LE_FLOAT32)
    path.write_bytes(data.tobytes())
    return TensorFile(file, tuple(int(d) for d in data.shape))


def read_tensor(root: Path, spec: TensorFile) -> np.ndarray:
    """Read a tensor; ProtocolError if it is missing, not float32 or not the size its shape
    needs."""
    if spec.dtype != FLOAT32:
        raise ProtocolError(f"{spec.file}: dtype {spec.dtype}, the protocol carries {FLOAT32} only")
    path = Path(root) / spec.file
    if not path.is_file():
        raise ProtocolError(f"{spec.file}: missing")
    size = path.stat().st_size
    if size != spec.nbytes:
        raise ProtocolError(
            f"{spec.file}: {size} bytes, shape {list(spec.shape)} needs {spec.nbytes}"
        )
    return np.fromfile(path, dtype=_LE_FLOAT32).reshape(spec.shape).astype(np.float32)


def _check_case_id(case_id: str) -> str:
    if not _CASE_ID.fullmatch(case_id):
        raise ProtocolError(f"case id '{case_id}' must match [a-z0-9_.-]+")
    return case_id


@dataclass
class Case:
    """One set of graph inputs: a parity photo (encoder) or a photo and a prompt (decoder)."""

    id: str
    role: Role
    feeds: dict[str, TensorFile]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": str(self.role),
            "feeds": {k: v.as_dict() for k, v in self.feeds.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        feeds = {k: TensorFile.from_dict(v) for k, v in data["feeds"].items()}
        return cls(_check_case_id(data["id"]), Role(data["role"]), feeds)


@dataclass
class BundleArtifact:
    """An artifact of the bundle (``file`` under ``artifacts/``) and the cases it runs.

    ``scores`` (decoders) is what the scores output holds; the device ignores it, the judge
    needs it.
    """

    file: str
    target: Target
    role: Role
    precision: str
    sha256: str
    cases: list[str]
    scores: ScoreKind | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "file": self.file,
            "target": str(self.target),
            "role": str(self.role),
            "precision": self.precision,
            "sha256": self.sha256,
            "cases": list(self.cases),
        }
        return out | ({"scores": str(self.scores)} if self.scores else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleArtifact:
        scores = ScoreKind(data["scores"]) if data.get("scores") else None
        return cls(
            str(data["file"]),
            Target(data["target"]),
            Role(data["role"]),
            str(data["precision"]),
            str(data.get("sha256", "")),
            [str(c) for c in data["cases"]],
            scores,
        )


@dataclass
class Settings:
    """How the device runs the artifacts (the device profile's runtime options)."""

    threads: int | None = None
    runtime: str | None = None
    delegate: str | None = None
    compute_units: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "runtime": self.runtime,
            "delegate": self.delegate,
            "compute_units": self.compute_units,
        }


def _header(data: dict[str, Any], what: str) -> None:
    if data.get("protocol") != PROTOCOL or data.get("version") != VERSION:
        raise ProtocolError(
            f"{what}: protocol {data.get('protocol')!r} version {data.get('version')!r}, "
            f"expected {PROTOCOL!r} version {VERSION}"
        )


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ProtocolError(f"{path}: missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}: not a JSON object")
    _header(data, str(path))
    return data


def _dump_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


@dataclass
class Bundle:
    """``protocol.json``: the cases, the artifacts and the run settings."""

    cases: list[Case]
    artifacts: list[BundleArtifact]
    settings: Settings = field(default_factory=Settings)

    def case(self, case_id: str) -> Case:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise ProtocolError(f"the bundle has no case '{case_id}'")

    def save(self, directory: Path) -> Path:
        path = Path(directory) / BUNDLE_FILE
        _dump_json(
            path,
            {
                "protocol": PROTOCOL,
                "version": VERSION,
                "cases": [c.as_dict() for c in self.cases],
                "artifacts": [a.as_dict() for a in self.artifacts],
                "settings": self.settings.as_dict(),
            },
        )
        return path

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        path = Path(directory) / BUNDLE_FILE
        data = _load_json(path)
        try:
            cases = [Case.from_dict(c) for c in data["cases"]]
            artifacts = [BundleArtifact.from_dict(a) for a in data["artifacts"]]
            settings = Settings(
                **{
                    k: v
                    for k, v in data.get("settings", {}).items()
                    if k in Settings.__dataclass_fields__
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"{path}: malformed ({type(exc).__name__}: {exc})") from exc
        bundle = cls(cases, artifacts, settings)
        for artifact in artifacts:
            for case_id in artifact.cases:
                bundle.case(case_id)
        return bundle


@dataclass
class ArtifactOutputs:
    """What the device computed for one artifact: per case, per output name, a tensor file;
    ``skipped`` the cases it could not take (e.g. a point count a per-N decoder lacks) and why."""

    file: str
    status: str = STATUS_OK
    error: str = ""
    runtime: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, TensorFile]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        outputs = {c: {k: t.as_dict() for k, t in o.items()} for c, o in self.outputs.items()}
        return {
            "file": self.file,
            "status": self.status,
            "error": self.error,
            "runtime": self.runtime,
            "outputs": outputs,
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactOutputs:
        outputs = {
            str(c): {str(k): TensorFile.from_dict(t) for k, t in o.items()}
            for c, o in data.get("outputs", {}).items()
        }
        return cls(
            str(data["file"]),
            str(data.get("status", STATUS_ERROR)),
            str(data.get("error", "")),
            dict(data.get("runtime", {})),
            outputs,
            {str(k): str(v) for k, v in data.get("skipped", {}).items()},
        )


@dataclass
class Results:
    """``results.json``: where the outputs were computed and, per artifact, what came out."""

    device: dict[str, Any]
    artifacts: list[ArtifactOutputs]

    def save(self, directory: Path) -> Path:
        path = Path(directory) / RESULTS_FILE
        _dump_json(
            path,
            {
                "protocol": PROTOCOL,
                "version": VERSION,
                "device": self.device,
                "artifacts": [a.as_dict() for a in self.artifacts],
            },
        )
        return path

    @classmethod
    def load(cls, directory: Path) -> Results:
        path = Path(directory) / RESULTS_FILE
        data = _load_json(path)
        try:
            return cls(
                dict(data.get("device", {})),
                [ArtifactOutputs.from_dict(a) for a in data["artifacts"]],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"{path}: malformed ({type(exc).__name__}: {exc})") from exc

    def for_file(self, file: str) -> ArtifactOutputs | None:
        return next((a for a in self.artifacts if a.file == file), None)
