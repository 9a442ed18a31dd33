"""The scoring loop: dataset and per-case values against float64 NumPy references and the metrics run directly."""

from __future__ import annotations

import gc
import math
import weakref

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

import softlabels.evaluation.scoring as score_module
from softlabels.data.prediction_files import list_cases
from softlabels.evaluation.scoring import nanmean, score_cases, score_folders
from softlabels.metrics.segmentation import HausdorffDistance95
from tests.metrics._reference import brier_ref, calibration_error_ref, nll_ref

SHAPE = (9, 8, 6)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def make_cases(rng: np.random.Generator, n: int = 3, c: int = 3):
    """(N, C, *S) float32 probs and (N, *S) labels: blocky structures plus noisy, partly wrong predictions."""
    labels = np.zeros((n, *SHAPE), dtype=np.int64)
    for i in range(n):
        x0, y0 = rng.integers(1, 3, 2)
        labels[i, x0 : x0 + 6, y0 : y0 + 5, 1:5] = 1
        labels[i, x0 + 2 : x0 + 4, y0 + 1 : y0 + 3, 2:4] = c - 1
    onehot = np.eye(c)[labels].transpose(0, 4, 1, 2, 3)
    probs = softmax(3.0 * onehot + rng.normal(0, 1.2, onehot.shape), 1).astype(np.float32)
    return probs, labels


def write_nifti(folder, name, array, zooms=(1.0, 1.0, 1.0)):
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(folder / f"{name}.nii.gz"))


def write_dataset(root, probs, labels, *, npz=False):
    for i in range(len(probs)):
        name = f"case{i}"
        if npz:
            (root / "probs").mkdir(parents=True, exist_ok=True)
            np.savez_compressed(root / "probs" / f"{name}.npz", probabilities=probs[i].transpose(0, 3, 2, 1))
        else:
            write_nifti(root / "probs", name, np.moveaxis(probs[i], 0, -1))
        write_nifti(root / "labels", name, labels[i].astype(np.uint8))


def band_ref(labels: np.ndarray, width: float) -> np.ndarray:
    band = np.zeros(labels.shape, dtype=bool)
    for n in range(labels.shape[0]):
        for value in np.unique(labels[n]):
            inside = labels[n] == value
            if not inside.all():
                band[n] |= inside & (distance_transform_edt(inside) <= width)
    return band


def dice_ref(pred: np.ndarray, gt: np.ndarray, k: int) -> float:
    a, b = pred == k, gt == k
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else 2.0 * (a & b).sum() / denom


@pytest.fixture
def dataset(tmp_path):
    probs, labels = make_cases(np.random.default_rng(0))
    write_dataset(tmp_path, probs, labels)
    return tmp_path, probs, labels


def test_dataset_values_match_numpy_reference(dataset):
    root, probs, labels = dataset
    result = score_folders(root / "probs", root / "labels", kind="labels", n_bins=10, progress=False)
    s = result.summary
    assert s["ece"] == pytest.approx(calibration_error_ref(probs, labels, n_bins=10), abs=1e-9)
    assert s["ece_classwise"] == pytest.approx(
        calibration_error_ref(probs, labels, n_bins=10, mode="classwise"), abs=1e-9
    )
    assert s["mce"] == pytest.approx(calibration_error_ref(probs, labels, n_bins=10, norm="max"), abs=1e-9)
    fg = calibration_error_ref(probs, labels, n_bins=10, mask=labels != 0)
    assert s["ece_foreground"] == pytest.approx(fg, abs=1e-9)
    band = calibration_error_ref(probs, labels, n_bins=10, mask=band_ref(labels, 2.0))
    assert s["ece_boundary"] == pytest.approx(band, abs=1e-9)
    assert s["brier"] == pytest.approx(brier_ref(probs, labels), abs=1e-9)
    assert s["nll"] == pytest.approx(nll_ref(probs, labels), abs=1e-7)
    pred = probs.argmax(1)
    for k in (1, 2):
        expected = np.mean([dice_ref(pred[i], labels[i], k) for i in range(len(labels))])
        assert result.per_class["dice"][str(k)] == pytest.approx(expected, abs=1e-12)
    hd = HausdorffDistance95(3)
    hd.update(torch.from_numpy(probs), torch.from_numpy(labels))
    assert [result.per_class["hd95"]["1"], result.per_class["hd95"]["2"]] == pytest.approx(hd.compute().tolist())
    assert "thresholded_dice" not in s


