"""``softlabels score`` on inputs a new user hit (issue 13): foreign output folders, NIfTI geometry, symlinks, C = 300.

Refusals follow the corpus pattern (snapshot, one-line error naming the file or value, nothing changed); the
positive cases compare with values known without the program (a perfect prediction has Dice 1 and ECE 0; HD95 of two
single voxels is their distance in millimetres).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import softlabels.metrics.functional.segmentation as segmentation_functional
import softlabels.metrics.plot as plot_module
from softlabels.cli import main
from softlabels.evaluation.scoring import score_folders
from tests.reliability._corpus import snapshot, user_error

SHAPE = (6, 5, 4)
ZOOMS = (1.5, 2.0, 2.5)
ORIGIN = (10.0, -20.0, 30.0)
C = 3


def affine(zooms=ZOOMS, origin=ORIGIN) -> np.ndarray:
    out = np.diag([*zooms, 1.0])
    out[:3, 3] = origin
    return out


def labels_map() -> np.ndarray:
    """An asymmetric label map: a flip or a permutation of it is a different array."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[0:4, 1:4, 0:3] = 1
    labels[1:2, 2:4, 1:2] = 2
    labels[5, 0, 3] = 2
    return labels


def one_hot(labels: np.ndarray, c: int = C) -> np.ndarray:
    """The perfect prediction ``(*spatial, C)`` float32."""
    return np.eye(c, dtype=np.float32)[labels]


def save(array: np.ndarray, path: Path, matrix: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, matrix), str(path))
    return path


