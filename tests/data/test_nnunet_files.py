"""nnU-Net prediction folders: files the real nnU-Net v2 wrote (scripts/make_nnunet_fixtures.py), scored by hand.

``labels/``: softmax over 3 classes, SimpleITK geometry in the ``.pkl``; ``raters/``: nested "at least k of 3"
regions (one sigmoid each) of a dataset made by ``softlabels nnunet convert``, predicted through
``NibabelIOWithReorient`` (the ``.npz`` in RAS order, the references with a flipped x axis).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from softlabels.cli import main
from softlabels.data.nnunet_files import check_prediction_folder, nnunet_prediction, read_properties
from softlabels.data.prediction_files import list_cases, load_case, read_probs
from softlabels.evaluation.scoring import score_folders

FIXTURES = Path(__file__).parent / "nnunet_predictions"
LABELS, RATERS = FIXTURES / "labels", FIXTURES / "raters"
NNUNET_FILES = {"dataset.json", "plans.json", "predict_from_raw_data_args.json"}


def npz(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return data["probabilities"].astype(np.float64)


def trusted_properties(path: Path) -> dict:
    with path.open("rb") as file:  # our own fixture, written by nnU-Net: plain pickle is fine here
        return pickle.load(file)


def cases(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".npz")] for p in (folder / "probs").glob("*.npz"))


def top_label_ece(probs: np.ndarray, onehot: np.ndarray, n_bins: int = 15) -> float:
    """docs/metrics.md: bin ``max(ceil(r·M) − 1, 0)``, ECE = Σ |B_m|/n · |mean outcome − mean confidence|."""
    top = probs.argmax(0)
    conf = np.take_along_axis(probs, top[None], 0)[0].ravel()
    outcome = np.take_along_axis(onehot, top[None], 0)[0].ravel()
    bins = np.maximum(np.ceil(conf * n_bins) - 1, 0).astype(int)
    return sum(
        abs(outcome[bins == m].mean() - conf[bins == m].mean()) * (bins == m).sum() / conf.size for m in np.unique(bins)
    )


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def copy_fixture(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def test_the_fixtures_are_nnunet_prediction_folders():
    for folder in (LABELS, RATERS):
        names = {p.name for p in (folder / "probs").iterdir()}
        assert NNUNET_FILES <= names, folder
        for case in cases(folder):
            assert {f"{case}.npz", f"{case}.pkl", f"{case}.nii.gz"} <= names
    assert json.loads((RATERS / "probs" / "dataset.json").read_text())["softlabels_encoding"]["levels"] == 3
    assert sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()) < 200_000


def test_npz_axes_are_the_nifti_axes_reversed_as_nnunet_writes_its_segmentation():
    """nnU-Net's own segmentation (argmax of its probabilities, SimpleITK, (x, y, 1) NIfTI) fixes the axis order."""
    for case in cases(LABELS):
        probs = npz(LABELS / "probs" / f"{case}.npz")  # (C, z, y, x) = (3, 1, 32, 40)
        seg = nib.load(LABELS / "probs" / f"{case}.nii.gz")
        assert np.array_equal(probs.argmax(0), np.asarray(seg.dataobj).transpose(2, 1, 0))
        read, spacing = read_probs(LABELS / "probs" / f"{case}.npz")
        assert read.shape == (3, *seg.shape[:2])
        np.testing.assert_array_equal(read, probs[:, 0].transpose(0, 2, 1).astype(np.float32))
        stuff = trusted_properties(LABELS / "probs" / f"{case}.pkl")["sitk_stuff"]
        assert spacing == pytest.approx(stuff["spacing"][:2])


def test_pkl_affine_is_the_affine_of_nnunets_segmentation():
    for folder in (LABELS, RATERS):
        for case in cases(folder):
            probs = npz(folder / "probs" / f"{case}.npz")[:, ::-1].transpose(0, 3, 2, 1)  # (C, x, y, 1)
            out = nnunet_prediction(folder / "probs" / f"{case}.npz", probs.astype(np.float32))
            seg = nib.load(folder / "probs" / f"{case}.nii.gz")
            # SimpleITK: the segmentation is on the npz's grid; reoriented: on the original grid, RAS-reoriented
            expected = seg if folder is LABELS else seg.as_reoriented(nib.orientations.io_orientation(seg.affine))
            np.testing.assert_allclose(out.affine, expected.affine, atol=1e-5)
            assert out.spacing == pytest.approx(expected.header.get_zooms()[:3], abs=1e-6)


