"""Downstream outcomes predicted from the masks, as the ultrasound paper judges its thresholds (arXiv 2508.15635).

The paper compares confidence thresholds τ of its training labels also by what the masks are used for: the S/F
oxygenation-ratio value, its change class and 30-day readmission, each predicted from the segmentation. On data
whose true label distribution p* is known, the same three kinds of case-level target are *made* here from the true
structure fractions, with noise of a known level, so that the ceiling is known.

* **Features** (:func:`structure_features`, recorded per test case by ``evaluate_split``): for every foreground class
  ``c`` and level ``t`` of :data:`AREA_THRESHOLDS`, the area (2D) or volume (3D) of the mask ``p_c ≥ t`` as a
  fraction of the image (``area_fraction``, ``(N, C − 1, T)``), and the soft fraction ``mean p_c``
  (``soft_fraction``). The same from p* (the ``oracle`` evaluation) are the true fractions.
* **Targets** (:func:`case_targets`), from the true expected structure fraction ``S = Σ_c mean p*_c`` and the true
  ambiguous rim ``R = Σ_c (A*_c(t_1) − A*_c(t_T))`` (the area between the lowest and highest level), each
  standardised over one seed's test cases (``z_S``, ``z_R``; mean 0, variance 1):

  - value (the S/F-ratio analogue): ``y = z_S + σ_v ε₁``; its analytic ceiling is ``R²* = 1 / (1 + σ_v²)``;
  - change class: ``Δ = z_R + σ_c ε₂`` cut at ``(−0.5, 0.5)`` into 0 decrease, 1 stable, 2 increase;
  - binary outcome (the readmission analogue): ``o ~ Bernoulli(sigmoid(β (z_S + z_R)))``.

  ``ε₁, ε₂`` (standard normal) and the Bernoulli draws come from ``default_rng([TargetSpec.seed, run seed])``: the
  same for every method at a seed (a seed's test cases are the same for every method).
* **Models** (:func:`cross_validated_predictions`): standardised features; ``RidgeCV`` for the value, logistic
  regression for the change class and the outcome; k-fold CV (shuffled, fixed by the seed: the same folds for every
  method and target); scored on the out-of-fold predictions: R², balanced accuracy, AUROC.
* **Summary** (:func:`downstream_outcomes`): per method the mean over seeds and a 95 % percentile interval of a
  nested bootstrap (seeds, then cases within a seed, as :mod:`softlabels.bench.statistics`) of the out-of-fold
  predictions (the models are not refitted per resample); the ceiling rows (the same CV on the p* features; the true
  functions without a model; the analytic ``R²*``); and ``ct_0.6 − ct_0.5`` paired on the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.random import SeedSequence, default_rng

from softlabels.bench.statistics import PairedComparison

__all__ = [
    "AREA_THRESHOLDS",
    "TARGETS",
    "CaseTargets",
    "DownstreamOutcomes",
    "Estimate",
    "TargetSpec",
    "case_targets",
    "cross_validated_predictions",
    "downstream_outcomes",
    "outcome_caption",
    "outcome_numbers",
    "outcome_rows",
    "outcome_sentence",
    "structure_features",
    "weighted_auroc",
    "weighted_balanced_accuracy",
    "weighted_r2",
]

AREA_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10))
"""The levels of the area features: 0.1, 0.2, …, 0.9.

Example:
    >>> AREA_THRESHOLDS[0], AREA_THRESHOLDS[-1], len(AREA_THRESHOLDS)
    (0.1, 0.9, 9)
