"""Per-case metric arrays of one benchmark run: what the report's tables, statistics and figures are computed from.

Every array has the test cases on its first axis, in loader order, so two methods of the same suite and seed are
paired case by case. Two kinds of arrays are kept:

* **case values** (``dice``, ``hd95``, ``nll``, ``brier``, ``thresholded_dice``, ``ged``, ``top1``, ``top5``):
  one number per case (or per case and foreground class); a dataset value is their mean over cases;
* **histograms** (``hist_ece``, ``hist_cece``, ``hist_band``): the calibration histogram of every case, shape
  ``(K, rows, n_bins, 3)`` holding the count, the confidence sum and the outcome sum of each bin. Sums over any
  multiset of cases give the exact pooled ECE of that multiset, so the bootstrap of a pooled ECE is exact too.

References. Calibration metrics, NLL, Brier and the QUBIQ Dice use the **soft reference** of the batch (the known
truth ``true_probs`` of synthetic data, else the data's ``soft_label``, else the rater mean) and the label otherwise;
Dice, HD95, the boundary band and the structure fractions use its argmax. Temperature scaling is fitted on what a
user has — the rater mean, the soft label, or the label — never on ``true_probs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from softlabels._ops import argmax
from softlabels.metrics.functional import (
    boundary_band,
    brier_score,
    dice_per_threshold,
    dice_score,
    generalized_energy_distance,
    hausdorff_distance_95,
    negative_log_likelihood,
    thresholded_dice,
)
from softlabels.metrics.functional.calibration import _calibration_histogram_update
from softlabels.training.evaluation import batch_references

__all__ = [
    "CASE_METRICS",
    "CURVE_THRESHOLDS",
    "HISTOGRAM_METRICS",
    "case_metrics",
    "ece_from_histogram",
    "observed_reference",
    "per_case_values",
    "segmentation_case_metrics",
    "summarize_case_metrics",
]

CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""Thresholds of the Dice-vs-threshold curve (0.05 … 0.95).

Example:
    >>> CURVE_THRESHOLDS[0], CURVE_THRESHOLDS[-1], len(CURVE_THRESHOLDS)
    (0.05, 0.95, 19)
"""


def observed_reference(batch: Mapping[str, Any], num_classes: int, spatial_dims: int) -> Tensor:
    """What a user observes as target (for fitting temperature scaling): rater mean, soft label, else the label.

    Example:
        >>> batch = {"label": torch.tensor([1, 0]), "raters": torch.tensor([[1, 1], [0, 1]])}
        >>> observed_reference(batch, 2, 0).tolist()
        [[0.0, 1.0], [0.5, 0.5]]
    """
    visible = {k: v for k, v in batch.items() if k != "true_probs"}
    hard, soft = batch_references(visible, num_classes, spatial_dims)
    return soft if soft is not None else hard


def _histograms(probs: Tensor, target: Tensor, n_bins: int, mode: str, mask: Tensor | None = None) -> np.ndarray:
    """``(N, rows, n_bins, 3)``: count, confidence sum and outcome sum of every bin of every case."""
    hist = _calibration_histogram_update(probs, target, n_bins=n_bins, mode=mode, mask=mask, per_case=True)
    return torch.stack([hist.counts.double(), hist.confidence, hist.outcome], dim=-1).cpu().numpy()


def _fractions(labels: Tensor, num_classes: int) -> np.ndarray:
    """``(N, C - 1)`` share of the voxels of each foreground class in a label map ``(N, *spatial)``."""
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).flatten(1, -2).double().mean(1)
    return onehot[:, 1:].cpu().numpy()


