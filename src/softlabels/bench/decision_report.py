"""The report's decision sections: guarantees per method, failure detection, and everything again under shift.

:func:`decision_section` reads the per-case decision arrays of a suite's runs (:mod:`softlabels.bench.decisions`)
and returns plain data; the ``*_rows`` functions turn it into table rows and the ``*_figure`` functions draw it:

* **guarantees** — segmentation: per method, CRC's threshold for FNR ≤ α, the realized test FNR over
  :data:`~softlabels.bench.decisions.N_SPLITS` random calibration/test halves (mean ± std over the splits), the mask
  size it costs, and LTT's threshold and violation frequency; classification: the coverage and size of LAC, APS,
  RAPS and class-conditional (Mondrian) APS sets;
* **failure detection** — per method, every per-case confidence score against the case's quality (Dice or
  correctness): AURC, e-AURC, AUGRC, AUROC of detecting a failure, Spearman ρ; and the risk–coverage curves;
* **under shift** — per method and severity (mean over the shift kinds): ECE, NLL, Dice, the realized FNR of
  thresholds calibrated on the clean test cases and applied to the shifted ones, and the e-AURC of the failure
  detection's confidence.

Every number is computed from the run files; the evaluation is ``raw`` (the model as trained: the comparison of
the methods) — the shifted evaluations are of the temperature-scaled model, against its own clean calibration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from softlabels.bench.decisions import (
    ALPHA,
    DELTA,
    N_SPLITS,
    case_quality,
    failure_rows,
    mean_risk_coverage,
    prediction_set_splits,
    risk_control_splits,
)
from softlabels.bench.results import CellRuns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FAILURE_BELOW",
    "DecisionSection",
    "decision_section",
    "decision_sentences",
    "failure_table_rows",
    "guarantee_rows",
    "risk_coverage_figure",
    "shift_figure",
    "shift_rows",
]

FAILURE_BELOW = {"segmentation": 0.7, "classification": 0.5}
"""A case fails when its quality is below this: Dice < 0.7 (segmentation), a wrong class (classification).

A suite may set its own level (``Suite.failure_below``) where its cases are better than that: the default benchmark
uses 0.95 on the synthetic data and 0.9 on LIDC, about the 10th–15th percentile of the baseline's per-case Dice there
(at 0.7 no synthetic case and 0.3 % of the LIDC cases fail, so the AUROC would be undefined or noise).

Example:
    >>> FAILURE_BELOW["segmentation"]
    0.7
"""
_SHIFT_KEYS = ("ece", "nll", "dice", "fnr", "e_aurc")
_SHIFT_NAMES = {"ece": "ECE", "nll": "NLL", "dice": "Dice", "fnr": "realized FNR", "e_aurc": "e-AURC"}


@dataclass
class DecisionSection:
    """A suite's decision numbers (plain data).

    Example:
        >>> DecisionSection("segmentation").guarantees
        {}
    """

    task: str
    failure_below: float = 0.7  # a failing case: quality below this
    n_cases: int = 0  # test cases per run (the pool the calibration/test halves are drawn from)
    guarantees: dict[str, Any] = field(default_factory=dict)  # method → per-seed risk_control / set splits
    failure: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # method → rows (means over seeds)
    risk_coverage: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    confidence: str = ""  # the confidence of the risk–coverage curves (the baseline's lowest e-AURC)
    shift: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)  # method → metric → severity → value
    shift_kinds: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)  # kind → method → sev → ECE


def _mean_rows(per_seed: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Average failure rows of several seeds, row by row (same confidences in the same order)."""
    rows = []
    for group in zip(*per_seed, strict=True):
        row: dict[str, Any] = {"confidence": group[0]["confidence"]}
        for key in group[0]:
            if key != "confidence":
                finite = [float(r[key]) for r in group if math.isfinite(float(r[key]))]
                row[key] = float(np.mean(finite)) if finite else math.nan  # NaN: no seed had a value
        rows.append(row)
    return rows


