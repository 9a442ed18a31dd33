"""Statistics of a benchmark grid: mean ± std over seeds, paired bootstrap against a baseline, ranks per metric.

A cell of the grid (one method on one suite) gives per-case values of a metric for every seed: ``S`` arrays of
``K_s`` test cases (an ``(S, K)`` array when every seed has the same number; the seed also draws the data and the
split, so each seed's test cases are its own). Two methods are compared *paired*: the same seeds and, within a seed,
the same cases. The paired bootstrap resamples both sources of variation — seeds with replacement, then the cases
of each seed with replacement (a nested two-way bootstrap), the same draws for both methods — and recomputes the
difference (the mean over seeds of each seed's mean) on every resample; the 95 % interval is its percentile
interval. A difference is called significant when the interval excludes 0.

Reference: Efron & Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall 1993 (percentile intervals);
paired resampling over test cases as in Dror et al., "The Hitchhiker's Guide to Testing Statistical Significance in
Natural Language Processing", ACL 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.random import Generator, default_rng

__all__ = ["PairedComparison", "mean_std", "paired_bootstrap", "paired_bootstrap_pooled", "rank_methods"]


def _grid(values: object, name: str) -> list[np.ndarray]:
    """``values`` as per-seed finite float64 case arrays (``(S, K)``, a list of ``(K_s, ...)``; ``(K,)``: one seed)."""
    if isinstance(values, np.ndarray | list | tuple) and len(values) and not np.isscalar(values[0]):
        seeds = [np.asarray(v, dtype=np.float64) for v in values]
    else:
        seeds = [np.asarray(values, dtype=np.float64)]
    if not seeds or any(v.ndim < 1 or len(v) < 1 for v in seeds):
        raise ValueError(
            f"`{name}` must be per-seed arrays of case values; got {np.asarray(values, dtype=object).shape}."
        )
    if not all(np.all(np.isfinite(v)) for v in seeds):
        raise ValueError(f"`{name}` holds NaN or infinite values (a failed run or an undefined metric).")
    return seeds


def _paired(a: list[np.ndarray], b: list[np.ndarray], n_resamples: int, confidence: float) -> None:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        shapes = [x.shape for x in a], [y.shape for y in b]
        raise ValueError(f"`method` and `baseline` must be paired: per-seed shapes {shapes[0]} and {shapes[1]} differ.")
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError(f"`n_resamples` must be an int >= 100; got {n_resamples!r}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")


def _draws(rng: Generator, sizes: list[int], n_resamples: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Seed multiplicities ``(R, S)`` and, per seed, case multiplicities ``(R, K_s)`` (draws with replacement)."""
    n_seeds = len(sizes)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_resamples)
    case_counts = [rng.multinomial(k, np.full(k, 1.0 / k), size=n_resamples).astype(np.float64) for k in sizes]
    return seed_counts, case_counts


def _interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


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
    if isinstance(values, np.ndarray | list | tuple) and len(values) and np.isscalar(values[0]):
        values = [[v] for v in values]  # one score per seed
    per_seed = np.array([seed.mean() for seed in _grid(values, "values")])
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

    Each resample draws ``S`` seed indices with replacement and, for each seed, ``K_s`` case indices with
    replacement, and averages ``method[s][k] − baseline[s][k]`` over the drawn cases of each drawn seed, then over
    the drawn seeds; the interval is the percentile interval of those means.

    Args:
        method: per-case values of the method: ``S`` arrays of ``K_s`` cases (``(S, K)``; ``(K,)`` for one seed).
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
    _paired(a, b, n_resamples, confidence)
    if any(x.ndim != 1 for x in a):
        raise ValueError("`method` and `baseline` must be (seeds, cases) values: one value per case.")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    seed_counts, case_counts = _draws(default_rng(seed), [len(d) for d in diffs], n_resamples)
    per_seed = np.stack([(c @ d) / len(d) for c, d in zip(case_counts, diffs, strict=True)], axis=1)  # (R, S)
    means = (seed_counts * per_seed).sum(axis=1) / len(diffs)
    low, high = _interval(means, confidence)
    return PairedComparison(float(np.mean([d.mean() for d in diffs])), low, high, confidence, n_resamples)


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

    ``method[s][k]`` holds additive statistics of case ``k`` at seed ``s`` (e.g. its calibration histogram); the
    statistic of a seed is ``statistic(Σ_k w_k · method[s][k])`` for case multiplicities ``w``, and a resample's
    value is the seed-multiplicity-weighted mean of ``statistic(method) − statistic(baseline)`` over seeds. Case and
    seed draws are shared by the two methods (paired) and nested as in :func:`paired_bootstrap`.

    Args:
        method: per-case statistics of the method: ``S`` arrays ``(K_s, *D)`` (or one ``(S, K, *D)`` array).
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
    a, b = _grid(method, "method"), _grid(baseline, "baseline")
    _paired(a, b, n_resamples, confidence)
    if any(x.ndim < 2 for x in a):
        raise ValueError("`method` and `baseline` must hold per-case statistics (S seeds of (K_s, *D) arrays).")
    seed_counts, case_counts = _draws(default_rng(seed), [len(x) for x in a], n_resamples)
    per_seed = []
    for c, x, y in zip(case_counts, a, b, strict=True):
        summed_x = np.tensordot(c, x, axes=(1, 0))  # (R, *D): the statistics of the resampled cases
        summed_y = np.tensordot(c, y, axes=(1, 0))
        per_seed.append(statistic(summed_x) - statistic(summed_y))
    means = (seed_counts * np.stack(per_seed, axis=1)).sum(axis=1) / len(a)
    point = float(np.mean([statistic(x.sum(axis=0)) - statistic(y.sum(axis=0)) for x, y in zip(a, b, strict=True)]))
    low, high = _interval(means, confidence)
    return PairedComparison(point, low, high, confidence, n_resamples)


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