def segmentation_case_metrics(
    probs: Tensor,
    batch: Mapping[str, Any],
    *,
    num_classes: int,
    spatial_dims: int,
    n_bins: int = 15,
    boundary_width: float = 2.0,
) -> dict[str, np.ndarray]:
    """Per-case arrays of one segmentation batch (``probs (N, C, *spatial)``): see the module docstring.

    Example:
        >>> probs = torch.softmax(torch.randn(2, 2, 8, 8), 1)
        >>> batch = {"label": (torch.rand(2, 1, 8, 8) > 0.5).long(), "raters": (torch.rand(2, 3, 8, 8) > 0.5).long()}
        >>> arrays = segmentation_case_metrics(probs, batch, num_classes=2, spatial_dims=2)
        >>> arrays["dice"].shape, arrays["hist_ece"].shape, arrays["ged"].shape
        ((2, 1), (2, 1, 15, 3), (2,))
    """
    hard, soft = batch_references(batch, num_classes, spatial_dims)
    probs, hard = probs.double(), hard.to(probs.device)
    ref = soft.to(probs.device).double() if soft is not None else hard
    ref_labels = argmax(ref, 1) if soft is not None else hard
    band = boundary_band(ref_labels, width=boundary_width)
    pred = argmax(probs, 1)
    out: dict[str, np.ndarray] = {
        "hist_ece": _histograms(probs, ref, n_bins, "top_label"),
        "hist_cece": _histograms(probs, ref, n_bins, "classwise"),
        "hist_band": _histograms(probs, ref, n_bins, "top_label", band),
        "dice": dice_score(probs, ref_labels, num_classes=num_classes).cpu().numpy(),
        "hd95": hausdorff_distance_95(probs, ref_labels).cpu().numpy(),
        "nll": np.array([float(negative_log_likelihood(probs[i : i + 1], ref[i : i + 1])) for i in range(len(probs))]),
        "brier": np.array([float(brier_score(probs[i : i + 1], ref[i : i + 1])) for i in range(len(probs))]),
        "pred_fraction": _fractions(pred, num_classes),
        "ref_fraction": ref.flatten(2).mean(2)[:, 1:].cpu().numpy()
        if soft is not None
        else _fractions(hard, num_classes),
    }
    if soft is not None:
        out["thresholded_dice"] = thresholded_dice(probs, ref).cpu().numpy()
        out["dice_curve"] = dice_per_threshold(probs, ref, thresholds=CURVE_THRESHOLDS).cpu().numpy()
    raters = batch.get("raters")
    if isinstance(raters, Tensor) and raters.shape[1] >= 1:
        samples = pred.unsqueeze(0)  # one deterministic sample per case: the argmax map
        out["ged"] = generalized_energy_distance(
            samples, raters.to(probs.device).long().movedim(1, 0), num_classes=max(num_classes, 2)
        ).cpu().numpy()  # fmt: skip
    return out


def _classification_case_metrics(
    probs: Tensor, batch: Mapping[str, Any], *, num_classes: int, n_bins: int = 15
) -> dict[str, np.ndarray]:
    """Per-item arrays of one classification batch (``probs (N, C)``): correctness, NLL, Brier, histograms."""
    hard, soft = batch_references(batch, num_classes, 0)
    probs, hard = probs.double(), hard.to(probs.device)
    ref = soft.to(probs.device).double() if soft is not None else hard
    k5 = min(5, num_classes)
    top5 = probs.topk(k5, dim=1).indices.eq(hard.unsqueeze(1)).any(1)
    return {
        "hist_ece": _histograms(probs, ref, n_bins, "top_label"),
        "hist_cece": _histograms(probs, ref, n_bins, "classwise"),
        "top1": argmax(probs, 1).eq(hard).double().cpu().numpy(),
        "top5": top5.double().cpu().numpy(),
        "nll": np.array([float(negative_log_likelihood(probs[i : i + 1], ref[i : i + 1])) for i in range(len(probs))]),
        "brier": np.array([float(brier_score(probs[i : i + 1], ref[i : i + 1])) for i in range(len(probs))]),
    }