def test_per_case_rows_match_numpy_reference(dataset):
    root, probs, labels = dataset
    result = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
    assert [r["case"] for r in result.cases] == ["case0", "case1", "case2"]
    per_case = []
    for i, row in enumerate(result.cases):
        ece = calibration_error_ref(probs[i : i + 1], labels[i : i + 1])
        per_case.append(ece)
        assert row["ece"] == pytest.approx(ece, abs=1e-9)
        assert row["brier"] == pytest.approx(brier_ref(probs[i : i + 1], labels[i : i + 1]), abs=1e-9)
        assert row["per_class"]["dice"]["1"] == pytest.approx(dice_ref(probs[i].argmax(0), labels[i], 1))
        assert row["spacing"] == [1.0, 1.0, 1.0]
    assert result.summary["ece_case_mean"] == pytest.approx(np.mean(per_case), abs=1e-9)
    assert result.settings["num_classes"] == 3 and result.settings["classes"] == ["1", "2"]


def test_nifti_and_nnunet_npz_folders_agree(tmp_path):
    probs, labels = make_cases(np.random.default_rng(1))
    write_dataset(tmp_path / "nii", probs, labels)
    write_dataset(tmp_path / "npz", probs, labels, npz=True)
    a = score_folders(tmp_path / "nii" / "probs", tmp_path / "nii" / "labels", kind="labels", progress=False)
    b = score_folders(tmp_path / "npz" / "probs", tmp_path / "npz" / "labels", kind="labels", progress=False)
    assert a.summary == b.summary
    assert [r["ece"] for r in a.cases] == [r["ece"] for r in b.cases]


def test_rater_folder_soft_reference(tmp_path):
    rng = np.random.default_rng(2)
    probs, labels = make_cases(rng, n=2)
    raters = np.stack([np.where(rng.uniform(size=labels.shape) < 0.1, 0, labels) for _ in range(3)])
    for i in range(len(probs)):
        write_nifti(tmp_path / "probs", f"c{i}", np.moveaxis(probs[i], 0, -1))
        for r in range(3):
            write_nifti(tmp_path / "raters" / f"rater{r}", f"c{i}", raters[r, i].astype(np.uint8))
    result = score_folders(tmp_path / "probs", tmp_path / "raters", kind="raters", progress=False)
    soft = np.eye(3)[raters].mean(0).transpose(0, 4, 1, 2, 3)
    s = result.summary
    assert s["ece"] == pytest.approx(calibration_error_ref(probs, soft), abs=1e-6)
    assert s["brier"] == pytest.approx(brier_ref(probs, soft), abs=1e-6)
    hard = soft.argmax(1)
    expected = np.mean([dice_ref(probs[i].argmax(0), hard[i], 2) for i in range(2)])
    assert result.per_class["dice"]["2"] == pytest.approx(expected)
    qubiq = result.per_class["thresholded_dice"]
    assert set(qubiq) == {"1", "2"} and 0 < qubiq["1"] <= 1
    assert set(result.cases[0]["per_class"]["thresholded_dice"]) == {"1", "2"}


def test_ignore_index(tmp_path):
    probs, labels = make_cases(np.random.default_rng(3), n=2)
    labels[:, :2] = 255
    write_dataset(tmp_path, probs, labels)
    cases = list_cases(tmp_path / "probs", tmp_path / "labels", kind="labels")
    result = score_cases(cases, kind="labels", ignore_index=255, progress=False)
    keep = labels != 255
    expected = calibration_error_ref(probs, np.where(keep, labels, 0), mask=keep)
    assert result.summary["ece"] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match=r"case 'case0': `target` of calibration_pass must hold labels in \[0, 2\]"):
        score_cases(cases, kind="labels", progress=False)


def test_spacing_from_header_and_override(tmp_path):
    probs, labels = make_cases(np.random.default_rng(4), n=1)
    write_nifti(tmp_path / "probs", "a", np.moveaxis(probs[0], 0, -1), zooms=(2.0, 2.0, 2.0))
    write_nifti(tmp_path / "labels", "a", labels[0].astype(np.uint8), zooms=(2.0, 2.0, 2.0))
    cases = list_cases(tmp_path / "probs", tmp_path / "labels", kind="labels")
    header = score_cases(cases, kind="labels", progress=False)
    unit = score_cases(cases, kind="labels", spacing=(1.0, 1.0, 1.0), progress=False)
    assert header.cases[0]["spacing"] == [2.0, 2.0, 2.0]
    for k in ("1", "2"):
        assert header.per_class["hd95"][k] == pytest.approx(2 * unit.per_class["hd95"][k])
    with pytest.raises(ValueError, match=r"case 'a':.*spacing"):
        score_cases(cases, kind="labels", spacing=(1.0, 1.0), progress=False)