def _guarantees(cell: CellRuns, evaluation: str, segmentation: bool) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for seed, arrays in zip(cell.seeds, cell.arrays, strict=True):
        values = arrays.get(evaluation, {})
        if segmentation and "fnr_curve" in values:
            out.append(risk_control_splits(values["fnr_curve"], values["mask_fraction"], seed=seed))
        elif not segmentation and "probs" in values:
            out.append(prediction_set_splits(values["probs"], values["label"], seed=seed))
    return out


def decision_section(
    cells: Mapping[str, CellRuns], task: str, baseline: str, *, failure_below: float | None = None
) -> DecisionSection:
    """Compute the decision numbers of a suite from its runs (``cells``: label → runs, from ``load_suite``).

    ``failure_below``: a case fails when its quality is below this (``None``: :data:`FAILURE_BELOW` of the task).

    Example:
        >>> decision_section({}, "segmentation", "hard").failure
        {}
    """
    segmentation = task == "segmentation"
    section = DecisionSection(task, failure_below=FAILURE_BELOW[task] if failure_below is None else failure_below)
    for label, cell in cells.items():
        section.n_cases = max(section.n_cases, *(int(r.get("n_cases", 0)) for r in cell.results), 0)
        section.guarantees[label] = _guarantees(cell, "raw", segmentation)
        per_seed = [failure_rows(a["raw"], segmentation=segmentation, failure_below=section.failure_below)
                    for a in cell.arrays if "raw" in a and any(k.startswith("conf_") for k in a["raw"])]  # fmt: skip
        if per_seed:
            section.failure[label] = _mean_rows(per_seed)
    first = next(iter(cells.values()), None)
    if first is not None and "oracle" in first.arrays[0]:
        section.guarantees["floor (p*)"] = _guarantees(first, "oracle", segmentation)
    if baseline in section.failure:
        best = min(section.failure[baseline], key=lambda r: r["e_aurc"] if math.isfinite(r["e_aurc"]) else math.inf)
        section.confidence = str(best["confidence"])
        for label, cell in cells.items():
            runs = [(a["raw"][f"conf_{section.confidence}"], 1.0 - case_quality(a["raw"], segmentation=segmentation))
                    for a in cell.arrays if f"conf_{section.confidence}" in a.get("raw", {})]  # fmt: skip
            runs = [(c[np.isfinite(q)], q[np.isfinite(q)]) for c, q in runs]
            if runs and all(len(c) for c, _ in runs):
                section.risk_coverage[label] = mean_risk_coverage(runs)
    if segmentation:
        _shift_numbers(section, cells)
    return section


def _shift_values(
    section: DecisionSection, summary: Mapping[str, Any], clean: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray], seed: int,
) -> dict[str, float]:  # fmt: skip
    """ECE, NLL, Dice, realized FNR (clean calibration) and e-AURC of the section's confidence on one evaluation."""
    rows = failure_rows(test, segmentation=True, failure_below=section.failure_below)
    e_aurc = next((float(r["e_aurc"]) for r in rows if r["confidence"] == section.confidence), math.nan)
    out = {key: float(summary[key]) for key in ("ece", "nll", "dice")}
    return out | {"fnr": _realized_fnr(clean, test, seed), "e_aurc": e_aurc}


def _shift_numbers(section: DecisionSection, cells: Mapping[str, CellRuns]) -> None:
    """Per method: the :data:`_SHIFT_KEYS` per severity (0: clean), averaged over kinds and seeds."""
    for label, cell in cells.items():
        values: dict[str, dict[int, list[float]]] = {key: {} for key in _SHIFT_KEYS}
        for result, arrays in zip(cell.results, cell.arrays, strict=True):
            clean = arrays.get("ts", {})
            shifted = {name.split("@", 1)[1]: a for name, a in arrays.items() if name.startswith("ts@")}
            if not shifted or "fnr_curve" not in clean:
                continue
            evaluations = result["evaluations"]
            points: list[tuple[str | None, int, dict[str, float]]] = [
                (None, 0, _shift_values(section, evaluations["ts"], clean, clean, result["seed"]))
            ]
            for name, test in shifted.items():
                shift_kind, level = name.rsplit("_", 1)
                summary = evaluations[f"ts@{name}"]
                points.append((shift_kind, int(level), _shift_values(section, summary, clean, test, result["seed"])))
            for kind, severity, point in points:
                for key, value in point.items():
                    values[key].setdefault(severity, []).append(value)
                if kind is not None:
                    section.shift_kinds.setdefault(kind, {}).setdefault(label, {})[severity] = point["ece"]
        if values["ece"]:
            section.shift[label] = {k: {s: float(np.mean(v)) for s, v in sorted(d.items())} for k, d in values.items()}


