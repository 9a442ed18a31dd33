"""Report writing: atomic files, strict JSON with provenance, Markdown tables, the reliability figure."""

from __future__ import annotations

import json
import math
import os

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import softlabels
from softlabels.evaluation.report_files import (
    atomic_write,
    check_report_folder,
    draw_reliability,
    figure_caption,
    render_markdown,
    report_document,
    write_report,
)
from softlabels.evaluation.scoring import ScoreResult
from softlabels.metrics.functional.calibration import reliability_diagram


def small_result() -> ScoreResult:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(50, 3, generator=g), 1)
    target = torch.randint(0, 3, (50,), generator=g)
    diagrams = {
        "top_label": reliability_diagram(probs, target, n_bins=5),
        "classwise": reliability_diagram(probs, target, n_bins=5, mode="classwise"),
    }
    summary = {"ece": 0.125, "ece_foreground": math.nan, "brier": 0.5, "dice": 0.75}
    cases = [
        {
            "case": "a",
            "ece": 0.1,
            "ece_foreground": math.nan,
            "dice": 0.5,
            "per_class": {"dice": {"1": 0.5, "2": math.nan}},
        },
        {"case": "b", "ece": 0.15, "ece_foreground": 0.2, "dice": 0.625, "per_class": {"dice": {"1": 1.0, "2": 0.25}}},
    ]
    settings = {"reference": "labels", "num_classes": 3, "n_bins": 5, "classes": ["1", "2"]}
    return ScoreResult(summary, cases, diagrams, settings, {"dice": {"1": 0.75, "2": math.nan}})


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
    assert back["summary"]["ece_foreground"] is None and back["summary"]["dice"] == 0.75
    assert back["per_class"]["dice"] == {"1": 0.75, "2": None}
    assert back["cases"][0]["ece_foreground"] is None and back["cases"][1]["ece_foreground"] == 0.2


def test_markdown_tables():
    text = render_markdown(report_document(small_result()), image="reliability.png")
    lines = text.splitlines()
    assert "| ECE, top-label (pooled) | `ece` | 0.1250 |" in lines
    assert "| ECE, top-label, reference foreground | `ece_foreground` | – |" in lines
    assert "| 1 | 0.7500 |" in lines and "| 2 | – |" in lines
    header = next(line for line in lines if line.startswith("| case |"))
    assert header.split(" | ")[-2:] == ["Dice argmax 1", "Dice argmax 2 |"]
    assert any(line.startswith("| a | 0.1000 |") for line in lines)
    assert "![reliability diagrams](reliability.png)" in lines
    assert "![" not in render_markdown(report_document(small_result()), image=None)


def test_class_names_head_the_columns_and_the_dice_note_says_what_is_compared():
    from softlabels.data.prediction_files import example_folder
    from softlabels.evaluation.scoring import score_folders

    root = example_folder()
    names = ["background", "liver", "tumour"]
    result = score_folders(root / "probs", root / "labels", kind="labels", class_names=names, progress=False)
    doc = report_document(result)
    assert doc["provenance"]["class_names"] == names and set(doc["per_class"]["soft_dice"]) == {"liver", "tumour"}
    lines = render_markdown(doc, image=None).splitlines()
    assert any(line.startswith("Classes: 3 (background, liver, tumour);") for line in lines)
    header = next(line for line in lines if line.startswith("| case |")).strip("| ").split(" | ")
    assert {"Dice argmax liver", "soft Dice tumour", "HD95 liver"} <= set(header)
    assert "| Dice (argmax vs argmax of the reference) | `dice` |" in "\n".join(lines)
    assert any("`soft_dice` the probabilities with its one-hot map" in line for line in lines)  # a label map
    soft = score_folders(root / "probs", root / "raters", kind="raters", progress=False)
    text = render_markdown(report_document(soft), image=None)
    assert "`soft_dice` the probabilities with the soft reference." in text and "Classes: 3;" in text


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
    with pytest.raises(ValueError, match=r"--output '.*file' exists and is not a folder"):
        write_report(small_result(), tmp_path / "file")