def test_bad_probabilities_name_the_case(tmp_path):
    probs, labels = make_cases(np.random.default_rng(5), n=2)
    probs[1] *= 1.5
    write_dataset(tmp_path, probs, labels)
    with pytest.raises(ValueError, match=r"case 'case1': .*must be probabilities in \[0, 1\]|case 'case1': .*sum to 1"):
        score_folders(tmp_path / "probs", tmp_path / "labels", kind="labels", progress=False)


def test_channel_count_must_not_change(tmp_path):
    probs, labels = make_cases(np.random.default_rng(6), n=1)
    write_dataset(tmp_path, probs, labels)
    binary = np.moveaxis(probs[0][1:].sum(0, keepdims=True), 0, -1)[..., 0]
    write_nifti(tmp_path / "probs", "case9", binary)
    write_nifti(tmp_path / "labels", "case9", (labels[0] > 0).astype(np.uint8))
    with pytest.raises(ValueError, match=r"case 'case9'.*1 class channel\(s\); expected num_classes=3"):
        score_folders(tmp_path / "probs", tmp_path / "labels", kind="labels", progress=False)


def test_binary_single_channel_predictions(tmp_path):
    probs, labels = make_cases(np.random.default_rng(7), n=2, c=2)
    for i in range(2):
        write_nifti(tmp_path / "probs", f"b{i}", probs[i, 1])
        write_nifti(tmp_path / "labels", f"b{i}", labels[i].astype(np.uint8))
    result = score_folders(tmp_path / "probs", tmp_path / "labels", kind="labels", progress=False)
    assert result.settings["num_classes"] == 1 and list(result.per_class["dice"]) == ["1"]
    assert result.summary["ece"] == pytest.approx(calibration_error_ref(probs, labels), abs=1e-6)


def test_only_one_case_alive_at_a_time(dataset, monkeypatch):
    root, _, _ = dataset
    alive: list[weakref.ref] = []
    original = score_module.load_case

    def tracking_load_case(*args, **kwargs):
        gc.collect()
        assert all(ref() is None for ref in alive), "a previous case is still referenced"
        case = original(*args, **kwargs)
        alive.append(weakref.ref(case))
        return case

    monkeypatch.setattr(score_module, "load_case", tracking_load_case)
    result = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
    assert len(alive) == len(result.cases) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_bins": 0}, "`n_bins` of score_cases must be an int >= 1; got 0"),
        ({"boundary_width": -1}, "`boundary_width` of score_cases must be a positive number; got -1"),
        ({"num_classes": 0}, "`num_classes` of score_cases must be an int >= 1 or None; got 0"),
    ],
)
def test_bad_options(dataset, options, message):
    root, _, _ = dataset
    cases = list_cases(root / "probs", root / "labels", kind="labels")
    with pytest.raises(ValueError, match=message):
        score_cases(cases, kind="labels", **options)


def test_soft_reference_rejects_ignore_index_and_empty_case_list():
    with pytest.raises(ValueError, match="`ignore_index` of score_cases applies to label-map references only"):
        score_cases([], kind="raters", ignore_index=0)
    with pytest.raises(ValueError, match="at least one case"):
        score_cases([], kind="labels")


def test_nanmean():
    assert nanmean([1.0, math.nan, 2.0]) == 1.5
    assert math.isnan(nanmean([math.nan]))


def test_soft_probability_reference_stored_with_reversed_axes(tmp_path):
    probs, _ = make_cases(np.random.default_rng(8), n=1)
    matrix = np.diag([1.0, 2.0, 3.0, 1.0])
    write_nifti(tmp_path / "probs", "a", np.moveaxis(probs[0], 0, -1), zooms=(1.0, 2.0, 3.0))
    reversed_matrix = matrix @ np.array([[0, 0, 1, 0], [0, -1, 0, SHAPE[1] - 1], [1, 0, 0, 0], [0, 0, 0, 1]])
    stored = np.moveaxis(probs[0], 0, -1)[:, ::-1].transpose(2, 1, 0, 3)  # voxel (k, j, i) = (i, n_y - 1 - j, k)
    (tmp_path / "ref").mkdir()
    nib.save(nib.Nifti1Image(stored.copy(), reversed_matrix), str(tmp_path / "ref" / "a.nii.gz"))
    result = score_folders(tmp_path / "probs", tmp_path / "ref", kind="ref_probs", progress=False)
    assert result.summary["ece"] == pytest.approx(0.0, abs=1e-7)
    assert result.summary["brier"] == pytest.approx(0.0, abs=1e-12)
    assert result.per_class["dice"] == {"1": 1.0, "2": 1.0} and result.summary["dice"] == 1.0