def test_softmax_scores_equal_numpy_by_hand():
    result = score_folders(LABELS / "probs", LABELS / "labels", kind="labels", progress=False)
    assert [row["case"] for row in result.cases] == cases(LABELS)
    for row in result.cases:
        case = row["case"]
        probs = npz(LABELS / "probs" / f"{case}.npz")[:, 0].transpose(0, 2, 1)  # (C, x, y)
        label = np.asarray(nib.load(LABELS / "labels" / f"{case}.nii.gz").dataobj)[:, :, 0].astype(int)
        onehot = (label[None] == np.arange(3)[:, None, None]).astype(np.float64)
        assert row["ece"] == pytest.approx(top_label_ece(probs, onehot), abs=1e-6)
        assert row["brier"] == pytest.approx(((probs - onehot) ** 2).sum(0).mean(), abs=1e-6)
        for k in (1, 2):
            assert row["per_class"]["dice"][str(k)] == pytest.approx(dice(probs.argmax(0) == k, label == k))
        assert row["spacing"] == pytest.approx(
            trusted_properties(LABELS / "probs" / f"{case}.pkl")["sitk_stuff"]["spacing"][:2]
        )


def test_spacing_from_the_pkl_reaches_hd95():
    def hd95(**options) -> list[float]:
        result = score_folders(LABELS / "probs", LABELS / "labels", kind="labels", progress=False, **options)
        return [row["hd95"] for row in result.cases]

    stuff = trusted_properties(LABELS / "probs" / f"{cases(LABELS)[0]}.pkl")["sitk_stuff"]
    from_pkl, given, unit = hd95(), hd95(spacing=stuff["spacing"][:2]), hd95(spacing=(1.0, 1.0))
    assert from_pkl == pytest.approx(given)
    assert any(h > 0 for h in from_pkl) and from_pkl != pytest.approx(unit)


def test_without_the_pkl_there_is_no_geometry(tmp_path):
    folder = copy_fixture(LABELS, tmp_path)
    for pkl in (folder / "probs").glob("*.pkl"):
        pkl.unlink()
    result = score_folders(folder / "probs", folder / "labels", kind="labels", progress=False)
    assert [row["spacing"] for row in result.cases] == [
        pytest.approx(nib.load(folder / "labels" / f"{c}.nii.gz").header.get_zooms()[:2]) for c in cases(LABELS)
    ]


def test_the_reference_grid_is_checked_against_the_pkl(tmp_path):
    folder = copy_fixture(LABELS, tmp_path)
    case = cases(LABELS)[0]
    path = folder / "labels" / f"{case}.nii.gz"
    image = nib.load(path)
    labels = np.asarray(image.dataobj)
    # the same map stored with its axes swapped and its affine to match: brought back onto the prediction's grid
    swapped = image.affine[:, [1, 0, 2, 3]]
    nib.save(nib.Nifti1Image(labels.transpose(1, 0, 2), swapped), path)
    before = score_folders(LABELS / "probs", LABELS / "labels", kind="labels", progress=False).cases[0]
    after = score_folders(folder / "probs", folder / "labels", kind="labels", progress=False).cases[0]
    assert after["ece"] == before["ece"] and after["dice"] == before["dice"]
    shifted = image.affine.copy()
    shifted[:3, 3] += (5.0, 0.0, 0.0)
    nib.save(nib.Nifti1Image(labels, shifted), path)
    with pytest.raises(ValueError, match="different origins") as err:
        score_folders(folder / "probs", folder / "labels", kind="labels", progress=False)
    assert "\n" not in str(err.value) and f"{case}.npz" in str(err.value) and f"{case}.nii.gz" in str(err.value)