def _realized_fnr(clean: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray], seed: int) -> float:
    """Mean realized FNR (over structures and splits) of CRC thresholds fitted on clean halves, tested on ``test``."""
    out = risk_control_splits(
        clean["fnr_curve"], clean["mask_fraction"], seed=seed, n_splits=N_SPLITS // 5,
        test_loss=test["fnr_curve"], test_fraction=test["mask_fraction"], ltt=False,
    )  # fmt: skip
    return math.nan if out is None else float(np.mean([s["risk"][0] for s in out["crc"]]))


def _avg(seeds: Sequence[Mapping[str, Any] | None], part: str, key: str, index: int = 0) -> float:
    """Mean over seeds and structures of ``seed[part][structure][key][index]`` (NaN when no seed has it)."""
    values = [s[key][index] if isinstance(s[key], tuple | list) else s[key]
              for seed in seeds if seed is not None for s in seed[part]]  # fmt: skip
    return float(np.mean(values)) if values else math.nan


def _too_few(section: DecisionSection) -> str:
    needed = math.ceil(1.0 / ALPHA - 1.0 - 1e-9)
    return f"too few cases ({section.n_cases}; CRC at α = {ALPHA} needs ≥ {needed} to calibrate and 1 to test)"


def guarantee_rows(section: DecisionSection) -> tuple[list[str], list[list[str]]]:
    """Table rows of the guarantees (segmentation: CRC and LTT per method; classification: the sets per method).

    Example:
        >>> guarantee_rows(DecisionSection("segmentation"))[0][1]
        'CRC threshold'
    """
    if section.task == "segmentation":
        header = ["method", "CRC threshold", f"realized FNR (α = {ALPHA})", "mask (% of image)",
                  f"LTT threshold (δ = {DELTA})", "LTT P(FNR > α)", "LTT mask (%)"]  # fmt: skip
        rows = []
        for label, seeds in section.guarantees.items():
            if not seeds or all(s is None for s in seeds):
                rows.append([f"`{label}`", _too_few(section), "–", "–", "–", "–", "–"])
                continue
            risk, spread = _avg(seeds, "crc", "risk"), _avg(seeds, "crc", "risk", 1)
            n_cal = next(s["n_calibration"] for s in seeds if s is not None)
            name = f"`{label}`" + ("" if n_cal <= section.n_cases // 2 else f" ({n_cal} cal.)")
            rows.append([
                name, f"{_avg(seeds, 'crc', 'threshold'):.3f}", f"{risk:.4f} ± {spread:.4f}",
                f"{100 * _avg(seeds, 'crc', 'fraction'):.2f}", f"{_avg(seeds, 'ltt', 'threshold'):.3f}",
                f"{_avg(seeds, 'ltt', 'violations'):.3f}", f"{100 * _avg(seeds, 'ltt', 'fraction'):.2f}",
            ])  # fmt: skip
        return header, rows
    names = ("lac", "aps", "raps", "aps_mondrian")
    header = ["method"] + [
        f"{n.upper().replace('_MONDRIAN', ' Mondrian')} {w}" for n in names for w in ("cov.", "size")
    ]
    header += ["worst class cov. (APS)", "worst class cov. (Mondrian)"]
    rows = []
    for label, seeds in section.guarantees.items():
        done = [s for s in seeds if s is not None]
        if not done:
            continue
        cells = [f"`{label}`"]
        for n in names:
            cells.append(f"{np.mean([s[n]['coverage'][0] for s in done]):.3f}")
            cells.append(f"{np.mean([s[n]['size'][0] for s in done]):.2f}")
        for n in ("aps", "aps_mondrian"):
            cells.append(f"{np.mean([s[n]['min_class_coverage'] for s in done]):.3f}")
        rows.append(cells)
    return header, rows


def failure_table_rows(section: DecisionSection) -> tuple[list[str], list[list[str]]]:
    """Per method, the confidence with the lowest e-AURC and its AURC, e-AURC, AUGRC, AUROC and Spearman ρ.

    Example:
        >>> failure_table_rows(DecisionSection("segmentation"))[0][:3]
        ['method', 'best confidence', 'AURC ↓']
    """
    header = ["method", "best confidence", "AURC ↓", "e-AURC ↓", "AUGRC ↓", "AUROC ↑", "Spearman ρ ↑",
              f"e-AURC of {section.confidence or '–'}"]  # fmt: skip
    rows = []
    for label, table in section.failure.items():
        best = min(table, key=lambda r: r["e_aurc"] if math.isfinite(r["e_aurc"]) else math.inf)
        chosen = next((r for r in table if r["confidence"] == section.confidence), None)
        keys = ("aurc", "e_aurc", "augrc", "auroc", "spearman")
        values = ["–" if not math.isfinite(best[k]) else f"{best[k]:.4f}" for k in keys]
        chosen_text = "–" if chosen is None else f"{chosen['e_aurc']:.4f}"
        rows.append([f"`{label}`", str(best["confidence"]), *values, chosen_text])
    return header, rows


def shift_rows(section: DecisionSection) -> tuple[list[str], list[list[str]]]:
    """Per method: ECE, NLL, Dice, realized FNR and e-AURC from severity 0 (clean) up (mean over the kinds).

    Example:
        >>> shift_rows(DecisionSection("segmentation"))[1]
        []
    """
    severities = sorted({s for m in section.shift.values() for d in m.values() for s in d})
    steps = " → ".join(f"s{s}" for s in severities)
    header = ["method"] + [f"{_SHIFT_NAMES[key]} ({steps})" for key in _SHIFT_KEYS]
    rows = []
    for label, metrics in section.shift.items():
        cells = [" → ".join(f"{metrics[k].get(s, math.nan):.3f}" for s in severities) for k in _SHIFT_KEYS]
        rows.append([f"`{label}`", *cells])
    return header, rows


def risk_coverage_figure(section: DecisionSection, *, title: str) -> Figure | None:
    """Risk–coverage curves of every method for the section's confidence (mean over seeds).

    Example:
        >>> risk_coverage_figure(DecisionSection("segmentation"), title="t") is None
        True
    """
    if not section.risk_coverage:
        return None
    from softlabels.bench.figures import LEGEND, _new_figure, method_style

    figure = _new_figure(7.0, 4.0)
    ax = figure.add_subplot()
    for i, (label, (cover, risk)) in enumerate(section.risk_coverage.items()):
        style = method_style(i)
        ax.plot(cover, risk, label=label, color=style["color"], linestyle=style["linestyle"], linewidth=1.2)
    ax.set_xlabel("coverage (share of cases accepted, most confident first)")
    ax.set_ylabel("selective risk (mean 1 − quality)")
    ax.set_title(f"{title} — confidence: {section.confidence}", fontsize=9)
    ax.legend(loc="upper left", ncol=2, **LEGEND)
    return figure


def shift_figure(section: DecisionSection, *, title: str) -> Figure | None:
    """Metric vs severity per method (Ovadia et al., NeurIPS 2019): the :data:`_SHIFT_KEYS`; ECE per kind.

    Example:
        >>> shift_figure(DecisionSection("segmentation"), title="t") is None
        True
    """
    if not section.shift:
        return None
    from softlabels.bench.figures import LEGEND, _new_figure, method_style

    kinds = sorted(section.shift_kinds)
    figure = _new_figure(3.0 * max(len(_SHIFT_KEYS), len(kinds)), 6.0)
    grid = figure.subplots(2, max(len(_SHIFT_KEYS), len(kinds)), squeeze=False)
    names = _SHIFT_NAMES | {"fnr": f"realized FNR (target ≤ {ALPHA})"}
    for column, key in enumerate(_SHIFT_KEYS):
        ax = grid[0][column]
        for i, (label, metrics) in enumerate(section.shift.items()):
            xs = sorted(metrics[key])
            ax.plot(xs, [metrics[key][x] for x in xs], label=label, **method_style(i), markersize=3, linewidth=1)
        if key == "fnr":
            ax.axhline(ALPHA, color="black", linewidth=0.8, linestyle=":")
        ax.set_title(f"{names[key]} (mean over kinds)", fontsize=8)
        ax.set_xlabel("severity (0 = clean)", fontsize=7)
    for column, kind in enumerate(kinds):
        ax = grid[1][column]
        for i, (label, by_severity) in enumerate(section.shift_kinds[kind].items()):
            clean = section.shift.get(label, {}).get("ece", {}).get(0)
            points = {0: clean, **by_severity} if clean is not None else dict(by_severity)
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], **method_style(i), markersize=3, linewidth=1)
        ax.set_title(f"ECE under {kind.replace('_', ' ')}", fontsize=8)
        ax.set_xlabel("severity", fontsize=7)
    for ax in [a for row in grid for a in row][len(_SHIFT_KEYS) :]:
        if not ax.has_data():
            ax.set_visible(False)
    grid[0][0].legend(loc="upper left", ncol=2, **LEGEND)
    figure.suptitle(title, fontsize=9)
    return figure


