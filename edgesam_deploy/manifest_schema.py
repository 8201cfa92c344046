"""A manifest is untrusted input (in CI it may come from a pull request): its schema, and the one
rule that keeps every artifact path inside its export directory.

Types and ranges are checked here, before anything is opened; whether an artifact's declared
inputs and outputs are those of its graph is checked when a runtime opens it
(``GraphSession.check_interface``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import DeployError, first_line
from .processing import MEAN_RGB, STD_RGB
from .vocabulary import ComputeUnit, Precision, Role, ScoreKind, Target

MAX_SEED = 2**64 - 1  # the largest seed torch.Generator takes; seeds are 0..MAX_SEED
MAX_SIZE = 2**63 - 1  # the largest file size a filesystem reports (off_t)
MAX_DIM = 2**31 - 1  # runtimes store tensor dimensions as int32
SOURCE_KINDS = ("checkpoint", "random")
# the normalization every artifact is judged with: a manifest telling apps otherwise is refused
NORMALIZATION = {"pixel_mean": list(MEAN_RGB), "pixel_std": list(STD_RGB)}
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
_TENSOR = {"name": str, "shape": list, "dtype": str}
_MODEL = {
    "variant": str,
    "kind": str,
    "path": (str, type(None)),
    "sha256": (str, type(None)),
    "seed": (int, type(None)),
}
_PARITY = {"passed": bool, "reference": dict, "artifacts": list}
_PARITY_ROW = {  # ``ArtifactParity.as_dict``; bench reads file, passed, metrics and failures
    "file": str,
    "target": str,
    "role": str,
    "precision": str,
    "metrics": dict,
    "thresholds": dict,
    "failures": list,
    "passed": bool,
    "runtime": str,
    "note": str,
    "measured_on": str,
    "measured": bool,
}
_PARITY_ROW_OPTIONAL = tuple(
    k for k in _PARITY_ROW if k not in ("file", "passed", "metrics", "failures")
)


class ManifestError(DeployError):
    """A manifest is missing, malformed, or names a file outside its directory."""


def _typed(value: Any, kind: type | tuple[type, ...]) -> bool:
    """``isinstance``, except that JSON's true and false are not numbers."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


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
        if key in data and not _typed(value, kind):
            raise ManifestError(f"{where}.{key} has the wrong type ({type(value).__name__})")


def _show(value: Any) -> str:
    """``value`` for a one-line message, cut short."""
    return first_line(repr(value), 60)


def _one_of(enum: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and value in {m.value for m in enum}


def _choice(value: Any, enum: type, where: str) -> None:
    if not _one_of(enum)(value):
        raise ManifestError(
            f"{where} {_show(value)} is not one of {', '.join(m.value for m in enum)}"
        )


def _positive(value: Any) -> bool:
    return _typed(value, int) and value >= 1


# the details other code reads: each key's test and what it must be
_DETAILS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "scores": (_one_of(ScoreKind), f"one of {', '.join(ScoreKind)}"),
    "mask_input": (lambda v: isinstance(v, bool), "true or false"),
    "point_counts": (
        lambda v: isinstance(v, list) and all(_positive(n) for n in v),
        "a list of positive integers",
    ),
    "max_points": (_positive, "a positive integer"),
    "compute_units": (_one_of(ComputeUnit), f"one of {', '.join(ComputeUnit)}"),
    "partitions": (lambda v: isinstance(v, dict), "a JSON object"),
}


def validate_model(model: dict, where: str) -> None:
    """The ``model`` section: which weights the export was made from."""
    _fields(model, _MODEL, where, optional=("variant", "path", "sha256", "seed"))
    if model["kind"] not in SOURCE_KINDS:
        raise ManifestError(
            f"{where}.kind {_show(model['kind'])} is not one of {', '.join(SOURCE_KINDS)}"
        )
    seed, sha = model.get("seed"), model.get("sha256")
    if model["kind"] == "random" and (seed is None or not 0 <= seed <= MAX_SEED):
        raise ManifestError(
            f"{where}.seed must be an integer from 0 to {MAX_SEED} for random weights"
        )
    if sha is not None and not _SHA256.fullmatch(sha):
        raise ManifestError(f"{where}.sha256 must be 64 hex digits (or null)")


