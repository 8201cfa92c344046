"""Model registry, checkpoint download/cache and strict loading, and the seeded random default."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint_scan import load_failure
from .errors import DeployError
from .fileio import sha256_path as sha256_file
from .manifest_schema import MAX_SEED
from .modeling import EdgeSam
from .modeling.image_encoder import UpsampleMode
from .modeling.random_init import randomize_
from .terminal import current

URL_BASE = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/"
LICENSE_NOTICE = (
    "EdgeSAM weights are released under the NTU S-Lab License 1.0: non-commercial use only "
    "(https://github.com/chongzhou96/EdgeSAM/blob/master/LICENSE)."
)


class CheckpointError(DeployError):
    """A checkpoint is missing, corrupt, unsafe or of another architecture."""


@dataclass(frozen=True)
class Variant:
    """One published EdgeSAM checkpoint."""

    name: str
    filename: str
    description: str

    @property
    def url(self) -> str:
        return URL_BASE + self.filename


REGISTRY: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("edgesam", "edge_sam.pth", "EdgeSAM (RepViT-M1 encoder, distilled from SAM ViT-H)"),
        Variant("edgesam-3x", "edge_sam_3x.pth", "EdgeSAM-3x (trained 3x longer on SA-1B)"),
    )
}


@dataclass(frozen=True)
class ModelSource:
    """Where the weights came from; recorded in every manifest and report."""

    variant: str
    kind: str  # "checkpoint" or "random"
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "random":
            return f"{self.variant} with RANDOM weights (seed {self.seed}), not a trained model"
        return f"{self.variant} from {self.path} (sha256 {self.sha256[:12]}...)"

    def as_dict(self) -> dict:
        return {
            "variant": self.variant,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "seed": self.seed,
        }


def cache_dir() -> Path:
    """``$EDGESAM_DEPLOY_CACHE`` or ``~/.cache/edgesam-deploy``."""
    return Path(os.environ.get("EDGESAM_DEPLOY_CACHE", Path.home() / ".cache" / "edgesam-deploy"))


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def cached_path(variant: Variant) -> Path | None:
    """The cached checkpoint if present and matching its recorded SHA-256, else None."""
    path = cache_dir() / variant.filename
    if not path.exists():
        return None
    rec = _record_path(path)
    if rec.exists() and json.loads(rec.read_text())["sha256"] != sha256_file(path):
        raise CheckpointError(
            f"{path} does not match the SHA-256 recorded at download; delete it and download again"
        )
    return path


def download(variant: Variant, timeout: float = 30.0) -> Path:
    """Download ``variant`` into the cache (atomic), record its SHA-256, print the licence notice."""
    dest = cache_dir() / variant.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    current().console.print(f"Downloading {variant.url}\n{LICENSE_NOTICE}", markup=False)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(variant.url, timeout=timeout) as resp, open(part, "wb") as out:
            shutil.copyfileobj(resp, out)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not download {variant.url} ({exc.__class__.__name__}: {exc}); download it by "
            "hand to "
            f"{dest}, or pass --checkpoint PATH, or --random-weights SEED to run on seeded random "
            "weights"
        ) from exc
    digest = sha256_file(part)
    part.replace(dest)
    _record_path(dest).write_text(json.dumps({"url": variant.url, "sha256": digest}))
    return dest


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a flat state_dict or a training checkpoint ``{'model': state_dict}``; code pickles refused."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as exc:  # torch raises many types for damaged files (RuntimeError, EOFError ...)
        raise CheckpointError(load_failure(path, exc)) from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: expected a state_dict (name -> tensor), got a {type(obj).__name__}"
        )
    odd = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise CheckpointError(
            f"{path}: expected a state_dict (name -> tensor), but entry '{odd}' is of type "
            f"{type(obj[odd]).__name__}"
        )
    return obj


def load_state_dict_strict(
    model: EdgeSam, state_dict: dict[str, torch.Tensor], origin: str
) -> None:
    """Strict load that lists every missing, unexpected and mis-shaped key in one error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    common = set(expected) & set(state_dict)
    shapes = sorted(k for k in common if expected[k].shape != state_dict[k].shape)
    # an integer tensor where the model holds weights (or the reverse) is not a cast away
    dtypes = sorted(
        k for k in common if expected[k].is_floating_point() != state_dict[k].is_floating_point()
    )
    non_finite = sorted(
        k
        for k in common
        if state_dict[k].is_floating_point() and not torch.isfinite(state_dict[k]).all()
    )
    if missing or unexpected or shapes or dtypes or non_finite:
        parts = []
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", shapes),
            ("integer where weights are floating point, or the reverse", dtypes),
            ("NaN or infinite values", non_finite),
        ):
            if keys:
                shown = ", ".join(keys[:5]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 5 else ""
                )
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"{origin} is not an EdgeSAM checkpoint; " + "; ".join(parts))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state_dict.items()}, strict=True)


