"""Calibration data: real photos (scikit-image's, or the user's ``--calibration-dir``), and the
held-out photos the mixed-precision search scores its candidates on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import DeployError
from ..photos import load_image
from ..processing import ImageError, decoder_inputs, preprocess
from ..samples import CALIBRATION_PHOTOS, SEARCH_PHOTOS, load_photo, random_prompts

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def calibration_photos(
    directory: Path | None = None, limit: int = 8
) -> tuple[list[str], Callable[[str], np.ndarray]]:
    """The names of up to ``limit`` calibration photos and the loader that reads one as RGB uint8
    H x W x 3: scikit-image sample names, or the image files of ``directory``."""
    if directory is None:
        return list(CALIBRATION_PHOTOS)[:limit], load_photo
    directory = Path(directory)
    if not directory.is_dir():
        raise DeployError(f"--calibration-dir {directory}: not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DeployError(
            f"--calibration-dir {directory}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return [str(f) for f in files], _load_user_image


def scoring_photos(count: int) -> list[str]:
    """The first ``count`` held-out photos (``samples.SEARCH_PHOTOS``): never used to calibrate
    activation ranges, never parity photos; ``load_photo`` reads them."""
    if not 1 <= count <= len(SEARCH_PHOTOS):
        raise DeployError(f"--search-images {count}: must be in [1, {len(SEARCH_PHOTOS)}]")
    return list(SEARCH_PHOTOS)[:count]


def _load_user_image(path: str) -> np.ndarray:
    try:
        return load_image(path)
    except ImageError as exc:
        raise DeployError(f"--calibration-dir: {exc}") from exc


def calibration_images(directory: Path | None = None, limit: int = 8) -> list[np.ndarray]:
    """Up to ``limit`` preprocessed images, each 1 x 3 x 1024 x 1024 float32."""
    names, loader = calibration_photos(directory, limit)
    return [preprocess(loader(name)).tensor for name in names]


def decoder_calibration_feeds(
    encoder: torch.nn.Module, images: list[np.ndarray], prompts_per_image: int = 5, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Decoder feeds (``image_embeddings``, ``point_coords``, ``point_labels``) from real embeddings
    and random prompts of all five kinds; point counts vary, so group by N if a tool needs it."""
    rng = np.random.default_rng(seed)
    feeds = []
    for img in images:
        with torch.no_grad():
            emb = encoder(torch.from_numpy(img)).numpy()
        # prompts in the 1024 frame of the padded image: treat it as a 1024 x 1024 original
        for prompt in random_prompts(1024, 1024, rng, prompts_per_image):
            coords, labels = decoder_inputs(prompt, (1024, 1024), (1024, 1024))
            feeds.append({"image_embeddings": emb, "point_coords": coords, "point_labels": labels})
    return feeds


def with_previous_masks(
    decoder: torch.nn.Module, feeds: list[dict[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Feeds for the decoder with mask inputs: each prompt's own best answer from ``decoder`` (the
    plain decoder graph) as ``mask_input`` [1, 1, 256, 256], used (``has_mask_input`` 1) on every
    other feed and ignored (0) on the rest, as an app's first and later clicks."""
    out = []
    for i, feed in enumerate(feeds):
        with torch.no_grad():
            scores, masks = decoder(
                *(
                    torch.from_numpy(feed[k])
                    for k in ("image_embeddings", "point_coords", "point_labels")
                )
            )
        best = int(torch.argmax(scores[0]))
        mask = masks[:, best : best + 1].numpy()
        out.append(
            {
                **feed,
                "mask_input": mask,
                "has_mask_input": np.array([float(i % 2 == 0)], np.float32),
            }
        )
    return out
