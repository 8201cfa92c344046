"""Mask overlays a person looks at: the photo, the mask tinted, and the prompt."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .processing import Prompt

MASK_COLOR = np.array([30, 144, 255], dtype=np.float32)


def overlay(
    image: np.ndarray, mask: np.ndarray, prompt: Prompt, caption: str | None = None
) -> Image.Image:
    """RGB uint8 H x W x 3 and bool H x W -> RGB image with the mask tinted (55%), prompt drawn."""
    out = image.astype(np.float32)
    out[mask] = 0.45 * out[mask] + 0.55 * MASK_COLOR
    im = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    r = max(3, round(min(im.size) / 80))
    for (x, y), label in zip(prompt.points, prompt.labels):
        fill = (0, 200, 0) if label == 1 else (220, 0, 0)
        draw.ellipse(
            (x - r, y - r, x + r, y + r), fill=fill, outline=(255, 255, 255), width=max(1, r // 3)
        )
    if prompt.box is not None:
        draw.rectangle(prompt.box, outline=(0, 200, 0), width=max(2, r // 2))
    if caption:
        draw.rectangle((0, 0, im.width, 14), fill=(0, 0, 0))
        draw.text((3, 1), caption, fill=(255, 220, 0))
    return im


def mask_image(mask: np.ndarray) -> Image.Image:
    """bool H x W -> 8-bit grayscale, 255 inside the mask."""
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