def load_model(
    variant: str = "edgesam",
    checkpoint: Path | None = None,
    random_seed: int | None = None,
    upsample_mode: UpsampleMode = "bilinear",
    allow_download: bool = True,
) -> tuple[EdgeSam, ModelSource]:
    """Build EdgeSAM in eval mode from a local file, the cache (downloading if needed) or a seed."""
    if variant not in REGISTRY:
        raise CheckpointError(f"unknown model variant '{variant}'; known: {', '.join(REGISTRY)}")
    model = EdgeSam(upsample_mode)
    if random_seed is not None:
        if checkpoint is not None:
            raise CheckpointError("give either --checkpoint or --random-weights, not both")
        if not 0 <= random_seed <= MAX_SEED:
            raise CheckpointError(
                f"--random-weights {random_seed}: a seed is an integer from 0 to {MAX_SEED}"
            )
        randomize_(model, random_seed)
        return model, ModelSource(variant, "random", seed=random_seed)
    if checkpoint is None:
        checkpoint = cached_path(REGISTRY[variant])
        if checkpoint is None:
            if not allow_download:
                raise CheckpointError(
                    f"no checkpoint for {variant}: download {REGISTRY[variant].url} to "
                    f"{cache_dir()}, "
                    "or pass --checkpoint PATH, or --random-weights SEED"
                )
            checkpoint = download(REGISTRY[variant])
    checkpoint = Path(checkpoint)
    load_state_dict_strict(model, read_state_dict(checkpoint), str(checkpoint))
    return model.eval(), ModelSource(
        variant, "checkpoint", path=str(checkpoint), sha256=sha256_file(checkpoint)
    )


def load_model_for_source(
    source: dict, checkpoint: Path | None = None, upsample_mode: UpsampleMode = "bilinear"
) -> tuple[EdgeSam, ModelSource]:
    """Rebuild the model a manifest names (seeded random or checkpoint, SHA-256 checked);
    ``checkpoint`` overrides the recorded path."""
    variant = source.get("variant", "edgesam")
    if checkpoint is None and source.get("kind") == "random":
        return load_model(variant, random_seed=int(source["seed"]), upsample_mode=upsample_mode)
    path = Path(checkpoint or source.get("path") or "")
    if not path.is_file():
        if checkpoint is not None:
            raise CheckpointError(f"{checkpoint}: no such checkpoint file")
        made_from = source.get("path") or "a checkpoint file the manifest does not name"
        raise CheckpointError(
            f"the export was made from {made_from}, which is not here; pass --checkpoint PATH"
        )
    model, loaded = load_model(variant, checkpoint=path, upsample_mode=upsample_mode)
    if source.get("sha256") and loaded.sha256 != source["sha256"]:
        raise CheckpointError(
            f"{path} is not the checkpoint this export was made from (SHA-256 differs)"
        )
    return model, loaded


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