def _tensors(items: list, where: str) -> None:
    """Declared inputs or outputs: objects with a name, a shape and a dtype."""
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        _fields(item, _TENSOR, at)
        if not all(d is None or (_positive(d) and d <= MAX_DIM) for d in item["shape"]):
            raise ManifestError(
                f"{at}.shape must list positive integers (null for a dynamic axis), "
                f"not {_show(item['shape'])}"
            )


def _details(details: dict, role: str, where: str) -> None:
    """The ``details`` keys that other code reads: their types and values."""
    for key, (test, what) in _DETAILS.items():
        if key in details and not test(details[key]):
            raise ManifestError(f"{where}.{key} must be {what}, not {_show(details[key])}")
    if details.get("mask_input") and role != Role.DECODER:
        raise ManifestError(f"{where}.mask_input: only a decoder takes mask inputs")


def _artifact(art: Any, where: str) -> None:
    """One ``artifacts`` entry: typed fields, known target, role and precision, plausible size."""
    _fields(art, _ARTIFACT, where, optional=("details",))
    check_relative(art["file"], where)
    _choice(art["target"], Target, f"{where}.target")
    _choice(art["role"], Role, f"{where}.role")
    _choice(art["precision"], Precision, f"{where}.precision")
    from .exporters import EXPORTERS  # the exporters import the manifest

    allowed = EXPORTERS[Target(art["target"])].precisions
    if art["precision"] not in allowed:
        raise ManifestError(
            f"{where}.precision '{art['precision']}': {art['target']} has no such precision "
            f"(it has {', '.join(allowed)})"
        )
    if not _SHA256.fullmatch(art["sha256"]):
        raise ManifestError(f"{where}: sha256 must be 64 hex digits")
    if not 0 <= art["size_bytes"] <= MAX_SIZE:
        raise ManifestError(f"{where}.size_bytes must be from 0 to {MAX_SIZE}")
    _tensors(art["inputs"], f"{where}.inputs")
    _tensors(art["outputs"], f"{where}.outputs")
    _details(art.get("details", {}), art["role"], f"{where}.details")


def _parity(parity: dict, where: str) -> None:
    """The ``parity`` section that export records: a verdict per artifact and their conjunction."""
    _fields(parity, _PARITY, where, optional=tuple(_PARITY))
    rows = parity.get("artifacts", [])
    for i, row in enumerate(rows):
        at = f"{where}.artifacts[{i}]"
        _fields(row, _PARITY_ROW, at, optional=_PARITY_ROW_OPTIONAL)
        if not all(_typed(v, (int, float)) for v in row["metrics"].values()):
            raise ManifestError(f"{at}.metrics must map names to numbers")
        if not all(isinstance(f, str) for f in row["failures"]):
            raise ManifestError(f"{at}.failures must be a list of strings")
    if "passed" in parity and parity["passed"] != all(row["passed"] for row in rows):
        raise ManifestError(f"{where}.passed contradicts the verdicts of its artifacts")


def _preprocessing(preprocessing: dict, where: str) -> None:
    for key, expected in NORMALIZATION.items():
        value = preprocessing.get(key, expected)
        if value != expected:
            raise ManifestError(
                f"{where}.{key} must be {expected} (the normalization every artifact is judged "
                f"with), not {_show(value)}"
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
    if not all(isinstance(v, str) for v in data.get("tools", {}).values()):
        raise ManifestError(f"{where}: tools must map package names to version strings")
    _preprocessing(data.get("preprocessing", {}), f"{where}: preprocessing")
    if data.get("parity") is not None:
        _parity(data["parity"], f"{where}: parity")
    seen: set[str] = set()
    for i, art in enumerate(data["artifacts"]):
        at = f"{where}: artifacts[{i}]"
        _artifact(art, at)
        if art["file"] in seen:
            raise ManifestError(f"{at}: {art['file']} is listed twice")
        seen.add(art["file"])


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
    """``root / file`` once symlinks are resolved, refused if it leaves ``root`` (or loops)."""
    check_relative(file, where)
    try:
        base = Path(root).resolve()
        path = (base / file).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ManifestError(
            f"{where}: file {file!r} cannot be resolved ({first_line(exc)})"
        ) from exc
    if base not in path.parents:
        raise ManifestError(f"{where}: file {file!r} leads outside the export directory (symlink)")
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise ManifestError(f"{where}: file {file!r} is not a regular file or directory")
    return base / file
