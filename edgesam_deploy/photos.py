"""Photos as viewers show them: the one place that reads an image file (segment, calibration).

EXIF orientation is applied (phone photos are often stored landscape with a "rotate" tag), CMYK
and other colour spaces are converted to RGB, 16-bit, palette and transparent images are turned
into 8-bit RGB (transparency composited over white, as a viewer on a white page shows it), and
images over a pixel limit are refused before they are decoded (decompression bombs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import first_line
from .processing import ImageError, to_rgb_uint8

DEFAULT_MAX_MEGAPIXELS = 100.0  # a 200 MP phone sensor needs --max-megapixels 200
EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = ("RGBA", "LA", "PA", "P", "RGBa", "La")
_ARRAY_MODES = ("RGB", "L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N")


@dataclass(frozen=True)
class Photo:
    """``rgb`` uint8 H x W x 3 in the displayed frame, and how the file was turned into it."""

    rgb: np.ndarray
    orientation: int  # the EXIF orientation applied (1: stored upright)
    mode: str  # PIL mode of the file

    def describe(self) -> str:
        """The frame the pixels (and every prompt and mask) are in, for outputs to state."""
        h, w = self.rgb.shape[:2]
        turned = f", EXIF orientation {self.orientation} applied" if self.orientation != 1 else ""
        return f"{w}x{h} as displayed{turned}, from {self.mode}"


@contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """PIL's global bomb check off while ``read_photo`` applies its own (which can be raised)."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _to_rgb(im: Image.Image, source: str) -> np.ndarray:
    """Any PIL image -> RGB uint8, colours converted, alpha composited over white."""
    if im.mode in _ALPHA_MODES and (im.mode != "P" or "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if im.mode in _ARRAY_MODES:
        return to_rgb_uint8(np.asarray(im), source=source)
    try:
        return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, palette
    except (ValueError, OSError) as exc:
        raise ImageError(
            f"{source}: pixel format {im.mode} cannot be converted to RGB ({first_line(exc)})"
        ) from exc


def read_photo(path: str | Path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Photo:
    """Read ``path`` as it is displayed; ImageError for anything that is not a readable image."""
    path = Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO would block the read
        raise ImageError(f"{path}: not a regular file (a pipe, socket or device), not an image")
    with _own_pixel_limit():
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_megapixels * 1e6:
                    raise ImageError(
                        f"{path}: {w}x{h} is {w * h / 1e6:.3g} megapixels, over the limit of "
                        f"{max_megapixels:g} (a guard against decompression bombs); "
                        "raise it with --max-megapixels"
                    )
                orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
                mode = im.mode
                im.load()
                upright = ImageOps.exif_transpose(im) or im
                rgb = _to_rgb(upright, str(path))
        except FileNotFoundError as exc:
            raise ImageError(f"{path}: no such file") from exc
        except IsADirectoryError as exc:
            raise ImageError(f"{path}: is a directory, not an image") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{path}: not a readable image ({exc.__class__.__name__})") from exc
    return Photo(
        to_rgb_uint8(rgb, source=str(path)), orientation if orientation in range(1, 9) else 1, mode
    )


def load_image(path: str | Path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """``read_photo(path).rgb``: RGB uint8 H x W x 3 as displayed."""
    return read_photo(path, max_megapixels).rgb
