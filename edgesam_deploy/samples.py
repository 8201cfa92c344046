"""Real photos shipped by scikit-image, and the prompt set every check and benchmark uses.

Parity, calibration and the mixed-precision search's scoring use disjoint photos, so
quantization is never judged on its own calibration data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .processing import Prompt, to_rgb_uint8


def _rotated_rocket() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(np.rot90(skimage.data.rocket()))  # portrait 640 x 427


def _left_motorcycle() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]  # the left view, 500 x 741


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


# name -> loader; aspect ratios 3:2, 3:2 (cat), 2:3 portrait, 1:1 gray
PARITY_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "coffee": _skimage("coffee"),
    "chelsea": _skimage("chelsea"),
    "rocket-portrait": _rotated_rocket,
    "camera": _skimage("camera"),
}
CALIBRATION_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    name: _skimage(name)
    for name in (
        "astronaut",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
        "coins",
        "moon",
        "brick",
        "gravel",
        "colorwheel",
        "grass",
    )
}


# held out: the mixed-precision search scores its candidates on these (docs/mixed-precision.md)
SEARCH_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "motorcycle": _left_motorcycle,
    **{name: _skimage(name) for name in ("clock", "text", "cell", "page", "microaneurysms")},
}


def load_photo(name: str) -> np.ndarray:
    """A named sample photo as RGB uint8 H x W x 3."""
    loaders = {**PARITY_PHOTOS, **CALIBRATION_PHOTOS, **SEARCH_PHOTOS}
    return to_rgb_uint8(loaders[name](), source=name)


def standard_prompts(h: int, w: int) -> dict[str, Prompt]:
    """The five prompt cases on an H x W image: one point, points with background, box, box + point,
    and 15 points (16 decoder slots with the padding point: Core ML's default maximum)."""

    def p(fx: float, fy: float) -> tuple[float, float]:
        return (round(fx * (w - 1), 1), round(fy * (h - 1), 1))

    grid = [p(0.2 + 0.15 * (i % 5), 0.25 + 0.25 * (i // 5)) for i in range(15)]
    return {
        "one_point": Prompt([p(0.45, 0.55)], [1]),
        "points_bg": Prompt([p(0.4, 0.5), p(0.6, 0.45), p(0.1, 0.1)], [1, 1, 0]),
        "box": Prompt(box=(*p(0.2, 0.2), *p(0.75, 0.85))),
        "box_point": Prompt([p(0.5, 0.5)], [1], box=(*p(0.15, 0.1), *p(0.85, 0.9))),
        "many_points": Prompt(grid, [1 if i % 3 else 0 for i in range(15)]),
    }


def random_prompts(h: int, w: int, rng: np.random.Generator, count: int) -> list[Prompt]:
    """``count`` random prompts of the five kinds (for decoder calibration)."""
    out: list[Prompt] = []
    for i in range(count):
        kind = i % 5
        n = (1, 3, 0, 1, 15)[kind]
        pts = [(float(rng.uniform(0, w - 1)), float(rng.uniform(0, h - 1))) for _ in range(n)]
        labels = [int(rng.random() < 0.7) for _ in range(n)]
        box = None
        if kind in (2, 3):
            x1, x2 = sorted(rng.uniform(0, w, 2))
            y1, y2 = sorted(rng.uniform(0, h, 2))
            box = (float(x1), float(y1), float(max(x2, x1 + 1)), float(max(y2, y1 + 1)))
        out.append(Prompt(pts, labels, box))
    return out
