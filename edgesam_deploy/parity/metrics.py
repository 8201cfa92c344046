"""Agreement metrics between an artifact's outputs and the PyTorch fp32 reference."""

from __future__ import annotations

import numpy as np

PSNR_CAP = 200.0


def max_abs(ref: np.ndarray, x: np.ndarray) -> float:
    return float(np.max(np.abs(ref.astype(np.float64) - x.astype(np.float64))))


def cosine(ref: np.ndarray, x: np.ndarray) -> float:
    """Cosine similarity of the flattened tensors (1.0 for two zero tensors)."""
    a, b = ref.ravel().astype(np.float64), x.ravel().astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def psnr(ref: np.ndarray, x: np.ndarray) -> float:
    """PSNR in dB with the reference's value range as peak; capped at 200 dB for identical tensors."""
    ref64 = ref.astype(np.float64)
    mse = float(np.mean((ref64 - x.astype(np.float64)) ** 2))
    peak = float(ref64.max() - ref64.min())
    if mse == 0.0 or peak == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * np.log10(peak * peak / mse))


def mask_iou(ref: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-mask IoU of boolean masks ... x H x W (1.0 where both are empty), and the union areas."""
    inter = np.logical_and(ref, x).sum(axis=(-2, -1))
    union = np.logical_or(ref, x).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1)), union