"""

METRICS: tuple[tuple[str, str], ...] = (
    ("value", "value R²"),
    ("change", "change balanced acc."),
    ("outcome", "outcome AUROC"),
)
TAU_CELLS = ("ct_0.6", "ct_0.5")


def structure_features(probs: Any, thresholds: Sequence[float] = AREA_THRESHOLDS) -> dict[str, np.ndarray]:
    """Per case: the fraction of the image in the mask ``p_c ≥ t`` per foreground class and level, and ``mean p_c``.

    Args:
        probs: ``(N, C, *spatial)`` probabilities (NumPy or a CPU tensor), ``C ≥ 2``; class 0 is the background.
        thresholds: increasing levels in (0, 1).

    Returns:
        ``area_fraction`` ``(N, C − 1, T)`` and ``soft_fraction`` ``(N, C − 1)``, float64.

    Example:
        >>> p1 = np.array([[0.95, 0.55], [0.15, 0.0]])  # foreground probability of a 2×2 image
        >>> out = structure_features(np.stack([1 - p1, p1])[None], thresholds=(0.1, 0.5, 0.9))
        >>> out["area_fraction"].tolist(), out["soft_fraction"].round(4).tolist()
        ([[[0.75, 0.5, 0.25]]], [[0.4125]])
    """
    p = np.asarray(probs)
    if p.ndim < 3 or p.shape[1] < 2:
        raise ValueError(f"`probs` of structure_features must be (N, C >= 2, *spatial); got shape {p.shape}.")
    levels = np.asarray(thresholds, dtype=np.float64)
    if levels.ndim != 1 or not len(levels) or np.any(np.diff(levels) <= 0) or levels[0] <= 0 or levels[-1] >= 1:
        raise ValueError(f"`thresholds` of structure_features must increase within (0, 1); got {tuple(thresholds)}.")
    foreground = p[:, 1:].reshape(p.shape[0], p.shape[1] - 1, -1)
    area = np.stack([(foreground >= t).mean(axis=2) for t in levels], axis=2)
    return {"area_fraction": area, "soft_fraction": foreground.mean(axis=2, dtype=np.float64)}


@dataclass(frozen=True)
class TargetSpec:
    """The constants of the synthetic targets and the CV (module docstring: the formulas).

    Example:
        >>> round(TARGETS.r2_ceiling, 4)
        0.9174
    """

    value_noise: float = 0.3
    change_noise: float = 0.3
    change_cuts: tuple[float, float] = (-0.5, 0.5)
    outcome_slope: float = 1.0
    seed: int = 2508
    n_splits: int = 5

    @property
    def r2_ceiling(self) -> float:
        """Analytic R² of the best predictor of the value: ``Var z_S / (Var z_S + σ_v²)`` with ``Var z_S = 1``."""
        return 1.0 / (1.0 + self.value_noise**2)


TARGETS = TargetSpec()
"""The targets of the report (σ_v = σ_c = 0.3, cuts ±0.5, β = 1, seed 2508, 5 folds).

Example:
    >>> TARGETS.change_cuts
    (-0.5, 0.5)
