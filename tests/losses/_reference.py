"""Independent float64 NumPy references of the losses (written from the papers' formulas, docs/methods.md)."""

from __future__ import annotations

import itertools

import numpy as np
import torch


def np64(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def log_softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, *S) int → (N, C, *S) float64."""
    return np.moveaxis(np.eye(num_classes)[labels], -1, 1)


def as_dist(target: torch.Tensor, num_classes: int) -> np.ndarray:
    if target.is_floating_point():
        return np64(target)
    return one_hot(target.numpy(), num_classes)


def weighted_mean(values: np.ndarray, weight: np.ndarray | None = None) -> float:
    if weight is None:
        return float(values.mean())
    return float((values * weight).sum() / weight.sum())


def soft_ce(z: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-voxel −Σ_c q_c log softmax(z)_c."""
    return -(q * log_softmax(z)).sum(1)


def window_proportions(q: np.ndarray, k: int, padding: str) -> np.ndarray:
    """Mean of q over the k-window around every voxel, with explicit loops over offsets."""
    dims = q.ndim - 2
    r = k // 2
    pad = [(0, 0), (0, 0)] + [(r, r)] * dims
    if padding == "replicate":
        padded = np.pad(q, pad, mode="edge")
    else:
        padded = np.pad(q, pad, mode="constant")
        if padding == "background":
            inside = np.pad(np.ones(q.shape[2:]), [(r, r)] * dims, mode="constant")
            padded[:, 0] += 1.0 - inside
    out = np.zeros_like(q)
    spatial = q.shape[2:]
    for off in itertools.product(range(k), repeat=dims):
        window = tuple(slice(o, o + n) for o, n in zip(off, spatial, strict=True))
        out += padded[(slice(None), slice(None), *window)]
    return out / k**dims