def flipped_x(labels: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with the x axis reversed: voxel i holds old voxel n-1-i; the affine says so."""
    out = matrix.copy()
    out[:3, 0] = -matrix[:3, 0]
    out[:3, 3] = matrix[:3, 3] + (labels.shape[0] - 1) * matrix[:3, 0]
    return labels[::-1].copy(), out


def permuted_zxy(labels: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with axes (z, x, y): voxel (k, i, j) holds old voxel (i, j, k)."""
    out = matrix.copy()
    out[:3, :3] = matrix[:3, [2, 0, 1]]
    return labels.transpose(2, 0, 1).copy(), out


def world(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World coordinates of every voxel, ``(*shape, 3)``: checks the test's own geometry independently."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    return grid @ matrix[:3, :3].T + matrix[:3, 3]


def dataset(root: Path, variant: str = "flip") -> Path:
    """Prediction = one-hot of the labels on grid ``affine()``; the label file stores them flipped or permuted."""
    labels = labels_map()
    save(one_hot(labels), root / "probs" / "a.nii.gz", affine())
    stored, matrix = {"flip": flipped_x, "permute": permuted_zxy, "same": lambda x, m: (x, m)}[variant](
        labels, affine()
    )
    save(stored, root / "labels" / "a.nii.gz", matrix)
    return root


def argv(root: Path, out: Path | None = None, reference: str = "--labels", ref_dir: str = "labels") -> list[str]:
    out = root / "out" if out is None else out
    data = ["--probs", str(root / "probs"), reference, str(root / ref_dir)]
    return ["score", *data, "--output", str(out), "--no-progress"]


# ----------------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("variant", ["flip", "permute"])
def test_perfect_prediction_against_reoriented_label_scores_perfectly(tmp_path, capsys, variant):
    root = dataset(tmp_path, variant)
    labels, stored = labels_map(), nib.load(root / "labels" / "a.nii.gz")
    assert stored.shape != labels.shape or not np.array_equal(np.asarray(stored.dataobj), labels)
    by_point = {  # the test's own geometry, checked: the stored voxel at each world point holds the same label
        tuple(np.round(p, 6)): v
        for p, v in zip(
            world(stored.affine, stored.shape).reshape(-1, 3), np.asarray(stored.dataobj).reshape(-1), strict=True
        )
    }
    pairs = zip(world(affine(), labels.shape).reshape(-1, 3), labels.reshape(-1), strict=True)
    assert all(by_point[tuple(np.round(p, 6))] == v for p, v in pairs)
    result = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
    assert result.per_class["dice"] == {"1": 1.0, "2": 1.0}
    assert result.summary["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result.cases[0]["spacing"] == pytest.approx(list(ZOOMS))
    assert main(argv(root)) == 0
    doc = json.loads((root / "out" / "metrics.json").read_text())
    assert doc["per_class"]["dice"] == {"1": 1.0, "2": 1.0}
    assert doc["summary"]["ece"] == pytest.approx(0.0, abs=1e-12)


def test_raters_stored_flipped_and_permuted_agree_with_the_prediction(tmp_path):
    labels = labels_map()
    save(one_hot(labels), tmp_path / "probs" / "a.nii.gz", affine())
    stored, matrix = flipped_x(labels, affine())
    save(stored, tmp_path / "raters" / "r1" / "a.nii.gz", matrix)
    stored, matrix = permuted_zxy(labels, affine())
    save(stored, tmp_path / "raters" / "r2" / "a.nii.gz", matrix)
    result = score_folders(tmp_path / "probs", tmp_path / "raters", kind="raters", progress=False)
    assert result.per_class["dice"] == {"1": 1.0, "2": 1.0}
    assert result.summary["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result.summary["brier"] == pytest.approx(0.0, abs=1e-12)


def test_2d_slice_stored_flipped_scores_perfectly(tmp_path):
    labels = labels_map()[:, :, 1:2]  # (x, y, 1)
    save(one_hot(labels), tmp_path / "probs" / "s.nii.gz", affine())
    matrix = affine()
    matrix[:3, 1] = -matrix[:3, 1]
    matrix[:3, 3] = affine()[:3, 3] + (labels.shape[1] - 1) * affine()[:3, 1]
    save(labels[:, ::-1].copy(), tmp_path / "labels" / "s.nii.gz", matrix)
    result = score_folders(tmp_path / "probs", tmp_path / "labels", kind="labels", progress=False)
    assert result.per_class["dice"] == {"1": 1.0, "2": 1.0}
    assert result.summary["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result.cases[0]["spacing"] == pytest.approx(list(ZOOMS[:2]))


def test_hd95_uses_the_prediction_grid_spacing(tmp_path):
    zooms = (1.0, 2.0, 3.0)
    pred_labels, ref_labels = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    p, q = (1, 1, 1), (4, 3, 2)
    pred_labels[p], ref_labels[q] = 1, 1
    save(one_hot(pred_labels, 2), tmp_path / "probs" / "a.nii.gz", affine(zooms))
    stored, matrix = permuted_zxy(ref_labels, affine(zooms))
    save(stored, tmp_path / "labels" / "a.nii.gz", matrix)
    result = score_folders(tmp_path / "probs", tmp_path / "labels", kind="labels", progress=False)
    expected = float(np.linalg.norm((np.array(p) - np.array(q)) * np.array(zooms)))  # one voxel each: their distance
    assert result.per_class["hd95"]["1"] == pytest.approx(expected)
    assert result.cases[0]["spacing"] == pytest.approx(list(zooms))


def test_spacing_mismatch_is_refused(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    save(labels_map(), root / "labels" / "a.nii.gz", affine(zooms=(1.5, 2.0, 3.0)))
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, str(root / "probs" / "a.nii.gz"), str(root / "labels" / "a.nii.gz"), "2.5", "3")
    assert snapshot(tmp_path) == before


def test_origin_mismatch_is_refused(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    save(labels_map(), root / "labels" / "a.nii.gz", affine(origin=(10.0, -15.0, 30.0)))
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, str(root / "probs" / "a.nii.gz"), str(root / "labels" / "a.nii.gz"), "-15", "-20")
    assert snapshot(tmp_path) == before


def test_rater_with_other_spacing_is_refused(tmp_path, capsys):
    labels = labels_map()
    save(one_hot(labels), tmp_path / "probs" / "a.nii.gz", affine())
    save(labels, tmp_path / "raters" / "r1" / "a.nii.gz", affine())
    save(labels, tmp_path / "raters" / "r2" / "a.nii.gz", affine(zooms=(1.5, 2.2, 2.5)))
    before = snapshot(tmp_path)
    user_error(argv(tmp_path, reference="--raters", ref_dir="raters"), capsys, str(tmp_path / "raters" / "r2"), "2.2")
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------------- symlinks
def two_cases(root: Path) -> Path:
    labels = labels_map()
    for name in ("a", "b"):
        save(one_hot(labels), root / "probs" / f"{name}.nii.gz", affine())
        save(labels, root / "labels" / f"{name}.nii.gz", affine())
    return root


def test_dangling_symlinks_do_not_make_a_case_vanish(tmp_path, capsys):
    root = two_cases(tmp_path)
    for folder in ("probs", "labels"):
        (root / folder / "b.nii.gz").unlink()
        os.symlink(root / "gone" / "b.nii.gz", root / folder / "b.nii.gz")
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, str(root / "probs" / "b.nii.gz"), "broken symbolic link")
    assert snapshot(tmp_path) == before


def test_symlink_loop_is_named(tmp_path, capsys):
    root = two_cases(tmp_path)
    (root / "labels" / "b.nii.gz").unlink()
    os.symlink(root / "labels" / "b.nii.gz", root / "labels" / "b.nii.gz")
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, str(root / "labels" / "b.nii.gz"), "symbolic link loop")
    assert snapshot(tmp_path) == before


def test_folder_named_like_a_case_file_is_named(tmp_path, capsys):
    root = two_cases(tmp_path)
    (root / "labels" / "b.nii.gz").unlink()
    (root / "labels" / "b.nii.gz").mkdir()
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, str(root / "labels" / "b.nii.gz"), "is a folder")
    assert snapshot(tmp_path) == before


def test_dangling_rater_folder_is_named(tmp_path, capsys):
    labels = labels_map()
    save(one_hot(labels), tmp_path / "probs" / "a.nii.gz", affine())
    save(labels, tmp_path / "raters" / "r1" / "a.nii.gz", affine())
    os.symlink(tmp_path / "gone", tmp_path / "raters" / "r2")
    before = snapshot(tmp_path)
    user_error(argv(tmp_path, reference="--raters", ref_dir="raters"), capsys, str(tmp_path / "raters" / "r2"))
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------------- output
def test_unrelated_metrics_json_is_not_overwritten(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    (root / "out").mkdir()
    (root / "out" / "metrics.json").write_text('{"accuracy": 0.93, "note": "my training run"}\n')
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, "--output", str(root / "out"), "metrics.json")
    assert snapshot(tmp_path) == before


def test_earlier_report_beside_a_foreign_file_is_refused(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    assert main(argv(root)) == 0
    (root / "out" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, "--output", str(root / "out"), "notes.txt")
    assert snapshot(tmp_path) == before


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    (root / "out").write_text("a file")
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, "--output", str(root / "out"), "not a folder")
    assert snapshot(tmp_path) == before


def test_output_under_a_file_is_refused(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    (root / "file").write_text("a file")
    before = snapshot(tmp_path)
    user_error(argv(root, out=root / "file" / "out"), capsys, "--output", str(root / "file"))
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: permissions are not enforced")
def test_output_in_a_read_only_folder_is_refused(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    (root / "locked").mkdir()
    (root / "locked").chmod(0o500)
    try:
        before = snapshot(tmp_path)
        user_error(argv(root, out=root / "locked" / "out"), capsys, "--output", str(root / "locked"), "writ")
        assert snapshot(tmp_path) == before
    finally:
        (root / "locked").chmod(0o700)


def test_output_is_checked_before_any_case_is_read(tmp_path, capsys, monkeypatch):
    import softlabels.evaluation.scoring as score_module

    root = dataset(tmp_path, "same")
    (root / "out").mkdir()
    (root / "out" / "metrics.json").write_text('{"accuracy": 0.93}\n')

    def no_scoring(*args, **kwargs):
        raise AssertionError("cases were scored before --output was checked")

    monkeypatch.setattr(score_module, "score_folders", no_scoring)
    before = snapshot(tmp_path)
    user_error(argv(root), capsys, "--output", "metrics.json")
    assert snapshot(tmp_path) == before


def test_rerun_into_its_own_output_replaces_exactly_its_files(tmp_path, capsys):
    root = dataset(tmp_path, "same")
    assert main([*argv(root), "--n-bins", "5"]) == 0
    assert sorted(p.name for p in (root / "out").iterdir()) == ["metrics.json", "reliability.png", "report.md"]
    (root / "out" / ".metrics.json.k2j1x.tmp").write_bytes(b"half")  # left by a killed run
    old = {p.name: p.read_bytes() for p in (root / "out").iterdir()}
    assert main([*argv(root), "--n-bins", "7"]) == 0
    new = {p.name: p.read_bytes() for p in (root / "out").iterdir()}
    assert sorted(new) == ["metrics.json", "reliability.png", "report.md"]
    assert json.loads(new["metrics.json"])["provenance"]["n_bins"] == 7
    assert new["metrics.json"] != old["metrics.json"] and new["report.md"] != old["report.md"]


# ----------------------------------------------------------------------------------------------------- many classes
def test_300_classes_score_with_a_bounded_figure_and_no_per_class_work_on_empty_classes(tmp_path, monkeypatch):
    c, shape = 300, (4, 4, 2)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, size=shape).astype(np.int16)
    logits = rng.normal(size=(*shape, c))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    save(probs, tmp_path / "probs" / "a.nii.gz", np.eye(4))
    save(labels, tmp_path / "labels" / "a.nii.gz", np.eye(4))
    panels, distances = [], []
    original_plot, original_distance = plot_module.plot_reliability_diagram, segmentation_functional._surface_distance

    def counting_plot(diagram, **kwargs):
        row = kwargs.get("row", 0)
        panels.append((diagram.mode, diagram.classes[row] if diagram.classes else row))
        return original_plot(diagram, **kwargs)

    def counting_distance(*args, **kwargs):
        distances.append(1)
        return original_distance(*args, **kwargs)

    monkeypatch.setattr(plot_module, "plot_reliability_diagram", counting_plot)
    monkeypatch.setattr(segmentation_functional, "_surface_distance", counting_distance)
    assert main(argv(tmp_path)) == 0
    pred = probs.argmax(-1)
    both = set(np.unique(pred)) & set(np.unique(labels)) - {0}
    assert len(distances) == len(both)  # HD95 only for classes present in both masks, not for the 299 classes
    assert len(panels) <= 9 and panels[0] == ("top_label", 0)
    with Image.open(tmp_path / "out" / "reliability.png") as image:
        assert image.size[0] <= 2200 and image.size[1] <= 1000
    shown = sorted(row for mode, row in panels if mode == "classwise")
    counts = np.bincount(labels.reshape(-1), minlength=c)
    order = sorted(range(c), key=lambda k: (-counts[k], k))[:8]
    assert shown == sorted(order)  # the 8 classes with the most reference voxels (ties: the lower index)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "8 of 300 classes" in markdown and ", ".join(str(k) for k in sorted(order)) in markdown