"""


@dataclass(frozen=True)
class CaseTargets:
    """One seed's case-level targets and their noiseless parts (the ceiling without a model).

    Example:
        >>> t = case_targets(np.array([[0.1], [0.2], [0.3]]), np.array([[[0.2, 0.1]], [[0.3, 0.1]], [[0.5, 0.2]]]),
        ...     seed=0)
        >>> t.value.shape, sorted(set(t.change.tolist()) | {0, 1, 2}), t.risk.shape
        ((3,), [0, 1, 2], (3,))
    """

    value: np.ndarray
    change: np.ndarray
    outcome: np.ndarray
    value_mean: np.ndarray
    change_rule: np.ndarray
    risk: np.ndarray


def _standardised(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def case_targets(
    soft_fraction: np.ndarray, area_fraction: np.ndarray, *, seed: int, spec: TargetSpec = TARGETS
) -> CaseTargets:
    """The targets of one seed's test cases from their true fractions (the ``oracle`` features of p*).

    Args:
        soft_fraction: ``(K, C − 1)`` true ``mean p*_c`` per case.
        area_fraction: ``(K, C − 1, T)`` true area fractions per case (levels increasing).
        seed: the run seed (with ``spec.seed``, it fixes the noise).
        spec: the constants.

    Returns:
        A :class:`CaseTargets`.

    Example:
        >>> soft = np.linspace(0.05, 0.3, 40)[:, None]
        >>> area = np.stack([soft + 0.02, soft - 0.02], axis=-1)
        >>> quiet = TargetSpec(value_noise=0.0)
        >>> np.allclose(case_targets(soft, area, seed=1, spec=quiet).value, (soft[:, 0] - soft.mean()) / soft.std())
        True
    """
    soft, area = np.asarray(soft_fraction, np.float64), np.asarray(area_fraction, np.float64)
    if soft.ndim != 2 or area.ndim != 3 or area.shape[:2] != soft.shape:
        raise ValueError(
            f"case_targets needs soft (K, C-1) and area (K, C-1, T) fractions; got {soft.shape} and {area.shape}."
        )
    z_s = _standardised(soft.sum(1))
    z_r = _standardised((area[:, :, 0] - area[:, :, -1]).sum(1))
    rng = default_rng([spec.seed, seed])
    noise_value, noise_change, uniform = (
        rng.standard_normal(len(z_s)),
        rng.standard_normal(len(z_s)),
        rng.random(len(z_s)),
    )
    risk = 1.0 / (1.0 + np.exp(-spec.outcome_slope * (z_s + z_r)))
    return CaseTargets(
        value=z_s + spec.value_noise * noise_value,
        change=np.digitize(z_r + spec.change_noise * noise_change, spec.change_cuts),
        outcome=(uniform < risk).astype(np.int64),
        value_mean=z_s,
        change_rule=np.digitize(z_r, spec.change_cuts),
        risk=risk,
    )


def _classifier_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, proba: bool) -> np.ndarray:
    """Logistic regression on standardised features: labels, or P(class 1); a one-class fold predicts that class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y_train)
    if len(classes) < 2:
        return np.full(len(x_test), float(classes[0]) if proba else classes[0])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=1000)).fit(
        x_train, y_train
    )
    return model.predict_proba(x_test)[:, 1] if proba else model.predict(x_test)


def cross_validated_predictions(
    features: np.ndarray, truth: CaseTargets, *, seed: int, spec: TargetSpec = TARGETS
) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of the three targets from per-case features (k-fold CV, folds fixed by the seed).

    ``k = min(spec.n_splits, K // 2)``; fewer than 2 folds (under 4 cases) gives NaN predictions.

    Args:
        features: ``(K, ...)`` per-case features (flattened per case), e.g. ``area_fraction``.
        truth: the cases' targets.
        seed: the run seed (with ``spec.seed``, it fixes the folds).
        spec: the constants.

    Returns:
        ``value`` (ridge predictions), ``change`` (predicted classes), ``outcome`` (predicted P(o = 1)).

    Example:
        >>> x = np.linspace(-2, 2, 30)[:, None]
        >>> t = CaseTargets(3 * x[:, 0], np.digitize(x[:, 0], (-0.5, 0.5)), (x[:, 0] > 0).astype(int),
        ...     x[:, 0], x[:, 0], x[:, 0])
        >>> out = cross_validated_predictions(x, t, seed=0)
        >>> bool(np.allclose(out["value"], 3 * x[:, 0], atol=0.05)), bool((out["change"] == t.change).mean() > 0.8)
        (True, True)
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64).reshape(len(truth.value), -1)
    n = len(x)
    out = {"value": np.full(n, np.nan), "change": np.full(n, -1), "outcome": np.full(n, np.nan)}
    k = min(spec.n_splits, n // 2)
    if k < 2:
        return out
    state = int(SeedSequence([spec.seed, seed]).generate_state(1)[0])
    for train, test in KFold(n_splits=k, shuffle=True, random_state=state).split(x):
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
        out["value"][test] = ridge.fit(x[train], truth.value[train]).predict(x[test])
        out["change"][test] = _classifier_predict(x[train], truth.change[train], x[test], proba=False)
        out["outcome"][test] = _classifier_predict(x[train], truth.outcome[train], x[test], proba=True)
    return out


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    w = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)
    return w[None] if w.ndim == 1 else w