def case_metrics(
    batches: Iterable[tuple[Tensor, Mapping[str, Any]]],
    *,
    task: str,
    num_classes: int,
    spatial_dims: int,
    n_bins: int = 15,
    boundary_width: float = 2.0,
) -> dict[str, np.ndarray]:
    """Concatenate the per-case arrays of ``(probs, batch)`` pairs over a split.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
        >>> arrays = case_metrics([(probs, {"label": torch.tensor([0, 0])})], task="classification",
        ...     num_classes=2, spatial_dims=0)
        >>> arrays["top1"].tolist(), arrays["hist_ece"].shape
        ([1.0, 0.0], (2, 1, 15, 3))
    """
    parts: dict[str, list[np.ndarray]] = {}
    for probs, batch in batches:
        if task == "segmentation":
            arrays = segmentation_case_metrics(
                probs, batch, num_classes=num_classes, spatial_dims=spatial_dims, n_bins=n_bins,
                boundary_width=boundary_width,
            )  # fmt: skip
        else:
            arrays = _classification_case_metrics(probs, batch, num_classes=num_classes, n_bins=n_bins)
        for key, value in arrays.items():
            parts.setdefault(key, []).append(value)
    if not parts:
        raise ValueError("case_metrics got no batch (an empty split?).")
    return {key: np.concatenate(values, axis=0) for key, values in parts.items()}


def ece_from_histogram(hist: np.ndarray) -> np.ndarray:
    """Pooled ECE of summed histograms ``(..., rows, n_bins, 3)`` → ``(...)``: mean over rows of ``Σ|conf − out| / n``.

    Rows without samples are left out of the mean (NaN when no row has any).

    Example:
        >>> h = np.array([[[[2.0, 1.8, 1.0], [0.0, 0.0, 0.0]]]])  # 1 row, 2 bins: 2 samples, conf 0.9, acc 0.5
        >>> float(ece_from_histogram(h.sum(0)))
        0.4
    """
    counts = hist[..., 0].sum(-1)
    gap = np.abs(hist[..., 1] - hist[..., 2]).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_row = np.where(counts > 0, gap / np.where(counts > 0, counts, 1.0), np.nan)
        return np.nanmean(per_row, axis=-1) if per_row.shape[-1] > 1 else per_row[..., 0]


HISTOGRAM_METRICS: dict[str, str] = {"ece": "hist_ece", "ece_classwise": "hist_cece", "ece_boundary": "hist_band"}
"""Report metric → the histogram array it is pooled from.

Example:
    >>> HISTOGRAM_METRICS["ece_boundary"]
    'hist_band'
"""
CASE_METRICS: tuple[str, ...] = ("dice", "hd95", "thresholded_dice", "ged", "nll", "brier", "top1", "top5")
"""Report metrics that are means of per-case values (per-class values are averaged over classes first, NaN skipped).

Example:
    >>> "hd95" in CASE_METRICS
    True
"""


def per_case_values(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """``(K,)`` values of a case metric: the NaN-skipping mean over classes of per-class arrays.

    Example:
        >>> per_case_values({"dice": np.array([[0.5, 1.0], [np.nan, 0.2]])}, "dice").tolist()
        [0.75, 0.2]
    """
    values = np.asarray(arrays[name], dtype=np.float64)
    if values.ndim == 1:
        return values
    flat = values.reshape(len(values), -1)
    finite = np.isfinite(flat)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(1), np.where(finite, flat, 0.0).sum(1) / np.maximum(finite.sum(1), 1), np.nan)


def summarize_case_metrics(arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Dataset values of one evaluation: pooled ECEs from the histograms, means of the per-case metrics.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
        >>> arrays = case_metrics([(probs, {"label": torch.tensor([0, 0])})], task="classification",
        ...     num_classes=2, spatial_dims=0)
        >>> summary = summarize_case_metrics(arrays)
        >>> summary["top1"], round(summary["ece"], 4)
        (0.5, 0.35)
    """
    out: dict[str, float] = {}
    for name, key in HISTOGRAM_METRICS.items():
        if key in arrays:
            out[name] = float(ece_from_histogram(np.asarray(arrays[key]).sum(0)))
    for name in CASE_METRICS:
        if name in arrays:
            values = per_case_values(arrays, name)
            finite = values[np.isfinite(values)]
            out[name] = float(finite.mean()) if finite.size else float("nan")
    return out
