"""The benchmark's decisions with guarantees: per-case arrays, repeated calibration/test splits, failure detection.

Per evaluated case the bench keeps (:func:`decision_arrays`, stored in ``cases.npz`` beside the metrics' arrays):

* segmentation: ``fnr_curve`` ``(N, K, G)`` — the case's false-negative rate of the mask ``p_k >= t`` at each of
  ``G`` = :data:`BENCH_LEVELS` levels against the ``auto`` risk reference (each rater where the data has raters,
  else the soft reference, else the label; :data:`softlabels.evaluation.references.RISK_REFERENCES`), and
  ``mask_fraction`` ``(N, K, G)`` — the mask's share of the image;
* classification: ``probs`` ``(N, C)`` and ``label`` ``(N,)``;
* both: ``conf_<name>`` ``(N,)`` — the per-case confidence scores of
  :mod:`softlabels.evaluation.failure_detection`.

From these the report draws, per method, :data:`N_SPLITS` random calibration/test splits of the test cases
(:func:`risk_control_splits`, :func:`prediction_set_splits`): the controlled threshold, the realized test risk and
its spread, the mask size or set size at the guarantee, and the failure-detection table (:func:`failure_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.random import default_rng
from torch import Tensor

from softlabels.conformal import (
    case_curves,
    class_coverage,
    coverage,
    crc_index,
    fit_prediction_sets,
    ltt_index,
    set_sizes,
    threshold_levels,
)
from softlabels.evaluation.failure_detection import (
    classification_confidences,
    failure_detection_table,
    risk_coverage_curve,
    segmentation_confidences,
)
from softlabels.evaluation.references import References, risk_reference

__all__ = [
    "ALPHA",
    "BENCH_LEVELS",
    "N_SPLITS",
    "SET_SETTINGS",
    "calibration_size",
    "case_quality",
    "decision_arrays",
    "failure_rows",
    "mean_risk_coverage",
    "prediction_set_splits",
    "risk_control_splits",
]

ALPHA = 0.1
"""The risk level of the report's guarantees (FNR ≤ α; coverage ≥ 1 − α).

Example:
    >>> ALPHA
    0.1
"""
DELTA = 0.1  # not in __all__: the same float object as ALPHA, and the package exports one name per object
"""LTT's tolerance: P(risk ≤ α) ≥ 1 − δ.

Example:
    >>> DELTA
    0.1
"""
N_SPLITS = 500
"""Random calibration/test splits per run.

Example:
    >>> N_SPLITS >= 500
    True
"""
BENCH_LEVELS = 201
"""Threshold levels of the bench's FNR curves (a step of 0.005).

Example:
    >>> BENCH_LEVELS
    201
"""
SET_SETTINGS: dict[str, dict[str, Any]] = {
    "lac": {"method": "lac"},
    "aps": {"method": "aps"},
    "raps": {"method": "raps", "k_reg": 2, "lambda_reg": 0.05},
    "aps_mondrian": {"method": "aps", "mondrian": True},
}
"""The prediction sets the report compares (non-randomised; RAPS with k_reg 2, λ_reg 0.05 for 8 classes).

Example:
    >>> sorted(SET_SETTINGS)
    ['aps', 'aps_mondrian', 'lac', 'raps']
"""


def decision_arrays(probs: Tensor, refs: References, *, segmentation: bool) -> dict[str, np.ndarray]:
    """The per-case arrays of one batch for the decisions (module docstring).

    Args:
        probs: ``(N, C, *spatial)`` (segmentation) or ``(N, C)`` probabilities.
        refs: the batch's references.
        segmentation: the task.

    Example:
        >>> probs = torch.softmax(torch.randn(2, 2, 8, 8), 1)
        >>> arrays = decision_arrays(probs, References(probs.argmax(1)), segmentation=True)
        >>> arrays["fnr_curve"].shape, float(arrays["fnr_curve"][:, :, 0].max())
        ((2, 1, 201), 0.0)
    """
    out: dict[str, np.ndarray] = {}
    if segmentation:
        truth = risk_reference(refs, probs.shape[1], "auto")
        curves = case_curves(probs, truth, loss="fnr", num_levels=BENCH_LEVELS)
        voxels = probs[0, 0].numel()
        out["fnr_curve"] = curves["loss"].float().cpu().numpy()
        out["mask_fraction"] = (curves["volume"] / voxels).float().cpu().numpy()
        confidences = segmentation_confidences(probs)
    else:
        out["probs"] = probs.float().cpu().numpy()
        out["label"] = refs.hard.cpu().numpy()
        confidences = classification_confidences(probs)
    out |= {f"conf_{name}": value.double().cpu().numpy() for name, value in confidences.items()}
    return out


def calibration_size(n: int, alpha: float) -> int | None:
    """Calibration cases per split of ``n``: half, or all but one when half is too few for CRC at ``alpha``.

    CRC needs ``B/(m + 1) ≤ α`` (``B = 1``), i.e. ``m ≥ 1/α − 1`` calibration cases; ``None`` when even ``n − 1``
    are too few.

    Example:
        >>> calibration_size(100, 0.1), calibration_size(11, 0.1), calibration_size(9, 0.1)
        (50, 10, None)
    """
    for m in (n // 2, n - 1):
        if m >= 1 and (m + 1) * alpha >= 1.0 - 1e-12:
            return m
    return None


def _split_indices(n: int, m: int, n_splits: int, seed: int, *, replace: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(calibration (S, m), test (S, n − m))`` indices of random splits (with replacement: test empty).

    Drawn with replacement, the pool itself is the population the calibration cases come from.
    """
    rng = default_rng(seed)
    if replace:
        return rng.integers(0, n, size=(n_splits, m)), np.zeros((n_splits, 0), dtype=np.int64)
    perms = np.argsort(rng.random((n_splits, n)), axis=1)
    return perms[:, :m], perms[:, m:]


