"""The benchmark report: ``report.md`` (figures as PNG files beside it) and one self-contained ``report.html``.

Per suite: the metric table (mean ± std over seeds) before and after temperature scaling, the paired comparison
against the baseline (95 % bootstrap intervals, significant ones marked), ranks, the floor on synthetic data,
reliability diagrams (small multiples), Dice-vs-threshold curves, example maps, the downstream structure-fraction
table and, where p* is known, the outcome models' table (:mod:`softlabels.bench.downstream`), the learning curves
with the runs that did not converge, and a "what this shows" paragraph generated from the numbers. Provenance closes
the report. Every number is read from the run files by :mod:`softlabels.bench.suite_sections`; nothing is typed.
Files are written atomically.
"""

from __future__ import annotations

import html
import json
import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from softlabels._io import atomic_write
from softlabels.bench import figures
from softlabels.bench.decision_report import (
    failure_table_rows,
    guarantee_rows,
    risk_coverage_figure,
    shift_figure,
    shift_rows,
)
from softlabels.bench.downstream import outcome_caption, outcome_numbers, outcome_rows, outcome_sentence
from softlabels.bench.learning_curves import plot_learning_curves
from softlabels.bench.results import dice_curve, reliability_data
from softlabels.bench.suite_sections import CALIBRATION_KEYS, SuiteSection, suite_section
from softlabels.bench.suites import Suite

__all__ = ["provenance", "render_html", "render_markdown", "section_figures", "write_benchmark_report"]


def _pm(value: tuple[float, float]) -> str:
    mean, std = value
    return "–" if not math.isfinite(mean) else f"{mean:.4f} ± {std:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _metric_rows(
    section: SuiteSection, evaluation: str, keys: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    metrics = [m for m in section.metrics if keys is None or m.key in keys]
    header = ["method"] + [f"{m.header} {'↑' if m.higher_is_better else '↓'}" for m in metrics]
    rows = []
    for label, row in section.tables[evaluation].items():
        comps = section.comparisons[evaluation]
        cells = []
        for m in metrics:
            c = comps.get(m.key, {}).get(label)
            mark = (
                "" if c is None or not c.significant else (" ▲" if (c.difference > 0) == m.higher_is_better else " ▼")
            )
            cells.append(_pm(row[m.key]) + mark)
        rows.append([f"`{label}`", *cells])
    if evaluation == "raw" and section.floor is not None:
        rows.append(["floor (p*)"] + [_pm(section.floor[m.key]) for m in metrics])
    return header, rows


def _comparison_rows(section: SuiteSection) -> tuple[list[str], list[list[str]]]:
    header = ["method"] + [m.header for m in section.metrics]
    rows = []
    for label in section.cells:
        if label == section.suite.baseline:
            continue
        cells = []
        for m in section.metrics:
            c = section.comparisons["raw"].get(m.key, {}).get(label)
            text = "–" if c is None else f"{c.difference:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
            cells.append(f"**{text}**" if c is not None and c.significant else text)
        rows.append([f"`{label}`", *cells])
    return header, rows


def _rank_rows(section: SuiteSection) -> tuple[list[str], list[list[str]]]:
    keys = [m for m in section.metrics if m.key in section.ranks]
    header = ["method", "mean rank"] + [m.header for m in keys]
    rows = []
    for label in section.cells:
        ranks = [section.ranks[m.key].get(label, math.nan) for m in keys]
        finite = [r for r in ranks if math.isfinite(r)]
        mean = sum(finite) / len(finite) if finite else math.nan
        rows.append([f"`{label}`", f"{mean:.2f}"] + [f"{r:g}" for r in ranks])
    rows.sort(key=lambda r: float(r[1]) if r[1] != "nan" else math.inf)
    return header, rows


def _floor_rows(section: SuiteSection) -> tuple[list[str], list[list[str]]]:
    """Gap of every method to the floor (p* scored the same way) on the calibration metrics, before and after TS."""
    floor = section.floor or {}
    keys = [m for m in section.metrics if m.key in CALIBRATION_KEYS]
    header = ["method"] + [f"{m.header} gap" for m in keys] + [f"{m.header} gap (TS)" for m in keys if m.key == "nll"]
    rows = []
    for label in section.cells:
        raw, ts = section.tables["raw"][label], section.tables["ts"][label]
        gaps = [f"{raw[m.key][0] - floor[m.key][0]:+.4f}" for m in keys]
        gaps += [f"{ts[m.key][0] - floor[m.key][0]:+.4f}" for m in keys if m.key == "nll"]
        rows.append([f"`{label}`", *gaps])
    return header, rows


