"""Pre- and post-processing of the official EdgeSAM pipeline, in NumPy and PIL only.

Shared by the PyTorch reference, the exporters' parity checks and every runner, so that all of them
feed artifacts exactly what the official pipeline would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DeployError
from .vocabulary import IMG_SIZE

MEAN_RGB = (123.675, 116.28, 103.53)  # on the 0..255 scale
STD_RGB = (58.395, 57.12, 57.375)
PIXEL_MEAN = np.array(MEAN_RGB, dtype=np.float32)
PIXEL_STD = np.array(STD_RGB, dtype=np.float32)
PAD_LABEL = -1.0


class ImageError(DeployError):
    """The input is not an image this tool can read."""


class PromptError(DeployError):
    """A prompt is malformed or lies outside the image."""


def to_rgb_uint8(arr: np.ndarray, source: str = "image") -> np.ndarray:
    """Gray (H x W or H x W x 1), RGB, RGBA; uint8, uint16, bool or float in [0, 1] -> H x W x 3 uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(
            f"{source}: expected a gray, RGB or RGBA image, got an array of shape {arr.shape}"
        )
    arr = arr[..., :3]
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageError(f"{source}: image of {arr.shape[1]}x{arr.shape[0]} pixels is too small")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype in (np.uint16, np.int32, np.uint32):  # 16-bit PNG/TIFF (PIL gives I;16 or I)
        return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{source}: image has NaN or infinite values")
        return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    raise ImageError(f"{source}: unsupported pixel type {arr.dtype}")


def resized_size(h: int, w: int, target: int = IMG_SIZE) -> tuple[int, int]:
    """Size after resizing the longest side to ``target``: (new_h, new_w)."""
    scale = target / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


@dataclass(frozen=True)
class Preprocessed:
    """``tensor`` 1 x 3 x 1024 x 1024 float32; sizes are (H, W)."""

    tensor: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def preprocess(image: np.ndarray) -> Preprocessed:
    """RGB uint8 H x W x 3 -> resized (PIL bilinear), normalized, zero-padded 1 x 3 x 1024 x 1024."""
    from PIL import Image

    image = to_rgb_uint8(image)
    h, w = image.shape[:2]
    nh, nw = resized_size(h, w)
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR), dtype=np.float32)
    x = (resized - PIXEL_MEAN) / PIXEL_STD
    out = np.zeros((1, 3, IMG_SIZE, IMG_SIZE), dtype=np.float32)
    out[0, :, :nh, :nw] = x.transpose(2, 0, 1)
    return Preprocessed(out, (h, w), (nh, nw))


@dataclass
class Prompt:
    """Points (x, y) in original-image pixels with labels (1 fg, 0 bg) and an optional XYXY box."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None

    def validate(self, original_size: tuple[int, int]) -> None:
        """Raise PromptError for an empty prompt or a point / box outside the H x W image."""
        h, w = original_size
        if not self.points and self.box is None:
            raise PromptError("a prompt needs at least one --point or a --box")
        if len(self.points) != len(self.labels):
            raise PromptError("every point needs a label")
        for (x, y), lab in zip(self.points, self.labels):
            if lab not in (0, 1):
                raise PromptError(f"point label {lab} is not 0 (background) or 1 (foreground)")
            if not (0 <= x < w and 0 <= y < h):
                raise PromptError(f"point ({x:g}, {y:g}) lies outside the {w}x{h} image")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
                raise PromptError(
                    f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is not a box inside the {w}x{h} image"
                )


def decoder_inputs(
    prompt: Prompt, original_size: tuple[int, int], input_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Prompt -> (point_coords 1 x N x 2, point_labels 1 x N) float32 in the 1024 frame.

    Points first, then the box as two points labelled 2 and 3; without a box one padding point
    (0, 0, -1) is appended (exactly one: more padding tokens would change the masks).
    """
    coords = [list(p) for p in prompt.points]
    labels = [float(lab) for lab in prompt.labels]
    if prompt.box is not None:
        x1, y1, x2, y2 = prompt.box
        coords += [[x1, y1], [x2, y2]]
        labels += [2.0, 3.0]
    else:
        coords.append([0.0, 0.0])
        labels.append(PAD_LABEL)
    c = np.array(coords, dtype=np.float64)
    c[:, 0] *= input_size[1] / original_size[1]
    c[:, 1] *= input_size[0] / original_size[0]
    if prompt.box is None:
        c[-1] = 0.0
    return c.astype(np.float32)[None], np.array(labels, dtype=np.float32)[None]


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """n_out x n_in matrix of 1-D linear interpolation, align_corners=False (PyTorch's rule)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0, None)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1 - frac)
    np.add.at(m, (rows, i1), frac)
    return m.astype(np.float32)


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """... x h x w -> ... x out_h x out_w, bilinear, align_corners=False, no antialias."""
    my = _interp_matrix(out_h, x.shape[-2])
    mx = _interp_matrix(out_w, x.shape[-1])
    return my @ x.astype(np.float32) @ mx.T


def postprocess_logits(
    lowres: np.ndarray, input_size: tuple[int, int], original_size: tuple[int, int]
) -> np.ndarray:
    """Low-res logits ... x 256 x 256 -> 1024 -> crop to input_size -> ... x H x W logits."""
    up = resize_bilinear(lowres, IMG_SIZE, IMG_SIZE)
    up = up[..., : input_size[0], : input_size[1]]
    return resize_bilinear(up, original_size[0], original_size[1])


def masks_from_logits(logits: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Logits -> boolean masks (logit > threshold)."""
    return logits > threshold


LOWRES_SHAPE = (1, 1, 256, 256)  # a previous answer's low-res logits, as the decoder takes them


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header alone (a header may claim petabytes:
    nothing is allocated before the shape is checked); PromptError if it is not one."""
    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    if Path(path).exists() and not Path(path).is_file():
        raise PromptError(f"--mask-input {path}: not a regular file")
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version not in readers:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = readers[version](fh)
    except (OSError, ValueError, EOFError) as exc:
        raise PromptError(f"--mask-input {path}: not a readable .npy array ({exc})") from None
    return shape, dtype


def load_mask_input(path: Path) -> np.ndarray:
    """A previous prediction's low-res logits from a ``.npy`` file ([256, 256], [1, 256, 256] or
    [1, 1, 256, 256], floating point, finite) -> float32 [1, 1, 256, 256]; PromptError otherwise."""
    shape, dtype = _npy_header(path)
    if not np.issubdtype(dtype, np.floating):
        raise PromptError(f"--mask-input {path}: logits must be floating point, got {dtype}")
    if math.prod(shape) != 256 * 256 or tuple(shape[-2:]) != (256, 256):
        raise PromptError(
            f"--mask-input {path}: shape {list(shape)}; expected [1, 256, 256] low-res logits "
            "(as --logits-out writes them) or [256, 256]"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise PromptError(f"--mask-input {path}: not a readable .npy array ({exc})") from None
    if not np.all(np.isfinite(array)):
        raise PromptError(f"--mask-input {path}: holds NaN or infinite values")
    return array.astype(np.float32).reshape(LOWRES_SHAPE)