def risk_control_splits(
    loss: np.ndarray,
    fraction: np.ndarray,
    *,
    alpha: float = ALPHA,
    delta: float = DELTA,
    n_splits: int = N_SPLITS,
    seed: int = 0,
    test_loss: np.ndarray | None = None,
    test_fraction: np.ndarray | None = None,
    ltt: bool = True,
) -> dict[str, Any] | None:
    """CRC and LTT over random calibration/test splits of one run's cases, per structure.

    CRC: the cases are halved at random ``n_splits`` times (all but one case calibrate when half is too few:
    :func:`calibration_size`); the threshold fitted on one part is applied to the other; reported: the threshold,
    the realized test FNR (its mean is what CRC bounds by α), the mask fraction.
    LTT: calibration sets of the same size drawn *with replacement* from the cases, so the cases are the
    population and the risk of the chosen threshold is known exactly (the mean over all cases); reported: the
    violation frequency P(risk > α) (LTT bounds it by δ), the threshold, the mask fraction.

    Args:
        loss: ``(n, K, G)`` per-case FNR curves.
        fraction: ``(n, K, G)`` mask fractions.
        alpha: the risk level.
        delta: LTT's tolerance.
        n_splits: random splits.
        seed: their seed.
        test_loss: the same cases under a shift: thresholds are calibrated on ``loss`` (clean) and tested on these
            (``None``: on ``loss`` itself).
        test_fraction: the mask fractions of ``test_loss``'s cases.
        ltt: also run LTT (``False``: ``"ltt"`` is an empty list; CRC alone is cheaper).

    Returns:
        ``None`` when the cases are too few for α (CRC needs ``1/α − 1`` calibration cases); else per structure lists
        under ``"crc"`` and ``"ltt"`` of dicts with ``threshold``/``risk``/``fraction`` as ``(mean, std)``, and
        ``violations`` (LTT).

    Example:
        >>> rng = default_rng(0)
        >>> loss = np.sort(rng.random((60, 1, 11)), axis=2) * np.linspace(0, 1, 11)
        >>> out = risk_control_splits(loss, 1 - loss, n_splits=50)
        >>> out["crc"][0]["risk"][0] <= 0.1 + 0.02
        True
    """
    n = loss.shape[0]
    m = calibration_size(n, alpha)
    if m is None:
        return None
    test_loss = loss if test_loss is None else test_loss
    test_fraction = fraction if test_fraction is None else test_fraction
    levels = threshold_levels(loss.shape[2]).numpy()
    cal, test = _split_indices(n, m, n_splits, seed, replace=False)
    crc = [_crc_structure(loss[:, k], test_loss[:, k], test_fraction[:, k], cal, test, alpha, levels)
           for k in range(loss.shape[1])]  # fmt: skip
    boot, _ = _split_indices(n, m, n_splits, seed + 1, replace=True)
    ltt_rows = [_ltt_structure(loss[:, k], test_loss[:, k], test_fraction[:, k], boot, alpha, delta, levels)
                for k in range(loss.shape[1]) if ltt]  # fmt: skip
    return {"crc": crc, "ltt": ltt_rows, "n_calibration": m, "n_splits": n_splits, "alpha": alpha, "delta": delta}


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return (float(values.mean()), float(values.std(ddof=1))) if values.size > 1 else (float(values.mean()), 0.0)