def test_regions_are_decoded_to_the_mean_region_probability():
    for case in cases(RATERS):
        regions = npz(RATERS / "probs" / f"{case}.npz")  # (3, 1, y, x): P(at least k of 3 raters)
        assert regions.shape[0] == 3 and not np.allclose(regions.sum(0), 1.0)
        loaded = load_case(list_cases(RATERS / "probs", RATERS / "raters", kind="raters")[cases(RATERS).index(case)],
                           kind="raters")  # fmt: skip
        p = regions.mean(0)[0].T
        np.testing.assert_allclose(loaded.probs[0].numpy(), np.stack([1 - p, p]), atol=1e-6)
        # nnU-Net's segmentation: the region "at least 1 of 3" above 0.5 (on its original, x-flipped, grid)
        seg = nib.load(RATERS / "probs" / f"{case}.nii.gz")
        ras = seg.as_reoriented(nib.orientations.io_orientation(seg.affine))
        assert np.array_equal(np.asarray(ras.dataobj)[:, :, 0] > 0, regions[0, 0].T > 0.5)


def test_region_scores_against_the_raters_equal_numpy_by_hand():
    result = score_folders(RATERS / "probs", RATERS / "raters", kind="raters", progress=False)
    for row in result.cases:
        case = row["case"]
        p = npz(RATERS / "probs" / f"{case}.npz").mean(0)[0].T  # RAS (x, y)
        maps = []
        for rater in sorted((RATERS / "raters").iterdir()):
            image = nib.load(rater / f"{case}.nii.gz")  # reoriented as nnU-Net's reader did it
            maps.append(np.asarray(image.as_reoriented(nib.orientations.io_orientation(image.affine)).dataobj)[:, :, 0])
        m = np.mean(maps, axis=0)
        probs, soft = np.stack([1 - p, p]), np.stack([1 - m, m])
        assert row["brier"] == pytest.approx(((probs - soft) ** 2).sum(0).mean(), abs=1e-6)
        assert row["ece"] == pytest.approx(top_label_ece(probs, soft), abs=1e-6)
        assert row["per_class"]["dice"]["1"] == pytest.approx(dice(p > 0.5, m > 0.5))


def test_a_malicious_pkl_is_refused_naming_it(tmp_path, capsys):
    folder = copy_fixture(LABELS, tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    pkl = folder / "probs" / f"{cases(LABELS)[0]}.pkl"
    pkl.write_bytes(pickle.dumps({"sitk_stuff": Payload(), "spacing": [1.0, 1.0, 1.0]}))
    with pytest.raises(ValueError, match="refusing to read") as err:
        score_folders(folder / "probs", folder / "labels", kind="labels", progress=False)
    message = str(err.value)
    assert "\n" not in message and str(pkl) in message and "system" in message
    assert not marker.exists()
    with pytest.raises(ValueError, match="refusing"):
        read_properties(pkl)
    argv = [
        "score",
        "--probs",
        str(folder / "probs"),
        "--labels",
        str(folder / "labels"),
        "--output",
        str(tmp_path / "out"),
    ]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and str(pkl) in err and not marker.exists()


def test_corrupt_foreign_and_mismatched_pkls_are_one_line_errors(tmp_path):
    folder = copy_fixture(LABELS, tmp_path)
    first, second = (folder / "probs" / f"{c}.pkl" for c in cases(LABELS)[:2])
    first.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot read the nnU-Net properties file") as err:
        read_properties(first)
    assert str(first) in str(err.value)
    first.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="must hold a dict"):
        read_properties(first)
    props = trusted_properties(second)
    props["shape_before_cropping"] = (1, 40, 32)
    first.write_bytes(pickle.dumps(props))
    with pytest.raises(ValueError, match="belongs to another prediction"):
        read_probs(folder / "probs" / first.name.replace(".pkl", ".npz"))


def test_nibabel_properties_without_reorientation_use_the_original_affine(tmp_path):
    affine = np.diag([0.5, 2.0, 4.0, 1.0])
    affine[:3, 3] = (1.0, 2.0, 3.0)
    props = {
        "nibabel_stuff": {"original_affine": affine},
        "spacing": [4.0, 2.0, 0.5],
        "shape_before_cropping": (1, 3, 2),
    }
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(props))
    out = nnunet_prediction(tmp_path / "a.npz", np.full((2, 2, 3, 1), 0.5, np.float32))
    np.testing.assert_array_equal(out.affine, affine)
    assert out.spacing == (0.5, 2.0, 4.0)
    png = {"spacing": [999.0, 0.5, 0.25]}  # nnU-Net's 2D image readers: a dummy z spacing, no affine
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(png))
    out = nnunet_prediction(tmp_path / "a.npz", np.full((2, 2, 3, 1), 0.5, np.float32))
    assert out.affine is None and out.spacing == (0.25, 0.5, 999.0)


