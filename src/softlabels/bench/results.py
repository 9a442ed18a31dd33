"""Reading a benchmark's finished runs and computing what the report shows: tables, comparisons, ranks, curves.

Everything is computed from the files of the runs (``result.json`` and ``cases.npz``), never typed: dataset values
per seed come from the per-case arrays (pooled ECEs from the summed histograms, means of per-case values for the
rest), mean ± std over seeds, and the paired two-way bootstrap against the suite's baseline
(:mod:`softlabels.bench.statistics`) on the same arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from softlabels.bench.benchmark_run import load_result, run_folder
from softlabels.bench.statistics import PairedComparison, mean_std, paired_bootstrap, paired_bootstrap_pooled
from softlabels.bench.suites import Suite, plan_runs
from softlabels.evaluation.evaluator import CURVE_THRESHOLDS, HISTOGRAMS, case_values, ece_from_histogram

__all__ = [
    "METRICS",
    "CellRuns",
    "ReportedMetric",
    "compare_to_baseline",
    "load_suite",
    "metric_table",
    "reliability_data",
]


@dataclass(frozen=True)
class ReportedMetric:
    """A report column: key, header, whether higher is better.

    Example:
        >>> METRICS["segmentation"][0]
        ReportedMetric(key='dice', header='Dice', higher_is_better=True)
    """

    key: str
    header: str
    higher_is_better: bool


METRICS: dict[str, tuple[ReportedMetric, ...]] = {
    "segmentation": (
        ReportedMetric("dice", "Dice", True), ReportedMetric("hd95", "HD95", False),
        ReportedMetric("ece", "ECE", False), ReportedMetric("ece_classwise", "cw-ECE", False),
        ReportedMetric("ece_boundary", "band ECE", False), ReportedMetric("brier", "Brier", False),
        ReportedMetric("nll", "NLL", False), ReportedMetric("thresholded_dice", "QUBIQ Dice", True),
        ReportedMetric("ged", "GED", False),
    ),
    "classification": (
        ReportedMetric("top1", "Top-1", True), ReportedMetric("top5", "Top-5", True),
        ReportedMetric("ece", "ECE", False), ReportedMetric("ece_classwise", "cw-ECE", False),
        ReportedMetric("brier", "Brier", False), ReportedMetric("nll", "NLL", False),
        ReportedMetric("compactness", "compactness", False),
    ),
}  # fmt: skip
"""The columns of the report's tables per task.

Example:
    >>> [m.key for m in METRICS["classification"]][:2]
    ['top1', 'top5']