def _crc_structure(
    loss: np.ndarray, test_loss: np.ndarray, fraction: np.ndarray, cal: np.ndarray, test: np.ndarray,
    alpha: float, levels: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    m = cal.shape[1]
    risks = loss[cal].mean(1)  # (S, G)
    index = np.array([int(crc_index(torch.from_numpy(r[None]), m, alpha)[0]) for r in risks])
    rows = np.arange(len(index))
    realized = test_loss[test][rows, :, index].mean(1) if test.shape[1] else np.full(len(index), np.nan)
    sizes = fraction[test][rows, :, index].mean(1)
    return {"threshold": _mean_std(levels[index]), "risk": _mean_std(realized), "fraction": _mean_std(sizes),
            "risk_se": float(realized.std(ddof=1) / math.sqrt(len(realized)))}  # fmt: skip


def _ltt_structure(
    loss: np.ndarray, test_loss: np.ndarray, fraction: np.ndarray, boot: np.ndarray, alpha: float, delta: float,
    levels: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    m = boot.shape[1]
    population = test_loss.mean(0)  # (G,): the risk of every level on the pool (the population of the draws)
    index = []
    for r in loss[boot].mean(1):
        try:
            index.append(int(ltt_index(torch.from_numpy(r[None]), m, alpha, delta)[0]))
        except ValueError:  # not even the safest level is rejected: no mask is certified (counted, threshold 0)
            index.append(0)
    chosen = np.array(index)
    return {
        "threshold": _mean_std(levels[chosen]), "violations": float((population[chosen] > alpha).mean()),
        "risk": _mean_std(population[chosen]), "fraction": _mean_std(fraction.mean(0)[chosen]),
    }  # fmt: skip


def prediction_set_splits(
    probs: np.ndarray, labels: np.ndarray, *, alpha: float = ALPHA, n_splits: int = N_SPLITS, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Coverage and size of each set of :data:`SET_SETTINGS` over random calibration/test halves of one run.

    Returns:
        Per setting: ``coverage`` and ``size`` as ``(mean, std)`` over the splits, ``coverage_se`` (the Monte-Carlo
        error of the mean coverage), ``min_class_coverage``: the coverage of the worst-covered class, each class's
        coverage averaged over the splits first (the expected coverage of that class, which Mondrian sets keep
        ≥ 1 − α; the minimum of per-split values would be biased low by the noise of small classes).

    Example:
        >>> rng = default_rng(0)
        >>> p = rng.dirichlet(np.ones(4), size=200)
        >>> y = np.array([rng.choice(4, p=row) for row in p])
        >>> out = prediction_set_splits(p, y, n_splits=20)
        >>> abs(out["lac"]["coverage"][0] - 0.9) < 0.05
        True
    """
    cal, test = _split_indices(len(labels), len(labels) // 2, n_splits, seed, replace=False)
    p, y = torch.from_numpy(np.asarray(probs, dtype=np.float64)), torch.from_numpy(np.asarray(labels)).long()
    out = {}
    for name, settings in SET_SETTINGS.items():
        cover, size, per_class = [], [], []
        for c, t in zip(cal, test, strict=True):
            fitted = fit_prediction_sets(p[c], y[c], alpha=alpha, **settings)
            sets = fitted.predict(p[t])
            cover.append(coverage(sets, y[t]))
            size.append(float(set_sizes(sets).double().mean()))
            per_class.append(class_coverage(sets, y[t]).numpy())
        out[name] = {"coverage": _mean_std(np.array(cover)), "size": _mean_std(np.array(size)),
                     "coverage_se": float(np.std(cover, ddof=1) / math.sqrt(len(cover))),
                     "min_class_coverage": float(np.nanmin(np.nanmean(np.stack(per_class), axis=0)))}  # fmt: skip
    return out


def case_quality(arrays: Mapping[str, np.ndarray], *, segmentation: bool) -> np.ndarray:
    """Per-case quality: the mean foreground Dice (NaN-skipping; NaN without any), or top-1 correctness.

    Example:
        >>> case_quality({"dice": np.array([[0.5, 1.0], [np.nan, np.nan]])}, segmentation=True).tolist()
        [0.75, nan]
    """
    if not segmentation:
        return np.asarray(arrays["top1"], dtype=np.float64)
    dice = np.asarray(arrays["dice"], dtype=np.float64).reshape(len(arrays["dice"]), -1)
    valid = np.isfinite(dice)
    total = np.where(valid, dice, 0.0).sum(1)
    count = valid.sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def failure_rows(
    arrays: Mapping[str, np.ndarray], *, segmentation: bool, failure_below: float
) -> list[dict[str, float | str]]:
    """The failure-detection table of one evaluation: one row per confidence score (AURC, e-AURC, AUGRC, AUROC, ρ).

    Example:
        >>> rng = default_rng(0)
        >>> dice = rng.random((30, 1))
        >>> arrays = {"dice": dice, "conf_a": dice[:, 0], "conf_b": rng.random(30)}
        >>> rows = failure_rows(arrays, segmentation=True, failure_below=0.5)
        >>> [r["confidence"] for r in rows], rows[0]["e_aurc"] < rows[1]["e_aurc"]
        (['a', 'b'], True)
    """
    quality = case_quality(arrays, segmentation=segmentation)
    confidences = {k[5:]: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k.startswith("conf_")}
    return failure_detection_table(confidences, quality, failure_below=failure_below)


def mean_risk_coverage(runs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The risk–coverage curve averaged over runs of equal size: ``runs`` holds ``(confidence, loss)`` pairs.

    Example:
        >>> c, r = mean_risk_coverage([(np.array([0.9, 0.1]), np.array([0.0, 1.0]))])
        >>> c.tolist(), r.tolist()
        ([0.5, 1.0], [0.0, 0.5])
    """
    curves = [risk_coverage_curve(conf, loss) for conf, loss in runs]
    size = min(len(c) for c, _ in curves)
    cover = curves[0][0][:size]
    return cover, np.mean([r[:size] for _, r in curves], axis=0)