def test_a_region_dataset_not_made_by_softlabels_is_refused(tmp_path):
    folder = copy_fixture(RATERS, tmp_path)
    path = folder / "probs" / "dataset.json"
    dataset = json.loads(path.read_text())
    del dataset["softlabels_encoding"]
    path.write_text(json.dumps(dataset))
    with pytest.raises(ValueError, match="declares nnU-Net regions") as err:
        score_folders(folder / "probs", folder / "raters", kind="raters", progress=False)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    dataset["softlabels_encoding"] = {"kind": "rater_bits", "levels": 3}
    dataset["labels"] = {"background": 0, "a": [1, 2], "b": [2, 3], "c": 3}  # not nested
    path.write_text(json.dumps(dataset))
    with pytest.raises(ValueError, match="declares nnU-Net regions"):
        score_folders(folder / "probs", folder / "raters", kind="raters", progress=False)


def test_the_decoding_does_not_depend_on_the_encoding_kind(tmp_path):
    """Bit codes (label = Σ_r 2^r m_r, regions: popcount ≥ k) and counts (label = Σ_r m_r, regions: ≥ k) alike."""
    codes = range(1, 8)
    encodings = {
        "rater_bits": (
            {f"at_least_{k}_of_3": [c for c in codes if bin(c).count("1") >= k] for k in (1, 2, 3)},
            [1, 3, 7],
        ),
        "foreground_levels": ({f"at_least_{k}_of_3": list(range(k, 4)) for k in (1, 2, 3)}, [1, 2, 3]),
    }
    summaries = []
    for kind, (regions, order) in encodings.items():
        folder = copy_fixture(RATERS, tmp_path / kind)
        path = folder / "probs" / "dataset.json"
        dataset = json.loads(path.read_text())
        dataset["labels"], dataset["regions_class_order"] = {"background": 0} | regions, order
        dataset["softlabels_encoding"] = {"kind": kind, "levels": 3, "source": "raters"}
        path.write_text(json.dumps(dataset))
        summaries.append(score_folders(folder / "probs", folder / "raters", kind="raters", progress=False).summary)
    direct = score_folders(RATERS / "probs", RATERS / "raters", kind="raters", progress=False).summary
    assert summaries[0] == summaries[1] == direct


def test_channels_must_match_the_declared_labels(tmp_path):
    folder = copy_fixture(LABELS, tmp_path)
    path = folder / "probs" / "dataset.json"
    dataset = json.loads(path.read_text())
    dataset["labels"] = {"background": 0, "foreground": 1}
    path.write_text(json.dumps(dataset))
    with pytest.raises(ValueError, match="has 3 class channel"):
        score_folders(folder / "probs", folder / "labels", kind="labels", progress=False)


def test_an_nnunet_folder_without_probabilities_for_a_case_is_refused(tmp_path):
    folder = copy_fixture(LABELS, tmp_path)
    case = cases(LABELS)[-1]
    (folder / "probs" / f"{case}.npz").unlink()
    with pytest.raises(ValueError, match="--save_probabilities") as err:
        list_cases(folder / "probs", folder / "labels", kind="labels")
    assert repr(case) in str(err.value)
    files = {"a": folder / "probs" / "a.nii.gz"}
    (folder / "probs" / "plans.json").unlink()  # not a folder nnU-Net wrote: NIfTI probability maps are fine
    check_prediction_folder(folder / "probs", files)


def test_cli_scores_an_nnunet_folder(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["score", "--probs", str(LABELS / "probs"), "--labels", str(LABELS / "labels"), "--output", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert f"scored {len(cases(LABELS))} case(s)" in capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    direct = score_folders(LABELS / "probs", LABELS / "labels", kind="labels", progress=False)
    assert doc["cases"][0]["ece"] == pytest.approx(direct.cases[0]["ece"])
    assert (out / "report.md").is_file()
    raters = ["--probs", str(RATERS / "probs"), "--raters", str(RATERS / "raters"), "--output", str(tmp_path / "r")]
    assert main(["score", *raters, "--no-progress"]) == 0