"""


@dataclass
class CellRuns:
    """The finished runs of one cell: results (one per seed, seed order) and their per-case arrays.

    Example:
        >>> CellRuns("hard", [], [], []).seeds
        []
    """

    label: str
    seeds: list[int]
    results: list[dict[str, Any]]
    arrays: list[dict[str, dict[str, np.ndarray]]]

    def values(self, evaluation: str, key: str) -> list[float]:
        """The dataset value of ``key`` per seed (NaN where missing)."""
        out = []
        for result in self.results:
            value = result["evaluations"].get(evaluation, {}).get(key)
            out.append(math.nan if value is None else float(value))
        return out


def _load_arrays(path: Path) -> dict[str, dict[str, np.ndarray]]:
    try:
        with np.load(path) as data:
            out: dict[str, dict[str, np.ndarray]] = {}
            for name in data.files:
                group, key = name.split("/", 1)
                out.setdefault(group, {})[key] = data[name]
    except (OSError, ValueError) as err:
        raise ValueError(
            f"per-case arrays {str(path)!r} are unreadable ({err}); delete the run folder to re-run it."
        ) from err
    return out


def load_suite(suite: Suite, root: str | Path) -> dict[str, CellRuns]:
    """The finished runs of every cell of ``suite`` in ``root``, by label (cells in suite order).

    Raises:
        ValueError: a run of the suite is not finished (names the missing runs).

    Example:
        >>> from softlabels.bench.suites import get_benchmark
        >>> load_suite(get_benchmark("quick")[0], "/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ... runs of suite 'synthetic_segmentation' are not finished ...
    """
    cells = {c.label: CellRuns(c.label, [], [], []) for c in suite.cells}
    missing = []
    for spec in plan_runs([suite]):
        result = load_result(root, spec)
        if result is None:
            missing.append(spec.run_id)
            continue
        cell = cells[spec.label]
        cell.seeds.append(spec.seed)
        cell.results.append(result)
        cell.arrays.append(_load_arrays(run_folder(root, spec) / "cases.npz"))
    if missing:
        raise ValueError(
            f"{len(missing)} runs of suite {suite.name!r} are not finished (run `softlabels bench` again): "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return cells


def metric_table(
    cells: Mapping[str, CellRuns], evaluation: str, metrics: Sequence[ReportedMetric]
) -> dict[str, dict[str, tuple[float, float]]]:
    """``{label: {metric: (mean, std over seeds)}}`` of one evaluation (``raw``, ``ts`` or ``oracle``).

    Example:
        >>> cell = CellRuns("hard", [0, 1], [{"evaluations": {"raw": {"ece": 0.1}}},
        ...     {"evaluations": {"raw": {"ece": 0.3}}}], [])
        >>> metric_table({"hard": cell}, "raw", [ReportedMetric("ece", "ECE", False)])["hard"]["ece"]
        (0.2, 0.1414213562373095)
    """
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for label, cell in cells.items():
        row = {}
        for metric in metrics:
            values = [v for v in cell.values(evaluation, metric.key) if math.isfinite(v)]
            row[metric.key] = mean_std(values) if values else (math.nan, math.nan)
        table[label] = row
    return table


def _case_grid(cell: CellRuns, evaluation: str, key: str) -> list[np.ndarray] | None:
    """Per-seed case arrays of ``key`` (histograms as stored, case metrics as one value per case)."""
    if not cell.arrays or not all(key in arrays.get(evaluation, {}) for arrays in cell.arrays):
        return None
    if key in HISTOGRAMS.values():
        return [np.asarray(arrays[evaluation][key], dtype=np.float64) for arrays in cell.arrays]
    return [case_values(arrays[evaluation], key) for arrays in cell.arrays]


def compare_to_baseline(
    cells: Mapping[str, CellRuns], baseline: str, evaluation: str, metric: ReportedMetric, *, n_resamples: int = 1000
) -> dict[str, PairedComparison]:
    """Paired nested bootstrap (seeds, then cases within a seed) of every cell against ``baseline`` for one metric.

    Pooled ECEs are resampled through their per-case histograms; per-case metrics through their values (cases that
    are NaN in either method, e.g. HD95 of an empty mask, are left out of that comparison).

    Example:
        >>> arrays = {"raw": {"nll": np.array([0.5, 0.4, 0.6])}}
        >>> a = CellRuns("a", [0], [{}], [arrays])
        >>> compare_to_baseline({"a": a, "b": a}, "a", "raw", ReportedMetric("nll", "NLL", False))["b"].significant
        False
    """
    if baseline not in cells:
        raise ValueError(f"baseline {baseline!r} is not a cell of the suite; cells: {sorted(cells)}.")
    key = HISTOGRAMS.get(metric.key, metric.key)
    base = _case_grid(cells[baseline], evaluation, key)
    out: dict[str, PairedComparison] = {}
    if base is None:
        return out
    for label, cell in cells.items():
        grid = _case_grid(cell, evaluation, key)
        if label == baseline or grid is None or [g.shape for g in grid] != [b.shape for b in base]:
            continue
        if metric.key in HISTOGRAMS:
            out[label] = paired_bootstrap_pooled(grid, base, ece_from_histogram, n_resamples=n_resamples)
            continue
        keep = [np.isfinite(g) & np.isfinite(b) for g, b in zip(grid, base, strict=True)]
        if all(k.sum() >= 2 for k in keep):
            pairs = [(g[k], b[k]) for g, b, k in zip(grid, base, keep, strict=True)]
            out[label] = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], n_resamples=n_resamples)
    return out


def reliability_data(cell: CellRuns, evaluation: str) -> dict[str, list[float]]:
    """Top-label reliability-diagram data of a cell: histograms summed over seeds and cases.

    Example:
        >>> hist = np.zeros((2, 1, 2, 3)); hist[:, 0, 1] = [1.0, 0.8, 1.0]
        >>> reliability_data(CellRuns("a", [0], [{}], [{"raw": {"hist_ece": hist}}]), "raw")["counts"]
        [0.0, 2.0]
    """
    total = sum(arrays[evaluation]["hist_ece"].sum(0)[0] for arrays in cell.arrays)
    counts = total[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(counts > 0, total[:, 1] / counts, np.nan)
        outcome = np.where(counts > 0, total[:, 2] / counts, np.nan)
    edges = np.linspace(0.0, 1.0, len(counts) + 1)
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "confidence": confidence.tolist(),
        "outcome": outcome.tolist(),
    }


def dice_curve(cell: CellRuns, evaluation: str) -> dict[str, list[float]] | None:
    """Mean Dice over seeds, cases and foreground classes at each :data:`CURVE_THRESHOLDS` level (and its std)."""
    if not all("dice_curve" in arrays.get(evaluation, {}) for arrays in cell.arrays):
        return None
    per_seed = np.stack([np.nanmean(arrays[evaluation]["dice_curve"], axis=(0, 2)) for arrays in cell.arrays])
    std = per_seed.std(0, ddof=1) if len(per_seed) > 1 else np.zeros(per_seed.shape[1])
    mean = per_seed.mean(0)
    return {
        "thresholds": list(CURVE_THRESHOLDS),
        "mean": mean.tolist(),
        "low": (mean - std).tolist(),
        "high": (mean + std).tolist(),
    }


def downstream(cell: CellRuns, evaluation: str) -> dict[str, float]:
    """Structure fraction of the predicted mask vs the reference's, over all foreground classes, cases and seeds.

    Returns ``mae`` and ``bias`` in percentage points, Pearson ``r`` over cases (all seeds pooled) and the points.
    """
    pred = np.concatenate([a[evaluation]["pred_fraction"].reshape(-1) for a in cell.arrays]) * 100.0
    ref = np.concatenate([a[evaluation]["ref_fraction"].reshape(-1) for a in cell.arrays]) * 100.0
    corr = float(np.corrcoef(pred, ref)[0, 1]) if pred.std() > 0 and ref.std() > 0 else math.nan
    per_seed = [
        float(np.abs(a[evaluation]["pred_fraction"] - a[evaluation]["ref_fraction"]).mean() * 100) for a in cell.arrays
    ]
    mae, mae_std = mean_std(per_seed)
    return {
        "mae": mae,
        "mae_std": mae_std,
        "bias": float((pred - ref).mean()),
        "r": corr,
        "pred": pred.tolist(),
        "ref": ref.tolist(),
    }
