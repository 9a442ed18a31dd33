"""Independent float64 NumPy references for the calibration and scoring metrics (written from the definitions)."""

from __future__ import annotations

import numpy as np


def to_items(probs: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None):
    """(N, C, *S) probs and (N, *S) labels or (N, C, *S) soft → per-case lists of (V, C) probs and targets."""
    cases = []
    for n in range(probs.shape[0]):
        p = probs[n].reshape(probs.shape[1], -1).T.astype(np.float64)
        t = target[n]
        soft = target.shape == probs.shape
        t = t.reshape(probs.shape[1], -1).T.astype(np.float64) if soft else t.reshape(-1)
        if probs.shape[1] == 1:
            p = np.concatenate([1 - p, p], axis=1)
            if t.ndim == 2:
                t = np.concatenate([1 - t, t], axis=1)
        if mask is not None:
            keep = mask[n].reshape(-1)
            p, t = p[keep], t[keep]
        cases.append((p, t))
    return cases


def bin_of(r: np.ndarray, n_bins: int) -> np.ndarray:
    """Lower-open, upper-closed equal-width bins with edges m / M (float64) and 0 in the first bin."""
    edges = np.arange(1, n_bins) / n_bins
    return np.searchsorted(edges, np.asarray(r, dtype=np.float64), side="left")


def forecasts(p: np.ndarray, t: np.ndarray, mode: str, include_background: bool = True):
    """List of (confidence, outcome) arrays, one per histogram row."""
    c = p.shape[1]
    soft = t.ndim == 2
    if mode == "top_label":
        pred = p.argmax(1)
        conf = p.max(1)
        out = t[np.arange(len(t)), pred] if soft else (pred == t).astype(np.float64)
        return [(conf, out)]
    rows = []
    for k in range(0 if include_background else 1, c):
        out = t[:, k] if soft else (t == k).astype(np.float64)
        rows.append((p[:, k], out))
    if mode == "marginal":
        return [(np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]))]
    return rows


def binned_error(conf: np.ndarray, out: np.ndarray, n_bins: int, norm: str) -> float:
    """ECE / RMSCE / MCE / ACE of one row."""
    if len(conf) == 0:
        return float("nan")
    b = bin_of(conf, n_bins)
    gaps, weights = [], []
    for m in range(n_bins):
        sel = b == m
        if sel.any():
            gaps.append(abs(out[sel].mean() - conf[sel].mean()))
            weights.append(sel.sum() / len(conf))
    gaps_a, w = np.array(gaps), np.array(weights)
    if norm == "l1":
        return float((w * gaps_a).sum())
    if norm == "l2":
        return float(np.sqrt((w * gaps_a**2).sum()))
    if norm == "max":
        return float(gaps_a.max())
    return float(gaps_a.mean())


def calibration_error_ref(
    probs, target, *, n_bins=15, norm="l1", mode="top_label", mask=None, include_background=True
) -> float:
    """Pooled calibration error over all cases."""
    cases = to_items(probs, target, mask)
    p = np.concatenate([c[0] for c in cases])
    t = np.concatenate([c[1] for c in cases])
    rows = forecasts(p, t, mode, include_background)
    return float(np.mean([binned_error(cf, o, n_bins, norm) for cf, o in rows]))


def adaptive_ece_exact(conf: np.ndarray, out: np.ndarray, n_bins: int) -> float:
    """Exact equal-mass ECE: sorted forecasts split by numpy.array_split."""
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for part in np.array_split(order, n_bins):
        total += abs((conf[part] - out[part]).sum())
    return total / len(conf)


def brier_ref(probs, target, mask=None) -> float:
    cases = to_items(probs, target, mask)
    vals = []
    for p, t in cases:
        onehot = t if t.ndim == 2 else np.eye(p.shape[1])[t.astype(int)]
        vals.append(((p - onehot) ** 2).sum(1))
    v = np.concatenate(vals)
    return float(v.mean() / (2.0 if probs.shape[1] == 1 else 1.0))


def nll_ref(probs, target, mask=None, eps=1e-12) -> float:
    cases = to_items(probs, target, mask)
    vals = []
    for p, t in cases:
        onehot = t if t.ndim == 2 else np.eye(p.shape[1])[t.astype(int)]
        vals.append(-(onehot * np.log(np.maximum(p, eps))).sum(1))
    return float(np.concatenate(vals).mean())