def _downstream_rows(section: SuiteSection) -> tuple[list[str], list[list[str]]]:
    header = ["method", "MAE (pp) ↓", "bias (pp)", "Pearson r ↑"]
    rows = [
        [f"`{label}`", f"{d['mae']:.3f} ± {d['mae_std']:.3f}", f"{d['bias']:+.3f}", f"{d['r']:.4f}"]
        for label, d in section.downstream.items()
    ]
    return header, rows


def _convergence_rows(section: SuiteSection) -> tuple[list[str], list[list[str]]]:
    """The runs that did not converge: epochs, the two window means of the validation NLL, their drop, why."""
    header = ["method", "seed", "epochs", "NLL, previous window", "NLL, last window", "drop", "reason"]
    rows = []
    for f in section.convergence:
        if not f["converged"]:
            numbers = [f"{v:.4f}" if v is not None else "–" for v in (f["previous"], f["last"])]
            drop = f"{f['relative_drop']:+.1%}" if f["relative_drop"] is not None else "–"
            rows.append([f"`{f['method']}`", str(f["seed"]), str(f["epochs"]), *numbers, drop, f["reason"]])
    return header, rows


def _curve_figure(section: SuiteSection) -> bytes | None:
    """The learning-curve figure: validation NLL and the headline metric per epoch, mean over seeds."""
    names = {"val_nll": "validation NLL", "val_metric": f"validation {section.metrics[0].header}"}
    panels = {names[k]: v for k, v in section.learning_curves.items() if v}
    if not panels:
        return None
    title = "Learning curves (validation after every epoch; mean over seeds, shaded: their range)"
    return figures.figure_png(plot_learning_curves(panels, title=title, log_scale=("validation NLL",)))


def section_figures(section: SuiteSection) -> dict[str, bytes]:
    """PNG bytes of the section's figures by name (reliability, curves, examples, downstream).

    Example:
        >>> section_figures.__name__
        'section_figures'
    """
    out: dict[str, bytes] = {}
    if (curve_png := _curve_figure(section)) is not None:
        out["learning_curves"] = curve_png
    for evaluation, name in (("raw", "reliability"), ("ts", "reliability_ts")):
        diagrams = {label: reliability_data(cell, evaluation) for label, cell in section.cells.items()}
        suffix = " — after temperature scaling" if evaluation == "ts" else ""
        out[name] = figures.figure_png(
            figures.reliability_grid(diagrams, title=f"Reliability (test, top-label){suffix}")
        )
    curves = {label: c for label, cell in section.cells.items() if (c := dice_curve(cell, "raw")) is not None}
    if curves:
        out["dice_threshold"] = figures.figure_png(
            figures.threshold_curves(curves, title="Dice vs threshold (test, mean ± std over seeds)")
        )
    if section.decisions is not None:
        titles = {"risk_coverage": f"Risk–coverage ({section.suite.name}, test; mean over seeds)",
                  "shift": "Under shift (temperature-scaled)"}  # fmt: skip
        for name, draw in (("risk_coverage", risk_coverage_figure), ("shift", shift_figure)):
            fig = draw(section.decisions, title=titles[name])
            if fig is not None:
                out[name] = figures.figure_png(fig)
    if section.suite.task == "segmentation":
        rows = _example_rows(section)
        if rows:
            out["examples"] = figures.figure_png(figures.example_panels(rows, title="Examples (seed 0, test)"))
        points = {label: (d["ref"], d["pred"]) for label, d in section.downstream.items()}
        out["downstream"] = figures.figure_png(figures.scatter_fractions(
            points, title="Structure fraction per case", xlabel="reference (%)", ylabel="predicted mask (%)",
        ))  # fmt: skip
    return out