def decision_sentences(section: DecisionSection, baseline: str) -> list[str]:
    """The "what this shows" sentences of the decisions: the cheapest guarantee, failures, shift.

    Which method makes the guarantee cheapest and whether it held, which confidence detects failures best, and what
    shift does to the guarantee.

    Example:
        >>> decision_sentences(DecisionSection("segmentation"), "hard")
        []
    """
    out = []
    methods = {k: v for k, v in section.guarantees.items() if k != "floor (p*)" and v and any(v)}
    if section.task == "segmentation" and methods:
        masks = {k: _avg(v, "crc", "fraction") for k, v in methods.items()}
        risks = {k: _avg(v, "crc", "risk") for k, v in methods.items()}
        cheapest = min(masks, key=masks.__getitem__)
        held = sum(1 for r in risks.values() if r <= ALPHA + 1e-12)
        out.append(
            f"Guarantee FNR ≤ {ALPHA} (CRC, {N_SPLITS} random calibration/test splits per seed): the mean realized "
            "FNR is ≤ α "
            f"for {held} of {len(risks)} methods (range {min(risks.values()):.4f}–{max(risks.values()):.4f}); the "
            f"cheapest mask is `{cheapest}`'s ({100 * masks[cheapest]:.2f} % of the image"
            + (f"; `{baseline}`: {100 * masks[baseline]:.2f} %)." if baseline in masks else ").")
        )
    elif section.task == "classification" and methods:
        sizes = {k: float(np.mean([s["aps"]["size"][0] for s in v if s])) for k, v in methods.items()}
        cover = {k: float(np.mean([s["aps"]["coverage"][0] for s in v if s])) for k, v in methods.items()}
        smallest = min(sizes, key=sizes.__getitem__)
        out.append(
            f"APS sets at coverage ≥ {1 - ALPHA:.2f}: coverage {min(cover.values()):.3f}–{max(cover.values()):.3f} "
            f"across methods; the smallest sets are `{smallest}`'s ({sizes[smallest]:.2f} classes on average)."
        )
    if section.failure and section.confidence:
        e_aurc = {k: next(r["e_aurc"] for r in rows if r["confidence"] == section.confidence)
                  for k, rows in section.failure.items()}  # fmt: skip
        finite = {k: v for k, v in e_aurc.items() if math.isfinite(v)}
        if finite:
            best = min(finite, key=finite.__getitem__)
            out.append(
                f"Failure detection: `{section.confidence}` ranks the cases best for `{baseline}` (lowest e-AURC); "
                f"with it, `{best}`'s cases are ranked best (e-AURC {finite[best]:.4f})."
            )
    if section.shift:
        worst = {k: max(v["fnr"].values()) for k, v in section.shift.items()}
        broken = sorted(k for k, v in worst.items() if v > ALPHA)
        out.append(
            f"Under shift, thresholds calibrated on clean cases exceed FNR {ALPHA} at some severity for "
            f"{len(broken)} of {len(worst)} methods (the guarantee assumes exchangeable cases; worst "
            f"{max(worst.values()):.3f})."
        )
    return out