def soft_dice_ref(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(C - 1,)`` soft Dice 2 Σ min(p, q) / (Σ p + Σ q) of one case ``(C, *S)`` per foreground class, float64."""
    p, q = p.astype(np.float64).reshape(len(p), -1)[1:], q.astype(np.float64).reshape(len(q), -1)[1:]
    return 2 * np.minimum(p, q).sum(1) / (p.sum(1) + q.sum(1))


def test_soft_dice_against_labels_and_raters_per_case_per_class_and_dataset(dataset, tmp_path):
    root, probs, labels = dataset
    result = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
    onehot = np.eye(3)[labels].transpose(0, 4, 1, 2, 3)
    p = probs.astype(np.float64)
    classic = 2 * (p * onehot).sum((2, 3, 4)) / (p.sum((2, 3, 4)) + onehot.sum((2, 3, 4)))  # 2 Σpq / (Σp + Σq)
    for i, row in enumerate(result.cases):
        assert list(row["per_class"]["soft_dice"].values()) == pytest.approx(classic[i, 1:], abs=1e-12)
        assert row["soft_dice"] == pytest.approx(classic[i, 1:].mean(), abs=1e-12)
    assert result.summary["soft_dice"] == pytest.approx(classic[:, 1:].mean(), abs=1e-12)
    assert list(result.per_class["soft_dice"].values()) == pytest.approx(classic[:, 1:].mean(0), abs=1e-12)
    assert result.settings["reference_form"] == "hard"
    rng = np.random.default_rng(9)
    raters = np.stack([np.where(rng.uniform(size=labels.shape) < 0.2, 0, labels) for _ in range(3)])
    for i in range(len(probs)):
        for r in range(3):
            write_nifti(tmp_path / "raters" / f"rater{r}", f"case{i}", raters[r, i].astype(np.uint8))
    soft = np.eye(3)[raters].mean(0).transpose(0, 4, 1, 2, 3)
    result = score_folders(root / "probs", tmp_path / "raters", kind="raters", progress=False)
    expected = np.stack([soft_dice_ref(probs[i], soft[i]) for i in range(len(probs))])
    # the rater mean is read as float32 (1/3 is not exact there): agreement to float32 precision
    assert list(result.per_class["soft_dice"].values()) == pytest.approx(expected.mean(0), abs=1e-6)
    assert result.summary["soft_dice"] == pytest.approx(expected.mean(), abs=1e-6)
    assert result.settings["reference_form"] == "soft"


def test_class_names_key_the_per_class_values_and_are_recorded(dataset):
    root, _, _ = dataset
    plain = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
    names = ["background", "liver", "tumour"]
    named = score_folders(root / "probs", root / "labels", kind="labels", class_names=names, progress=False)
    for metric, values in plain.per_class.items():
        assert named.per_class[metric] == pytest.approx(dict(zip(names[1:], values.values(), strict=True)))
    assert list(named.cases[0]["per_class"]["dice"]) == ["liver", "tumour"]
    assert named.settings["class_names"] == names and named.settings["classes"] == ["liver", "tumour"]
    assert plain.settings["class_names"] is None and plain.summary == named.summary


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["bg", "liver"], r"`class_names` of Scoring must be 3 names.*got 2: \['bg', 'liver'\]"),
        (["bg", "liver", "liver"], r"distinct non-empty strings; got \['bg', 'liver', 'liver'\]"),
        (["bg", "", "x"], "distinct non-empty strings"),
        ("bg,liver,tumour", "must be a sequence of names; got 'bg,liver,tumour'"),
    ],
)
def test_bad_class_names_are_one_clear_error(dataset, names, message):
    root, _, _ = dataset
    with pytest.raises((ValueError, TypeError), match=message):
        score_folders(root / "probs", root / "labels", kind="labels", class_names=names, progress=False)


def test_a_single_channel_prediction_takes_two_class_names(tmp_path):
    probs, labels = make_cases(np.random.default_rng(7), n=1, c=2)
    write_nifti(tmp_path / "probs", "b0", probs[0, 1])
    write_nifti(tmp_path / "labels", "b0", labels[0].astype(np.uint8))
    result = score_folders(tmp_path / "probs", tmp_path / "labels", kind="labels", class_names=["bg", "nodule"])
    assert list(result.per_class["soft_dice"]) == ["nodule"]