def _example_rows(section: SuiteSection) -> list[dict[str, Any]]:
    raw = section.tables["raw"]
    base = section.suite.baseline
    best = min((label for label in raw if label != base), key=lambda label: raw[label]["ece"][0])
    rows = []
    for label in dict.fromkeys([base, best]):
        examples = section.cells[label].arrays[0].get("examples", {})
        for i in range(min(2, len(examples.get("image", [])))):
            row: dict[str, Any] = {k: np.asarray(v[i]) for k, v in examples.items()}
            row["label"] = f"{label} · case {i}"
            row["max_entropy"] = math.log(max(2, section.cells[label].arrays[0]["raw"]["hist_cece"].shape[1]))
            row["max_disagreement"] = row["max_entropy"]  # the entropy of the rater votes
            rows.append(row)
    return rows


def provenance(suites: Sequence[Suite], sections: Sequence[SuiteSection], seconds: float | None) -> dict[str, Any]:
    """Package versions, git commit, machine, seeds, configs and run times of the report.

    Example:
        >>> provenance([], [], None)["machine"]["cpus"] == os.cpu_count()
        True
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown (not a git checkout)"
    first = next((cell.results[0] for s in sections for cell in s.cells.values() if cell.results), {})
    run_seconds = sum(r.get("total_seconds", 0.0) for s in sections for cell in s.cells.values() for r in cell.results)
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": commit,
        "versions": first.get("versions", {}), "python": platform.python_version(),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "bench_wall_seconds": seconds, "sum_of_run_seconds": run_seconds,
        "suites": {s.name: {"seeds": list(s.seeds), "cells": [c.label for c in s.cells], "config": dict(s.base)}
                   for s in suites},
    }  # fmt: skip


def render_markdown(
    sections: Sequence[SuiteSection], prov: Mapping[str, Any], figure_files: Mapping[str, Mapping[str, str]]
) -> str:
    """The Markdown report; ``figure_files[suite][figure]`` is the relative path of each PNG.

    Example:
        >>> render_markdown([], {"git_commit": "abc"}, {}).splitlines()[0]
        '# softlabels benchmark'
    """
    lines = ["# softlabels benchmark", "", _legend(), ""]
    for section in sections:
        s = section.suite
        n_cases = section.cells[s.baseline].results[0]["n_cases"]
        lines += [f"## {s.title}", "", s.description, ""]
        lines += [
            f"Baseline: `{s.baseline}`; seeds {list(s.seeds)}; {n_cases} test cases.",
            "",
            "### What this shows",
            "",
        ]
        lines += [f"- {text}" for text in section.findings] + ["", "### Test metrics (mean ± std over seeds)", ""]
        lines += [*_table(*_metric_rows(section, "raw")), "", "### After temperature scaling", ""]
        lines += [
            *_table(*_metric_rows(section, "ts", CALIBRATION_KEYS)),
            "",
            f"### Difference to `{s.baseline}` (95 % paired bootstrap over seeds × cases; bold: significant)",
            "",
        ]
        lines += [*_table(*_comparison_rows(section)), "", "### Ranks (1 = best, on the means)", ""]
        lines += [*_table(*_rank_rows(section)), ""]
        if any(not f["converged"] for f in section.convergence):
            lines += ["### Runs that did not converge", "", *_table(*_convergence_rows(section)), ""]
        if section.floor is not None:
            lines += ["### Gap to the floor (p* known: Bayes NLL and Brier of p*, ECE 0)", ""]
            lines += [*_table(*_floor_rows(section)), ""]
        if section.downstream:
            lines += ["### Downstream: structure fraction of the predicted mask vs the reference", ""]
            lines += [*_table(*_downstream_rows(section)), ""]
        if section.outcomes is not None:
            lines += ["### Downstream outcomes predicted from the masks (synthetic targets, known ceiling)", ""]
            lines += [outcome_caption(section.outcomes), "", *_table(*outcome_rows(section.outcomes)), ""]
            lines += [outcome_sentence(section.outcomes), ""]
        lines += _decision_markdown(section)
        for name, path in figure_files.get(s.name, {}).items():
            lines += [f"![{name}]({path})", ""]
    lines += ["## Provenance", "", "```json", json.dumps(prov, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def _decision_tables(section: SuiteSection) -> list[tuple[str, str, tuple[list[str], list[list[str]]]]]:
    """``(title, caption, (header, rows))`` of the decision tables of a section (softlabels.bench.decision_report)."""
    d = section.decisions
    if d is None:
        return []
    out = []
    if d.guarantees:
        caption = (
            "Conformal risk control (CRC) and Learn-then-Test (LTT) thresholds on each structure's probability "
            "(mask = p ≥ t), fitted on a random half of the test cases and tested on the other half, 500 times per "
            "seed (all cases but one calibrate where half are too few: marked 'cal.'); FNR against each rater (else "
            "the soft reference); mean over the structures. LTT's calibration sets are drawn with replacement, so "
            "the cases are the population and P(FNR > α) is exact; an LTT threshold of 0 means that no smaller mask "
            "than the whole image could be certified with so few cases. docs/conformal.md."
            if d.task == "segmentation"
            else "Prediction sets at coverage 1 − α = 0.9 fitted on random halves of the test cases (500 per seed): "
            "mean coverage and set size on the other half; Mondrian: one quantile per true class."
        )
        out.append(("Decisions with guarantees", caption, guarantee_rows(d)))
    if d.failure:
        failure = f"Dice < {d.failure_below}" if d.task == "segmentation" else "a wrong class"
        caption = (
            f"Per-case confidence scores against the case's quality (Dice or correctness; a failure: {failure}), "
            "on the test cases of the model as trained; means over seeds. docs/conformal.md#failure-detection."
        )
        out.append(("Failure detection", caption, failure_table_rows(d)))
    if d.shift:
        caption = (
            "Seed 0 of every method, temperature-scaled, on the test images shifted at severities 1–5 (mean over "
            "intensity, contrast, bias field, noise and resolution; softlabels.data.shifts); FNR: CRC thresholds "
            "calibrated on the clean cases, applied to the shifted ones; e-AURC: the failure-detection confidence "
            "of the table above on the shifted cases."
        )
        out.append(("Under shift", caption, shift_rows(d)))
    return out


def _decision_markdown(section: SuiteSection) -> list[str]:
    lines: list[str] = []
    for title, caption, table in _decision_tables(section):
        lines += [f"### {title}", "", caption, "", *_table(*table), ""]
    return lines


def _legend() -> str:
    return (
        "Means ± standard deviations over seeds of test-set values. ECE, classwise ECE and boundary-band ECE are "
        "pooled over the test set (15 equal-width bins) against the soft reference (p* on synthetic data, the tissue "
        "maps on MNI152, the rater mean on LIDC); Dice/HD95 against its argmax. ▲/▼: significantly better/worse "
        "than the baseline (95 % nested paired bootstrap: seeds, then cases within each seed; 1000 resamples)."
    )


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str, tag: str) -> str:
        body = html.escape(text.replace("`", "").replace("**", ""))
        return f"<{tag} class='strong'>{body}</{tag}>" if text.startswith("**") else f"<{tag}>{body}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 6px;"
    "text-align:right}td:first-child,th:first-child{text-align:left}.strong{font-weight:bold}img{max-width:100%}"
    "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:0.8em}"
)


def render_html(
    sections: Sequence[SuiteSection], prov: Mapping[str, Any], pngs: Mapping[str, Mapping[str, bytes]]
) -> str:
    """One self-contained HTML page (figures embedded as data URIs, no scripts, no external resources).

    Example:
        >>> page = render_html([], {"git_commit": "abc"}, {})
        >>> page.startswith("<!DOCTYPE html>"), "abc" in page, "<script" in page
        (True, True, False)
    """
    head = f"<meta charset='utf-8'><title>softlabels benchmark</title><style>{_CSS}</style>"
    parts = [f"<!DOCTYPE html><html lang='en'><head>{head}</head><body>"]
    parts += ["<h1>softlabels benchmark</h1>", f"<p>{html.escape(_legend())}</p>"]
    for section in sections:
        s = section.suite
        parts += [f"<h2 id='{s.name}'>{html.escape(s.title)}</h2>", f"<p>{html.escape(s.description)}</p>"]
        parts += (
            ["<h3>What this shows</h3><ul>"]
            + [f"<li>{html.escape(t.replace('`', '').replace('**', ''))}</li>" for t in section.findings]
            + ["</ul>"]
        )
        parts += ["<h3>Test metrics (mean ± std over seeds)</h3>", _html_table(*_metric_rows(section, "raw"))]
        parts += ["<h3>After temperature scaling</h3>", _html_table(*_metric_rows(section, "ts", CALIBRATION_KEYS))]
        parts += [
            f"<h3>Difference to {html.escape(s.baseline)} (95 % paired bootstrap)</h3>",
            _html_table(*_comparison_rows(section)),
        ]
        parts += ["<h3>Ranks</h3>", _html_table(*_rank_rows(section))]
        if any(not f["converged"] for f in section.convergence):
            parts += ["<h3>Runs that did not converge</h3>", _html_table(*_convergence_rows(section))]
        if section.floor is not None:
            parts += ["<h3>Gap to the floor (p* known)</h3>", _html_table(*_floor_rows(section))]
        if section.downstream:
            parts += ["<h3>Downstream: structure fraction</h3>", _html_table(*_downstream_rows(section))]
        if section.outcomes is not None:
            parts += ["<h3>Downstream outcomes predicted from the masks</h3>"]
            parts += [
                f"<p>{html.escape(outcome_caption(section.outcomes))}</p>",
                _html_table(*outcome_rows(section.outcomes)),
            ]
            tau = outcome_sentence(section.outcomes).replace("`", "").replace("**", "")
            parts += [f"<p>{html.escape(tau)}</p>"]
        for title, caption, table in _decision_tables(section):
            parts += [f"<h3>{html.escape(title)}</h3>", f"<p>{html.escape(caption)}</p>", _html_table(*table)]
        for name, data in pngs.get(s.name, {}).items():
            parts.append(f"<figure><img alt='{html.escape(name)}' src='{figures.png_data_uri(data)}'></figure>")
    parts += ["<h2>Provenance</h2>", f"<pre>{html.escape(json.dumps(prov, indent=1, default=str))}</pre></body></html>"]
    return "\n".join(parts)


def write_benchmark_report(
    suites: Sequence[Suite], root: str | Path, *, seconds: float | None = None
) -> dict[str, Path]:
    """Compute every section from the runs in ``root`` and write ``report.md``, ``report.html``, ``report.json``.

    Raises:
        ValueError: unfinished runs (named).

    Example:
        >>> write_benchmark_report.__name__
        'write_benchmark_report'
    """
    root = Path(root)
    sections = [suite_section(suite, root) for suite in suites]
    prov = provenance(suites, sections, seconds)
    (root / "figures").mkdir(exist_ok=True)
    pngs: dict[str, dict[str, bytes]] = {}
    files: dict[str, dict[str, str]] = {}
    for section in sections:
        name = section.suite.name
        pngs[name] = section_figures(section)
        files[name] = {}
        for figure, data in pngs[name].items():
            path = root / "figures" / f"{name}_{figure}.png"
            _write_bytes(path, data)
            files[name][figure] = f"figures/{path.name}"
    paths = {"markdown": root / "report.md", "html": root / "report.html", "json": root / "report.json"}
    atomic_write(paths["markdown"], lambda h: h.write(render_markdown(sections, prov, files).encode()))
    atomic_write(paths["html"], lambda h: h.write(render_html(sections, prov, pngs).encode()))
    numbers = {s.suite.name: _numbers(s) for s in sections}
    text = json.dumps({"provenance": prov, "suites": numbers}, indent=1, default=str)
    atomic_write(paths["json"], lambda h: h.write(text.encode()))
    return paths


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def _numbers(section: SuiteSection) -> dict[str, Any]:
    comps = {
        ev: {k: {label: vars(c) for label, c in v.items()} for k, v in by_metric.items()}
        for ev, by_metric in section.comparisons.items()
    }
    return {"tables": section.tables, "comparisons": comps, "ranks": section.ranks, "floor": section.floor,
            "temperatures": section.temperatures, "findings": section.findings, "convergence": section.convergence,
            "downstream": {k: {kk: vv for kk, vv in d.items() if kk not in ("pred", "ref")}
                           for k, d in section.downstream.items()},
            "outcomes": None if section.outcomes is None else outcome_numbers(section.outcomes),
            "decisions": None if section.decisions is None else {
                "guarantees": section.decisions.guarantees, "failure": section.decisions.failure,
                "confidence": section.decisions.confidence, "shift": section.decisions.shift,
                "shift_ece_by_kind": section.decisions.shift_kinds}}  # fmt: skip