def many_class_diagrams(c: int = 20):
    """Classwise data where class k is the label of a number of samples known in advance (k = 3 most often)."""
    g = torch.Generator().manual_seed(1)
    sizes = [(7 * k) % 11 + (40 if k == 3 else 0) for k in range(c)]
    target = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    probs = torch.softmax(2 * torch.randn(len(target), c, generator=g), 1)
    diagrams = {
        "top_label": reliability_diagram(probs, target, n_bins=5),
        "classwise": reliability_diagram(probs, target, n_bins=5, mode="classwise"),
    }
    return diagrams, np.array(sizes)


def test_many_classes_draw_the_most_frequent_in_a_bounded_figure():
    diagrams, sizes = many_class_diagrams(20)
    figure = draw_reliability(diagrams)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    expected = sorted(sorted(range(20), key=lambda k: (-sizes[k], k))[:8])
    assert titles == ["top-label"] + [f"classwise, class {k}" for k in expected]
    width, height = figure.get_size_inches() * 100
    assert width <= 2100 and height <= 900
    caption = figure_caption(diagrams)
    assert caption.startswith("Top-label diagram; classwise diagrams of 8 of 20 classes")
    assert caption.endswith(": " + ", ".join(map(str, expected)) + ".")
    assert figure_caption(small_result().diagrams) == "Top-label diagram; classwise diagrams of all 3 classes."


def write_earlier_report(folder):
    write_report(small_result(), folder)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_check_report_folder_accepts_new_empty_and_earlier_report_folders(tmp_path):
    assert check_report_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    assert check_report_folder(tmp_path / "empty") == tmp_path / "empty"
    write_earlier_report(tmp_path / "earlier")
    (tmp_path / "earlier" / ".report.md.x81k.tmp").write_bytes(b"half")
    assert check_report_folder(tmp_path / "earlier") == tmp_path / "earlier"
    write_report(small_result(), tmp_path / "earlier")
    assert sorted(p.name for p in (tmp_path / "earlier").iterdir()) == ["metrics.json", "reliability.png", "report.md"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("metrics.json", b'{"accuracy": 0.9}'),  # another program's metrics
        ("metrics.json", b"[1, 2]"),
        ("metrics.json", b"not json"),
        ("report.md", b"# my notes"),  # beside a report's metrics.json: still not ours
        ("reliability.png", b"GIF89a"),
        ("notes.txt", b"mine"),
        (".hidden", b""),
    ],
)
def test_check_report_folder_refuses_other_files(tmp_path, name, content):
    out = tmp_path / "out"
    write_earlier_report(out)
    (out / name).write_bytes(content)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=rf"--output '{out}' holds '{name}', which is not part of an earlier"):
        check_report_folder(out)
    with pytest.raises(ValueError, match=rf"holds '{name}'"):
        write_report(small_result(), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_files_without_a_report_metrics_json_are_not_ours(tmp_path):
    out = tmp_path / "out"
    write_earlier_report(out)
    (out / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"holds 'reliability.png'"):
        check_report_folder(out)


def test_links_and_folders_named_like_report_files_are_not_ours(tmp_path):
    write_earlier_report(tmp_path / "earlier")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(tmp_path / "earlier" / "metrics.json", out / "metrics.json")  # replacing it would replace the link
    with pytest.raises(ValueError, match=r"holds 'metrics.json'"):
        check_report_folder(out)
    (out / "metrics.json").unlink()
    (out / "metrics.json").mkdir()
    with pytest.raises(ValueError, match=r"holds 'metrics.json'"):
        check_report_folder(out)


def test_check_report_folder_refuses_files_and_paths_under_files(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--output '.*file' exists and is not a folder"):
        check_report_folder(tmp_path / "file")
    with pytest.raises(ValueError, match=r"--output '.*file/out' cannot be created: '.*file' is a file"):
        write_report(small_result(), tmp_path / "file" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