def weighted_r2(y: np.ndarray, prediction: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """R² ``1 − Σ w (y − ŷ)² / Σ w (y − ȳ_w)²`` for each row of case weights ``(R, K)`` (NaN: constant ``y``).

    Example:
        >>> y = np.array([1.0, 2.0, 3.0, 4.0])
        >>> weighted_r2(y, y).tolist(), weighted_r2(y, np.full(4, 2.5)).tolist()
        ([1.0], [0.0])
    """
    y, prediction = np.asarray(y, np.float64), np.asarray(prediction, np.float64)
    w = _weights(weights, len(y))
    total = w.sum(1)
    mean = (w @ y) / total
    ss_tot = w @ (y * y) - total * mean**2
    ss_res = w @ (y - prediction) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 1e-12 * total, 1.0 - ss_res / ss_tot, np.nan)


def weighted_balanced_accuracy(y: np.ndarray, prediction: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean recall over the classes present in ``y`` (weighted), per row of case weights ``(R, K)``.

    Example:
        >>> weighted_balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])).round(4).tolist()
        [0.8333]
    """
    y, prediction = np.asarray(y), np.asarray(prediction)
    w = _weights(weights, len(y))
    classes = np.unique(y)
    support = w @ (y[:, None] == classes).astype(np.float64)
    hits = w @ ((y[:, None] == classes) & (prediction[:, None] == classes)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
    present = np.isfinite(recall)
    return np.where(present.any(1), np.where(present, recall, 0.0).sum(1) / np.maximum(present.sum(1), 1), np.nan)


def weighted_auroc(y: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Area under the ROC curve (ties count ½), per row of case weights ``(R, K)``; NaN without both classes.

    Example:
        >>> weighted_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])).tolist()
        [0.75]
    """
    y, score = np.asarray(y).astype(bool), np.asarray(score, np.float64)
    w = _weights(weights, len(y))
    _, group = np.unique(score, return_inverse=True)
    onehot = np.zeros((len(y), int(group.max()) + 1 if len(y) else 0))
    onehot[np.arange(len(y)), group] = 1.0
    pos, neg = (w * y) @ onehot, (w * ~y) @ onehot  # (R, groups in increasing score)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(1) / pairs, np.nan)


