"""Statistics of a benchmark grid: mean ± std over seeds, paired bootstrap against a baseline, ranks per metric.

A cell of the grid (one method on one suite) gives a per-case value of a metric for every seed: an array
``(S, K)`` of ``S`` seeds by ``K`` test cases. Two methods are compared *paired*: the same seeds (same data order and
initialisation) and the same cases. The paired bootstrap resamples both sources of variation — seeds and cases, each
with replacement, independently (a two-way bootstrap) — and recomputes the mean difference on every resample; the
95 % interval is its percentile interval. A difference is called significant when the interval excludes 0.

Reference: Efron & Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall 1993 (percentile intervals);
paired resampling over test cases as in Dror et al., "The Hitchhiker's Guide to Testing Statistical Significance in
Natural Language Processing", ACL 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.random import default_rng

__all__ = ["PairedComparison", "mean_std", "paired_bootstrap", "paired_bootstrap_pooled", "rank_methods"]


def _grid(values: object, name: str) -> np.ndarray:
    """``values`` as a finite float64 ``(seeds, cases)`` array (``(K,)`` is one seed)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"`{name}` must be (seeds, cases) values; got shape {np.asarray(values, dtype=object).shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` holds NaN or infinite values (a failed run or an undefined metric).")
    return array


def mean_std(values: object) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) over seeds of per-seed scores.

    Args:
        values: ``(S,)`` one score per seed, or ``(S, K)`` per-case values (averaged over cases first).

    Returns:
        ``(mean, std)`` over seeds.

    Example:
        >>> mean_std([0.80, 0.82, 0.84])
        (0.82, 0.019999999999999962)
    """
    array = np.asarray(values, dtype=np.float64)
    per_seed = _grid(array[:, None] if array.ndim == 1 else array, "values").mean(axis=1)
    std = float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0
    return float(per_seed.mean()), std


@dataclass(frozen=True)
class PairedComparison:
    """A method against the baseline: ``difference = mean(method − baseline)`` with its bootstrap interval.

    Example:
        >>> PairedComparison(0.02, 0.01, 0.03, 0.95, 2000).significant
        True
    """

    difference: float
    low: float
    high: float
    confidence: float
    n_resamples: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0.0 or self.high < 0.0


def paired_bootstrap(
    method: object,
    baseline: object,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Two-way paired bootstrap over seeds and cases of the mean difference ``method − baseline``.

    Each resample draws ``S`` seed indices and ``K`` case indices with replacement and averages
    ``method[s, k] − baseline[s, k]`` over the drawn grid; the interval is the percentile interval of those means.

    Args:
        method: ``(S, K)`` per-case values of the method (``S`` seeds, ``K`` cases; ``(K,)`` for one seed).
        baseline: the same for the baseline, paired entry by entry.
        n_resamples: bootstrap resamples (≥ 100).
        confidence: interval level in (0, 1).
        seed: seed of the resampling (the result is deterministic).

    Returns:
        A :class:`PairedComparison`.

    Raises:
        ValueError: shapes differ, non-finite values, or bad ``n_resamples`` / ``confidence``.

    Example:
        >>> result = paired_bootstrap([[0.9, 0.8, 0.7]], [[0.8, 0.7, 0.6]])
        >>> round(result.difference, 6), round(result.low, 6), round(result.high, 6), result.significant
        (0.1, 0.1, 0.1, True)
    """
    a, b = _grid(method, "method"), _grid(baseline, "baseline")
    if a.shape != b.shape:
        raise ValueError(f"`method` and `baseline` must be paired: shapes {a.shape} and {b.shape} differ.")
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError(f"`n_resamples` must be an int >= 100; got {n_resamples!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    diff = a - b
    n_seeds, n_cases = diff.shape
    rng = default_rng(seed)
    # drawing with replacement = multiplicities: the mean over the drawn grid is w_seeds · diff · w_cases / (S·K)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_resamples)
    case_counts = rng.multinomial(n_cases, np.full(n_cases, 1.0 / n_cases), size=n_resamples)
    means = ((seed_counts @ diff) * case_counts).sum(axis=1) / (n_seeds * n_cases)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedComparison(float(diff.mean()), float(low), float(high), confidence, n_resamples)


def paired_bootstrap_pooled(
    method: object,
    baseline: object,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Two-way paired bootstrap of a statistic of *pooled* per-case sufficient statistics (e.g. a dataset ECE).

    ``method[s, k]`` holds additive statistics of case ``k`` at seed ``s`` (e.g. its calibration histogram); the
    statistic of a seed is ``statistic(Σ_k w_k · method[s, k])`` for case multiplicities ``w``, and a resample's
    value is the seed-multiplicity-weighted mean of ``statistic(method) − statistic(baseline)`` over seeds. Case and
    seed draws are shared by the two methods (paired), as in :func:`paired_bootstrap`.

    Args:
        method: ``(S, K, *D)`` per-case statistics of the method.
        baseline: the same for the baseline.
        statistic: maps summed statistics ``(..., *D)`` to values ``(...)`` (vectorised over leading axes).
        n_resamples: bootstrap resamples (≥ 100).
        confidence: interval level in (0, 1).
        seed: seed of the resampling.

    Example:
        >>> counts = np.ones((2, 5, 1))  # 2 seeds, 5 cases: the statistic of a sum is its value
        >>> r = paired_bootstrap_pooled(counts * 2.0, counts, lambda x: x[..., 0] / 5)
        >>> round(r.difference, 6), r.significant
        (1.0, True)
    """
    a, b = np.asarray(method, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"`method` and `baseline` must be paired (S, K, ...) arrays; got {a.shape} and {b.shape}.")
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        raise ValueError("per-case statistics hold NaN or infinite values.")
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError(f"`n_resamples` must be an int >= 100; got {n_resamples!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    n_seeds, n_cases = a.shape[:2]
    rng = default_rng(seed)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_resamples)
    case_counts = rng.multinomial(n_cases, np.full(n_cases, 1.0 / n_cases), size=n_resamples).astype(np.float64)
    flat_a, flat_b = a.reshape(n_seeds, n_cases, -1), b.reshape(n_seeds, n_cases, -1)
    summed_a = np.einsum("rk,skd->rsd", case_counts, flat_a).reshape(n_resamples, n_seeds, *a.shape[2:])
    summed_b = np.einsum("rk,skd->rsd", case_counts, flat_b).reshape(n_resamples, n_seeds, *a.shape[2:])
    per_seed = statistic(summed_a) - statistic(summed_b)  # (R, S)
    means = (seed_counts * per_seed).sum(axis=1) / n_seeds
    point = float(np.mean(statistic(a.sum(axis=1)) - statistic(b.sum(axis=1))))
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(means, [tail, 1.0 - tail])
    return PairedComparison(point, float(low), float(high), confidence, n_resamples)


def rank_methods(scores: Mapping[str, float], *, higher_is_better: bool) -> dict[str, float]:
    """Rank 1 = best; ties share the mean of their ranks (as ``scipy.stats.rankdata(method="average")``).

    Example:
        >>> rank_methods({"hard": 0.08, "ls": 0.05, "svls": 0.05}, higher_is_better=False)
        {'hard': 3.0, 'ls': 1.5, 'svls': 1.5}
    """
    values = {name: float(v) for name, v in scores.items()}
    bad = sorted(name for name, v in values.items() if not np.isfinite(v))
    if bad:
        raise ValueError(f"scores of {bad} are NaN or infinite.")
    ordered = sorted(values, key=lambda n: -values[n] if higher_is_better else values[n])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and values[ordered[j + 1]] == values[ordered[i]]:
            j += 1
        for name in ordered[i : j + 1]:
            ranks[name] = (i + j) / 2.0 + 1.0
        i = j + 1
    return {name: ranks[name] for name in values}
