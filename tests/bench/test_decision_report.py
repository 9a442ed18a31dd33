"""The report's decision sections, computed from the tiny benchmark's runs (tests/bench/conftest.py)."""

from __future__ import annotations

import math

import numpy as np

from softlabels.bench.decision_report import (
    DecisionSection,
    decision_section,
    decision_sentences,
    failure_table_rows,
    guarantee_rows,
    risk_coverage_figure,
    shift_figure,
    shift_rows,
)
from softlabels.bench.figures import PNG_SIGNATURE, figure_png
from softlabels.bench.results import load_suite


def _sections(tiny_bench):
    suites, root = tiny_bench
    return {s.name: (s, decision_section(load_suite(s, root), s.task, s.baseline)) for s in suites}


def test_segmentation_guarantees_failure_detection_and_shift_from_the_runs(tiny_bench):
    suite, section = _sections(tiny_bench)["tiny_seg"]
    assert set(section.guarantees) == {*(c.label for c in suite.cells), "floor (p*)"}
    for seeds in section.guarantees.values():
        assert len(seeds) == 2 and all(s is not None and s["n_calibration"] == 10 for s in seeds)
        for seed in seeds:
            crc = seed["crc"][0]
            assert 0.0 <= crc["threshold"][0] <= 1.0 and 0.0 <= crc["fraction"][0] <= 1.0
            assert 0.0 <= seed["ltt"][0]["violations"] <= 1.0
    header, rows = guarantee_rows(section)
    assert len(rows) == len(section.guarantees) and all(len(r) == len(header) for r in rows)
    assert section.confidence and set(section.failure) == {c.label for c in suite.cells}
    header, rows = failure_table_rows(section)
    assert len(rows) == 3 and all(len(r) == len(header) for r in rows)
    cover, risk = section.risk_coverage["hard"]
    assert cover[-1] == 1.0 and np.all(np.isfinite(risk))
    # seed 0 of each method was evaluated under noise_3: severity 0 (clean) and 3
    assert set(section.shift) == {c.label for c in suite.cells}
    assert all(set(m["ece"]) == {0, 3} for m in section.shift.values())
    assert set(section.shift_kinds) == {"noise"}
    header, rows = shift_rows(section)
    assert header[1:] == [f"{n} (s0 → s3)" for n in ("ECE", "NLL", "Dice", "realized FNR", "e-AURC")]
    assert len(rows) == 3 and all(len(r) == 6 and r[1].count("→") == 1 for r in rows)
    assert all(set(m) == {"ece", "nll", "dice", "fnr", "e_aurc"} for m in section.shift.values())
    for draw in (risk_coverage_figure, shift_figure):
        assert figure_png(draw(section, title="t")).startswith(PNG_SIGNATURE)
    sentences = decision_sentences(section, suite.baseline)
    assert any(s.startswith("Guarantee FNR") for s in sentences) and any("Under shift" in s for s in sentences)


def test_classification_sets_per_method(tiny_bench):
    suite, section = _sections(tiny_bench)["tiny_cls"]
    header, rows = guarantee_rows(section)
    assert header[1] == "LAC cov." and len(rows) == len(section.guarantees)
    for seeds in section.guarantees.values():
        for seed in seeds:
            assert set(seed) == {"lac", "aps", "raps", "aps_mondrian"}
            assert all(0.0 <= v["coverage"][0] <= 1.0 and v["size"][0] >= 0 for v in seed.values())
    assert not section.shift and shift_figure(section, title="t") is None
    assert any(s.startswith("APS sets") for s in decision_sentences(section, suite.baseline))


def test_the_written_report_has_the_decision_sections(tiny_bench):
    _, root = tiny_bench
    text = (root / "report.md").read_text()
    for title in ("### Decisions with guarantees", "### Failure detection", "### Under shift"):
        assert title in text
    assert "tiny_seg_risk_coverage.png" in text and "tiny_seg_shift.png" in text
    html = (root / "report.html").read_text()
    assert "Decisions with guarantees" in html and "Under shift" in html


def test_an_empty_section_renders_nothing():
    section = DecisionSection("segmentation")
    assert guarantee_rows(section)[1] == [] and failure_table_rows(section)[1] == []
    assert risk_coverage_figure(section, title="t") is None and not math.isnan(len(shift_rows(section)[0]))