_SCORERS: dict[str, Callable[..., np.ndarray]] = {
    "value": weighted_r2,
    "change": weighted_balanced_accuracy,
    "outcome": weighted_auroc,
}


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its 95 % bootstrap interval.

    Example:
        >>> Estimate(0.7, 0.6, 0.8).text()
        '0.700 [0.600, 0.800]'
    """

    mean: float
    low: float
    high: float

    def text(self) -> str:
        """``mean [low, high]`` with 3 decimals (``–`` if undefined)."""
        return "–" if not math.isfinite(self.mean) else f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass
class DownstreamOutcomes:
    """The downstream section: per method (and the ceilings) an :class:`Estimate` per target; τ 0.6 vs 0.5.

    Example:
        >>> DownstreamOutcomes({}, {}, {}, 0.8, None, [], [], 5).analytic_r2
        0.8
    """

    methods: dict[str, dict[str, Estimate]]
    ceiling: dict[str, Estimate]
    truth: dict[str, Estimate]
    analytic_r2: float
    tau: dict[str, PairedComparison] | None
    seeds: list[int]
    n_cases: list[int]
    n_splits: int
    evaluation: str = "raw"
    extra: dict[str, dict[str, dict[str, Estimate]]] = field(default_factory=dict)
    spec: TargetSpec = TARGETS


def _over_seeds(values: np.ndarray, seed_counts: np.ndarray) -> np.ndarray:
    """``(R,)`` seed-multiplicity-weighted means of ``(R, S)`` per-seed values over the finite ones."""
    finite = np.isfinite(values)
    weight = np.where(finite, seed_counts, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight.sum(1) > 0, (np.where(finite, values, 0.0) * weight).sum(1) / weight.sum(1), np.nan)


def _interval(values: np.ndarray) -> tuple[float, float]:
    if not np.isfinite(values).any():
        return math.nan, math.nan
    low, high = np.nanquantile(values, [0.025, 0.975])
    return float(low), float(high)


class _Scorer:
    """Scores rows (per-seed predictions) on shared nested-bootstrap draws."""

    def __init__(self, targets: list[CaseTargets], n_resamples: int) -> None:
        rng = default_rng(0)
        s, sizes = len(targets), [len(t.value) for t in targets]
        self.targets = targets
        self.seed_counts = rng.multinomial(s, np.full(s, 1.0 / s), size=n_resamples).astype(np.float64)
        self.case_counts = [rng.multinomial(k, np.full(k, 1.0 / k), size=n_resamples).astype(np.float64) for k in sizes]
        self.resamples: dict[tuple[str, str], np.ndarray] = {}

    def row(self, name: str, predictions: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Estimate]:
        """Estimates of one row; its resampled means are kept for :meth:`paired`."""
        row = {}
        for key, _ in METRICS:
            score = _SCORERS[key]
            pairs = [(getattr(t, key), p[key]) for t, p in zip(self.targets, predictions, strict=True)]
            points = np.array([[score(y, p)[0] for y, p in pairs]])  # (1, S): every case once
            per_seed = np.stack([score(y, p, w) for (y, p), w in zip(pairs, self.case_counts, strict=True)], axis=1)
            self.resamples[(name, key)] = means = _over_seeds(per_seed, self.seed_counts)
            low, high = _interval(means)
            row[key] = Estimate(float(_over_seeds(points, np.ones_like(points))[0]), low, high)
        return row

    def paired(self, a: str, b: str, rows: Mapping[str, Mapping[str, Estimate]]) -> dict[str, PairedComparison]:
        """``a − b`` per target, on the same draws."""
        out = {}
        for key, _ in METRICS:
            diff = self.resamples[(a, key)] - self.resamples[(b, key)]
            low, high = _interval(diff)
            out[key] = PairedComparison(rows[a][key].mean - rows[b][key].mean, low, high, 0.95, len(diff))
        return out


def _has(runs: Sequence[Mapping[str, Mapping[str, np.ndarray]]], evaluation: str) -> bool:
    keys = ("area_fraction", "soft_fraction")
    return bool(runs) and all(all(k in run.get(evaluation, {}) for k in keys) for run in runs)


def downstream_outcomes(
    runs: Mapping[str, Sequence[Mapping[str, Mapping[str, np.ndarray]]]],
    seeds: Sequence[int],
    *,
    evaluations: Sequence[str] = ("raw",),
    n_resamples: int = 1000,
    spec: TargetSpec = TARGETS,
) -> DownstreamOutcomes | None:
    """The downstream section of a suite from its runs' per-case arrays; ``None`` when the data has no p*.

    Args:
        runs: per cell label, per seed (in ``seeds`` order) the run's arrays ``{evaluation: {key: array}}``, with
            ``area_fraction`` and ``soft_fraction`` in the method's evaluations and in ``oracle`` (p*). A cell whose
            arrays lack them, or whose case counts differ from the oracle's, is left out.
        seeds: the run seeds.
        evaluations: the first gives :attr:`DownstreamOutcomes.methods`, the others ``extra`` (e.g. ``"ts"``).
        n_resamples: bootstrap resamples.
        spec: the targets' constants.

    Example:
        >>> rng = default_rng(0)
        >>> area = np.sort(rng.uniform(0, 0.3, (30, 1, 9)), axis=2)[:, :, ::-1]
        >>> arrays = {"oracle": {"area_fraction": area, "soft_fraction": area.mean(2)}}
        >>> arrays["raw"] = arrays["oracle"]
        >>> out = downstream_outcomes({"hard": [arrays]}, [0], n_resamples=200)
        >>> out.methods["hard"]["value"] == out.ceiling["value"], round(out.analytic_r2, 3)
        (True, 0.917)
    """
    reference = next((r for r in runs.values() if _has(r, "oracle")), None)
    if reference is None or len(reference) != len(seeds):
        return None
    targets = [
        case_targets(run["oracle"]["soft_fraction"], run["oracle"]["area_fraction"], seed=s, spec=spec)
        for run, s in zip(reference, seeds, strict=True)
    ]
    sizes = [len(t.value) for t in targets]
    scorer = _Scorer(targets, n_resamples)

    def row(name: str, arrays: Sequence[Mapping[str, Mapping[str, np.ndarray]]], evaluation: str) -> Any:
        if not _has(arrays, evaluation) or [len(a[evaluation]["area_fraction"]) for a in arrays] != sizes:
            return None
        predictions = [
            cross_validated_predictions(a[evaluation]["area_fraction"], t, seed=s, spec=spec)
            for a, t, s in zip(arrays, targets, seeds, strict=True)
        ]
        return scorer.row(name, predictions)

    truth = scorer.row("truth", [{"value": t.value_mean, "change": t.change_rule, "outcome": t.risk} for t in targets])
    ceiling = row("oracle", reference, "oracle")
    tables = {}
    for evaluation in evaluations:
        rows = {label: row(f"{evaluation}/{label}", arrays, evaluation) for label, arrays in runs.items()}
        tables[evaluation] = {label: r for label, r in rows.items() if r is not None}
    first = evaluations[0]
    methods = tables.pop(first)
    tau = None
    if all(label in methods for label in TAU_CELLS):
        named = {f"{first}/{label}": r for label, r in methods.items()}
        tau = scorer.paired(f"{first}/{TAU_CELLS[0]}", f"{first}/{TAU_CELLS[1]}", named)
    return DownstreamOutcomes(
        methods, ceiling, truth, spec.r2_ceiling, tau, list(seeds), sizes, min(spec.n_splits, min(sizes) // 2),
        first, tables, spec,
    )  # fmt: skip


def outcome_rows(outcomes: DownstreamOutcomes) -> tuple[list[str], list[list[str]]]:
    """The report table: per method, then the ceilings, the three targets' mean over seeds [95 % interval].

    Example:
        >>> e = Estimate(0.5, 0.4, 0.6)
        >>> header, rows = outcome_rows(DownstreamOutcomes({"hard": dict.fromkeys(("value", "change", "outcome"), e)},
        ...     dict.fromkeys(("value", "change", "outcome"), e), dict.fromkeys(("value", "change", "outcome"), e),
        ...     0.8, None, [0], [40], 5))
        >>> header[1], rows[0][:2], rows[-1][:2]
        ('value R² ↑', ['`hard`', '0.500 [0.400, 0.600]'], ['analytic ceiling', 'R²* = 0.800'])
    """
    header = ["method"] + [f"{name} ↑" for _, name in METRICS]
    rows = [[f"`{label}`", *(r[key].text() for key, _ in METRICS)] for label, r in outcomes.methods.items()]
    rows.append(["ceiling: the same CV on the p* features", *(outcomes.ceiling[k].text() for k, _ in METRICS)])
    rows.append(["ceiling: the true functions, no model", *(outcomes.truth[k].text() for k, _ in METRICS)])
    rows.append(["analytic ceiling", f"R²* = {outcomes.analytic_r2:.3f}", "–", "–"])
    return header, rows


def outcome_caption(outcomes: DownstreamOutcomes) -> str:
    """One paragraph saying what the table measures (targets, features, CV, interval, chance levels).

    Example:
        >>> "AUROC 0.5" in outcome_caption(DownstreamOutcomes({}, {}, {}, 0.8, None, [0, 1], [40, 40], 5))
        True
    """
    s = outcomes.spec
    return (
        f"Synthetic case-level targets made from the true structure fractions of p* (expected fraction S, ambiguous "
        f"rim R, standardised per seed): value y = z_S + {s.value_noise:g}·ε (the S/F-ratio analogue); change class "
        f"of z_R + {s.change_noise:g}·ε cut at {s.change_cuts[0]:g}/{s.change_cuts[1]:g} (decrease / stable / "
        f"increase); outcome ~ Bernoulli(sigmoid({s.outcome_slope:g}·(z_S + z_R))) (the readmission analogue). "
        f"Features: the areas of the {outcomes.evaluation} test maps' masks p_c ≥ t at t = "
        f"{AREA_THRESHOLDS[0]:g}…{AREA_THRESHOLDS[-1]:g} ({len(AREA_THRESHOLDS)} levels, fractions of the image). "
        f"Models: standardised features, RidgeCV / logistic regression, {outcomes.n_splits}-fold CV (the same folds "
        f"for every method), scored out of fold; {sum(outcomes.n_cases)} cases over seeds {outcomes.seeds}. Mean over "
        "seeds [95 % nested bootstrap over seeds, then cases]. Chance: R² 0, balanced accuracy 1/3, AUROC 0.5."
    )


def outcome_sentence(outcomes: DownstreamOutcomes) -> str:
    """Whether "τ = 0.6 beats 0.5 downstream" holds: ``ct_0.6 − ct_0.5`` per target with its paired interval.

    It *holds* when ``ct_0.6`` is significantly better on at least one target and worse on none (*reversed*: the
    opposite; *mixed*: both); *not tested* without both cells.

    Example:
        >>> c = PairedComparison(0.05, 0.01, 0.09, 0.95, 1000)
        >>> out = DownstreamOutcomes({}, {}, {}, 0.8, dict.fromkeys(("value", "change", "outcome"), c), [0], [40], 5)
        >>> "**holds**" in outcome_sentence(out)
        True
    """
    if outcomes.tau is None:
        return (
            f"“τ = 0.6 beats 0.5 downstream” is not tested here (the suite has no `{'` and `'.join(TAU_CELLS)}` cells)."
        )
    parts, better, worse = [], 0, 0
    for key, name in METRICS:
        c = outcomes.tau[key]
        better, worse = better + (c.low > 0), worse + (c.high < 0)
        parts.append(f"Δ {name} = {c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}]")
    verdict = {(True, False): "holds", (False, True): "is reversed", (True, True): "is mixed"}.get(
        (better > 0, worse > 0), "does not hold (no significant difference)"
    )
    return (
        f"Downstream (synthetic outcomes from the true structure fractions; {outcomes.n_splits}-fold CV on the mask "
        f"areas): “τ = 0.6 beats 0.5 downstream” **{verdict}** here — `ct_0.6` − `ct_0.5`: {'; '.join(parts)} "
        "(95 % paired bootstrap over seeds × cases)."
    )


def outcome_numbers(outcomes: DownstreamOutcomes) -> dict[str, Any]:
    """The section as plain JSON-able numbers (``report.json``).

    Example:
        >>> e = Estimate(0.5, 0.4, 0.6)
        >>> out = DownstreamOutcomes({"hard": {"value": e}}, {"value": e}, {"value": e}, 0.8, None, [0], [40], 5)
        >>> outcome_numbers(out)["methods"]["hard"]["value"]
        {'mean': 0.5, 'low': 0.4, 'high': 0.6}
    """

    def table(rows: Mapping[str, Mapping[str, Estimate]]) -> dict[str, dict[str, dict[str, float]]]:
        return {label: {k: vars(e) for k, e in r.items()} for label, r in rows.items()}

    return {
        "evaluation": outcomes.evaluation, "thresholds": list(AREA_THRESHOLDS), "targets": vars(outcomes.spec),
        "seeds": outcomes.seeds, "n_cases": outcomes.n_cases, "n_splits": outcomes.n_splits,
        "analytic_r2": outcomes.analytic_r2, "methods": table(outcomes.methods),
        "ceiling_cv_on_p_star": {k: vars(e) for k, e in outcomes.ceiling.items()},
        "ceiling_true_functions": {k: vars(e) for k, e in outcomes.truth.items()},
        "tau_0.6_minus_0.5": None if outcomes.tau is None else {k: vars(c) for k, c in outcomes.tau.items()},
        "verdict": outcome_sentence(outcomes), "other_evaluations": {ev: table(r) for ev, r in outcomes.extra.items()},
    }  # fmt: skip
