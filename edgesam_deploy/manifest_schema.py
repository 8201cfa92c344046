"""A manifest is untrusted input (in CI it may come from a pull request): its schema, and the one
rule that keeps every artifact path inside its export directory."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import DeployError
from .vocabulary import Precision, Role, Target

MAX_SEED = 2**64 - 1  # the largest seed torch.Generator takes; seeds are 0..MAX_SEED
SOURCE_KINDS = ("checkpoint", "random")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOP = {
    "model": dict,
    "tools": dict,
    "preprocessing": dict,
    "artifacts": list,
    "parity": (dict, type(None)),
    "schema_version": int,
}
_ARTIFACT = {
    "file": str,
    "target": str,
    "role": str,
    "precision": str,
    "inputs": list,
    "outputs": list,
    "size_bytes": int,
    "sha256": str,
    "details": dict,
}
_MODEL = {
    "variant": str,
    "kind": str,
    "path": (str, type(None)),
    "sha256": (str, type(None)),
    "seed": (int, type(None)),
}


class ManifestError(DeployError):
    """A manifest is missing, malformed, or names a file outside its directory."""


def _fields(data: Any, spec: dict[str, Any], where: str, optional: tuple[str, ...] = ()) -> None:
    """``data`` is an object with the keys of ``spec`` (``optional`` may be absent), typed."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where} must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - set(spec))
    missing = sorted(set(spec) - set(data) - set(optional))
    if unknown or missing:
        raise ManifestError(
            f"{where}: "
            + "; ".join(
                f"{title} {', '.join(keys)}"
                for title, keys in (("unknown field", unknown), ("missing field", missing))
                if keys
            )
        )
    for key, kind in spec.items():
        value = data.get(key)
        if key in data and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ManifestError(f"{where}.{key} has the wrong type ({type(value).__name__})")


def _choice(value: str, enum: type, where: str) -> None:
    if value not in {m.value for m in enum}:
        raise ManifestError(f"{where} '{value}' is not one of {', '.join(m.value for m in enum)}")


def validate_model(model: dict, where: str) -> None:
    """The ``model`` section: which weights the export was made from."""
    _fields(model, _MODEL, where, optional=("variant", "path", "sha256", "seed"))
    if model["kind"] not in SOURCE_KINDS:
        raise ManifestError(
            f"{where}.kind '{model['kind']}' is not one of {', '.join(SOURCE_KINDS)}"
        )
    seed = model.get("seed")
    if model["kind"] == "random" and (seed is None or not 0 <= seed <= MAX_SEED):
        raise ManifestError(
            f"{where}.seed must be an integer from 0 to {MAX_SEED} for random weights"
        )


def validate_manifest(data: Any, where: str) -> None:
    """Raise ManifestError unless ``data`` (parsed JSON) is a manifest this version can trust."""
    _fields(data, _TOP, where, optional=("tools", "preprocessing", "parity", "schema_version"))
    version = data.get("schema_version", 1)
    if version != 1:
        raise ManifestError(
            f"{where}: schema_version {version} is not supported (this tool reads 1)"
        )
    validate_model(data["model"], f"{where}: model")
    seen: set[str] = set()
    for i, art in enumerate(data["artifacts"]):
        at = f"{where}: artifacts[{i}]"
        _fields(art, _ARTIFACT, at, optional=("details",))
        check_relative(art["file"], at)
        if art["file"] in seen:
            raise ManifestError(f"{at}: {art['file']} is listed twice")
        seen.add(art["file"])
        _choice(art["target"], Target, f"{at}.target")
        _choice(art["role"], Role, f"{at}.role")
        _choice(art["precision"], Precision, f"{at}.precision")
        if not _SHA256.fullmatch(art["sha256"]) or art["size_bytes"] < 0:
            raise ManifestError(f"{at}: sha256 must be 64 hex digits and size_bytes not negative")


def check_relative(file: str, where: str) -> None:
    """``file`` is a plain relative POSIX path: no '..', '.', empty part, root or backslash."""
    parts = file.split("/")
    bad = (
        not file
        or "\\" in file
        or "\0" in file
        or PurePosixPath(file).is_absolute()
        or any(p in ("", ".", "..") for p in parts)
        or re.match(r"[A-Za-z]:", file)
    )
    if bad:
        raise ManifestError(
            f"{where}: file {file!r} is not a relative path inside the export directory"
        )


def inside(root: Path, file: str, where: str) -> Path:
    """``root / file`` once symlinks are resolved, refused if it leaves ``root``."""
    check_relative(file, where)
    base = Path(root).resolve()
    path = (base / file).resolve()
    if base not in path.parents:
        raise ManifestError(f"{where}: file {file!r} leads outside the export directory (symlink)")
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise ManifestError(f"{where}: file {file!r} is not a regular file or directory")
    return base / file
