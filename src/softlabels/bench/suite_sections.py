"""The numbers of one suite's report section, and its "what this shows" paragraph generated from them.

:func:`suite_section` reads the suite's finished runs (:mod:`softlabels.bench.results`) and returns plain data:
tables (mean ± std over seeds, before and after temperature scaling), paired comparisons against the baseline,
ranks, the floor, the downstream tables (structure fractions; outcome models where p* is known), the learning
curves with each run's convergence verdict, and the sentences of the paragraph.
:mod:`softlabels.bench.benchmark_report` renders it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softlabels.bench.decision_report import DecisionSection, decision_section, decision_sentences
from softlabels.bench.downstream import DownstreamOutcomes, downstream_outcomes, outcome_sentence
from softlabels.bench.learning_curves import TOLERANCE, convergence_flags, curve_data
from softlabels.bench.results import (
    METRICS,
    CellRuns,
    ReportedMetric,
    compare_to_baseline,
    downstream,
    load_suite,
    metric_table,
)
from softlabels.bench.statistics import PairedComparison, mean_std, rank_methods
from softlabels.bench.suites import Suite

__all__ = ["SuiteSection", "suite_section"]

CALIBRATION_KEYS = ("ece", "ece_classwise", "ece_boundary", "brier", "nll")


@dataclass
class SuiteSection:
    """Everything the report shows of one suite (plain data; figures are drawn from ``cells`` by the page).

    Example:
        >>> SuiteSection.__dataclass_fields__["tables"].name
        'tables'
    """

    suite: Suite
    cells: dict[str, CellRuns]
    metrics: tuple[ReportedMetric, ...]
    tables: dict[str, dict[str, dict[str, tuple[float, float]]]]
    comparisons: dict[str, dict[str, dict[str, PairedComparison]]]
    ranks: dict[str, dict[str, float]]
    floor: dict[str, tuple[float, float]] | None
    temperatures: dict[str, tuple[float, float]]
    downstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    outcomes: DownstreamOutcomes | None = None  # the outcome models where p* is known (softlabels.bench.downstream)
    learning_curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # column → method → curve_data
    convergence: list[dict[str, Any]] = field(default_factory=list)  # one verdict per run (convergence_flags)
    decisions: DecisionSection | None = None  # guarantees, failure detection, shift (softlabels.bench.decision_report)
    findings: list[str] = field(default_factory=list)


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def _ranks(
    table: Mapping[str, Mapping[str, tuple[float, float]]], metrics: Sequence[ReportedMetric]
) -> dict[str, dict[str, float]]:
    out = {}
    for metric in metrics:
        scores = {label: row[metric.key][0] for label, row in table.items() if math.isfinite(row[metric.key][0])}
        if len(scores) >= 2:
            out[metric.key] = rank_methods(scores, higher_is_better=metric.higher_is_better)
    return out


def _claim_sentence(claim: Mapping[str, Any], section: SuiteSection) -> str | None:
    """One sentence: did the claimed improvement reproduce here (significant, in the claimed direction)?"""
    method, key = claim["method"], claim["metric"]
    versus = claim.get("versus", section.suite.baseline)
    if method not in section.cells or versus not in section.cells:
        return None
    metric = next((m for m in section.metrics if m.key == key), None)
    if metric is None:
        return None
    result = compare_to_baseline({versus: section.cells[versus], method: section.cells[method]}, versus, "raw", metric)
    if method not in result:
        return None
    r = result[method]
    better = r.difference > 0 if claim["better"] == "higher" else r.difference < 0
    verdict = "reproduced" if (r.significant and better) else ("reversed" if r.significant else "not reproduced")
    detail = f"Δ {metric.header} = {r.difference:+.4f} [{r.low:+.4f}, {r.high:+.4f}]"
    return f"{claim['source']}: `{method}` vs `{versus}` on {metric.header} — **{verdict}** here ({detail})."


def _headline(section: SuiteSection) -> list[str]:
    raw, metrics = section.tables["raw"], section.metrics
    base = section.suite.baseline
    sentences = []
    for metric in (metrics[0], next(m for m in metrics if m.key == "ece")):
        scores = {label: row[metric.key][0] for label, row in raw.items() if math.isfinite(row[metric.key][0])}
        best = max(scores, key=scores.__getitem__) if metric.higher_is_better else min(scores, key=scores.__getitem__)
        comps = section.comparisons["raw"].get(metric.key, {})
        wins = sorted(
            label for label, c in comps.items() if c.significant and (c.difference > 0) == metric.higher_is_better
        )
        losses = sorted(
            label for label, c in comps.items() if c.significant and (c.difference > 0) != metric.higher_is_better
        )
        versus = "the baseline" if best == base else f"`{base}`: {_fmt(scores.get(base, math.nan))}"
        sentences.append(
            f"Best {metric.header}: `{best}` ({_fmt(scores[best])}; {versus}); significantly better than `{base}`: "
            f"{', '.join(f'`{w}`' for w in wins) or 'none'}; significantly worse: "
            f"{', '.join(f'`{w}`' for w in losses) or 'none'}."
        )
    return sentences


def _temperature_sentence(section: SuiteSection) -> str:
    raw, ts = section.tables["raw"], section.tables["ts"]
    gains = [raw[label]["ece"][0] - ts[label]["ece"][0] for label in raw if math.isfinite(raw[label]["ece"][0])]
    helped = sum(1 for g in gains if g > 0)
    best_raw = min(raw, key=lambda label: raw[label]["ece"][0])
    best_ts = min(ts, key=lambda label: ts[label]["ece"][0])
    return (
        f"Temperature scaling (fitted on validation) lowered the ECE of {helped} of {len(gains)} methods (mean change "
        f"{-sum(gains) / max(len(gains), 1):+.4f}); lowest ECE before: `{best_raw}` ({_fmt(raw[best_raw]['ece'][0])}), "
        f"after: `{best_ts}` ({_fmt(ts[best_ts]['ece'][0])})."
    )


def _floor_sentence(section: SuiteSection) -> str | None:
    if section.floor is None:
        return None
    raw = section.tables["raw"]
    best = min(raw, key=lambda label: raw[label]["nll"][0])
    gap = raw[best]["nll"][0] - section.floor["nll"][0]
    return (
        f"Floor (the true distribution p* scored as a prediction against the same observed reference): NLL "
        f"{_fmt(section.floor['nll'][0])}, ECE {_fmt(section.floor['ece'][0])} (the reference's own sampling noise); "
        f"the best NLL (`{best}`, {_fmt(raw[best]['nll'][0])}) is {gap:.4f} above it."
    )


def _convergence_sentence(section: SuiteSection) -> str:
    """Whether every run converged by the rule of :mod:`softlabels.bench.learning_curves`; the baseline's count."""
    flags, base = section.convergence, section.suite.baseline
    late = [f for f in flags if not f["converged"]]
    rule = f"rule: mean validation NLL of the last fifth of the epochs at most {TOLERANCE:.0%} below the fifth before"
    if not late:
        return f"Convergence: all {len(flags)} runs converged ({rule})."
    late_base = sum(1 for f in late if f["method"] == base)
    n_base = sum(1 for f in flags if f["method"] == base)
    return (
        f"**Convergence: {len(late)} of {len(flags)} runs did not converge** ({rule}), baseline `{base}`: {late_base} "
        f"of {n_base}; their numbers may not be those of trained models (see the runs that did not converge)."
    )


