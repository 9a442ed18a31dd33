"""Report writing: atomic files, strict JSON with provenance, Markdown tables, the reliability figure."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import softlabels
from softlabels.bench.report import (
    atomic_write,
    draw_reliability,
    render_markdown,
    report_document,
    write_report,
)
from softlabels.bench.score import ScoreResult
from softlabels.metrics.functional.calibration import reliability_diagram


def small_result() -> ScoreResult:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(50, 3, generator=g), 1)
    target = torch.randint(0, 3, (50,), generator=g)
    diagrams = {
        "top_label": reliability_diagram(probs, target, n_bins=5),
        "classwise": reliability_diagram(probs, target, n_bins=5, mode="classwise"),
    }
    summary = {"ece_top_label": 0.125, "ece_foreground": math.nan, "brier": 0.5, "dice": {"1": 0.75, "2": math.nan}}
    cases = [
        {"case": "a", "ece_top_label": 0.1, "ece_foreground": math.nan, "dice": {"1": 0.5, "2": math.nan}},
        {"case": "b", "ece_top_label": 0.15, "ece_foreground": 0.2, "dice": {"1": 1.0, "2": 0.25}},
    ]
    settings = {"reference": "labels", "num_classes": 3, "n_bins": 5, "classes": ["1", "2"]}
    return ScoreResult(summary, cases, diagrams, settings)


def test_atomic_write_replaces_in_one_step(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write(path, lambda f: f.write(b"first"))
    atomic_write(path, lambda f: f.write(b"second"))
    assert path.stat().st_mode & 0o644 == 0o644  # readable like any file, not mkstemp's 0600
    assert path.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failing_writer_leaves_no_partial_file(tmp_path):
    def failing(f):
        f.write(b"half of the con")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "new.json", failing)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.json").write_text("intact")
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "old.json", failing)
    assert (tmp_path / "old.json").read_text() == "intact"
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]


def test_write_report_failure_keeps_previous_report(tmp_path, monkeypatch):
    result = small_result()
    write_report(result, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_savefig(self, *args, **kwargs):
        raise OSError("cannot encode")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="cannot encode"):
        write_report(result, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_report_document_is_strict_json_with_provenance():
    doc = report_document(small_result(), sources={"probs": "p/", "labels": "l/"})
    text = json.dumps(doc, allow_nan=False)
    back = json.loads(text)
    prov = back["provenance"]
    assert prov["softlabels_version"] == softlabels.__version__
    assert prov["n_cases"] == 2 and prov["n_bins"] == 5 and prov["inputs"] == {"probs": "p/", "labels": "l/"}
    assert prov["created"].endswith("+00:00")
    assert back["summary"]["ece_foreground"] is None and back["summary"]["dice"] == {"1": 0.75, "2": None}
    assert back["cases"][0]["ece_foreground"] is None and back["cases"][1]["ece_foreground"] == 0.2


def test_markdown_tables():
    text = render_markdown(report_document(small_result()), image="reliability.png")
    lines = text.splitlines()
    assert "| ECE, top-label (pooled over all voxels) | 0.1250 |" in lines
    assert "| ECE, top-label, reference foreground voxels | – |" in lines
    assert "| 1 | 0.7500 |" in lines and "| 2 | – |" in lines
    header = next(line for line in lines if line.startswith("| case |"))
    assert header.split(" | ")[-2:] == ["Dice 1", "Dice 2 |"]
    assert any(line.startswith("| a | 0.1000 |") for line in lines)
    assert "![reliability diagrams](reliability.png)" in lines
    assert "![" not in render_markdown(report_document(small_result()), image=None)


def test_figure_has_top_label_and_one_panel_per_class():
    figure = draw_reliability(small_result().diagrams)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["top-label", "classwise, class 0", "classwise, class 1", "classwise, class 2"]


def test_write_report_writes_three_files(tmp_path):
    paths = write_report(small_result(), tmp_path / "new" / "dir", sources={"probs": "x"})
    assert sorted(p.name for p in paths.values()) == ["metrics.json", "reliability.png", "report.md"]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())["summary"]["brier"] == 0.5
    assert "reliability.png" in paths["markdown"].read_text()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="exists and is not a folder"):
        write_report(small_result(), tmp_path / "file")