def suite_section(suite: Suite, root: str | Path, *, n_resamples: int = 1000) -> SuiteSection:
    """Read the suite's runs in ``root`` and compute its report section.

    Raises:
        ValueError: unfinished runs (named).

    Example:
        >>> from softlabels.bench.suites import get_benchmark
        >>> suite_section(get_benchmark("quick")[0], "/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ... not finished ...
    """
    cells = load_suite(suite, root)
    metrics = METRICS[suite.task]
    tables = {name: metric_table(cells, name, metrics) for name in ("raw", "ts")}
    comparisons = {
        name: {m.key: compare_to_baseline(cells, suite.baseline, name, m, n_resamples=n_resamples) for m in metrics}
        for name in ("raw", "ts")
    }
    has_oracle = all("oracle" in arrays for cell in cells.values() for arrays in cell.arrays)
    floor = metric_table({"oracle": next(iter(cells.values()))}, "oracle", metrics)["oracle"] if has_oracle else None
    temperatures = {}
    for label, cell in cells.items():
        temperatures[label] = mean_std([float(r["temperature"]) for r in cell.results])
    section = SuiteSection(
        suite, cells, metrics, tables, comparisons, _ranks(tables["raw"], metrics), floor, temperatures
    )
    if suite.task == "segmentation":
        section.downstream = {label: downstream(cell, "raw") for label, cell in cells.items()}
        runs = {label: cell.arrays for label, cell in cells.items()}
        seeds = cells[suite.baseline].seeds
        section.outcomes = downstream_outcomes(runs, seeds, evaluations=("raw", "ts"), n_resamples=n_resamples)
    results = {label: cell.results for label, cell in cells.items()}
    section.learning_curves = {column: curve_data(results, column) for column in ("val_nll", "val_metric")}
    section.convergence = convergence_flags(results)
    section.findings = [_convergence_sentence(section), *_headline(section), _temperature_sentence(section)]
    floor_text = _floor_sentence(section)
    if floor_text:
        section.findings.append(floor_text)
    section.findings += [s for s in (_claim_sentence(c, section) for c in suite.claims) if s]
    if section.outcomes is not None and section.outcomes.tau is not None:
        section.findings.append(outcome_sentence(section.outcomes))
    section.decisions = decision_section(cells, suite.task, suite.baseline, failure_below=suite.failure_below)
    section.findings += decision_sentences(section.decisions, suite.baseline)
    return section
