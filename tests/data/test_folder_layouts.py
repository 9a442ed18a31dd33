"""The generic segmentation layout: round trips of 2D PNG and 3D NIfTI folders, and every bad input naming its file."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from softlabels.data.folder_layouts import SegmentationCase, check_case, index_generic, load_sample
from softlabels.data.folders import SegmentationFolder

ZOOMS = (0.8, 0.9, 2.0)


def save_nifti(array, path, zooms=ZOOMS, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0]) if affine is None else affine), str(path))
    return path


def save_png(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def named(path):
    return re.escape(repr(str(path)))


def softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def make_3d(root, rng, cases=("a", "b", "c"), shape=(6, 5, 4), raters=("r2", "r1", "r3"), num_classes=3):
    """A 3D NIfTI folder with every optional map; returns what was written, in NIfTI voxel order."""
    written = {}
    for i, case in enumerate(cases):
        affine = np.diag([*ZOOMS, 1.0])
        affine[:3, 3] = [i, -2.0 * i, 3.5]
        item = {
            "image": rng.normal(size=(*shape, 2)).astype(np.float32),
            "label": rng.integers(0, num_classes, shape).astype(np.uint8),
            "raters": {r: rng.integers(0, num_classes, shape).astype(np.int16) for r in raters},
            "probs": softmax(rng.normal(size=(*shape, num_classes)), -1).astype(np.float32),
            "confidence": rng.uniform(size=shape).astype(np.float32),
            "affine": affine,
        }
        save_nifti(item["image"], root / "images" / f"{case}.nii.gz", affine=affine)
        save_nifti(item["label"], root / "labels" / f"{case}.nii.gz", affine=affine)
        for rater, array in item["raters"].items():
            save_nifti(array, root / "raters" / rater / f"{case}.nii.gz", affine=affine)
        save_nifti(item["probs"], root / "probs" / f"{case}.nii.gz", affine=affine)
        save_nifti(item["confidence"], root / "confidence" / f"{case}.nii", affine=affine)
        written[case] = item
    return written


def make_2d(root, rng, cases=("x1", "x2"), rows_cols=(5, 7), raters=("ann1", "ann2"), num_classes=2):
    """A 2D PNG folder (probs as NIfTI (x, y, 1, C)); returns what was written as (rows, columns) arrays."""
    written = {}
    rows, cols = rows_cols
    for case in cases:
        item = {
            "image": rng.integers(0, 256, (rows, cols), dtype=np.uint8),
            "label": rng.integers(0, num_classes, (rows, cols), dtype=np.uint8),
            "raters": {r: rng.integers(0, num_classes, (rows, cols), dtype=np.uint8) for r in raters},
            "confidence": rng.integers(0, 256, (rows, cols), dtype=np.uint8),
            "probs": softmax(rng.normal(size=(cols, rows, 1, num_classes)), -1).astype(np.float32),  # (x, y, 1, C)
        }
        save_png(item["image"], root / "images" / f"{case}.png")
        save_png(item["label"], root / "labels" / f"{case}.png")
        for rater, array in item["raters"].items():
            save_png(array, root / "raters" / rater / f"{case}.png")
        save_png(item["confidence"], root / "confidence" / f"{case}.png")
        save_nifti(item["probs"], root / "probs" / f"{case}.nii.gz")
        written[case] = item
    return written


def test_3d_nifti_round_trip(tmp_path, rng):
    written = make_3d(tmp_path, rng)
    folder = SegmentationFolder(tmp_path, num_classes=3)
    assert folder.cases == ["a", "b", "c"] and folder.rater_names == ["r1", "r2", "r3"]
    assert folder.info["spatial_dims"] == 3 and folder.info["in_channels"] == 2 and folder.info["num_raters"] == 3
    for sample in folder.dataset():
        item = written[sample["case"]]
        np.testing.assert_array_equal(sample["image"].numpy(), np.moveaxis(item["image"], -1, 0))
        assert sample["image"].dtype == torch.float32 and sample["label"].dtype == torch.int64
        np.testing.assert_array_equal(sample["label"].numpy(), item["label"][None])
        raters = np.stack([item["raters"][r] for r in ("r1", "r2", "r3")])  # sorted folder-name order
        np.testing.assert_array_equal(sample["raters"].numpy(), raters)
        np.testing.assert_array_equal(sample["soft_label"].numpy(), np.moveaxis(item["probs"], -1, 0))
        np.testing.assert_array_equal(sample["confidence"].numpy(), item["confidence"][None])
        np.testing.assert_allclose(sample["affine"].numpy(), item["affine"])
        np.testing.assert_allclose(sample["spacing"].numpy(), ZOOMS, rtol=1e-6)
    assert folder.info["keys"] == sorted(
        ["affine", "case", "confidence", "image", "label", "raters", "soft_label", "spacing"]
    )


def test_2d_png_round_trip_is_transposed_to_x_y(tmp_path, rng):
    written = make_2d(tmp_path, rng)
    folder = SegmentationFolder(tmp_path, num_classes=2, load="eager")
    sample = folder.dataset(["x2"])[0]
    item = written["x2"]
    np.testing.assert_array_equal(sample["image"].numpy(), item["image"].T[None].astype(np.float64))
    np.testing.assert_array_equal(sample["label"].numpy(), item["label"].T[None])
    np.testing.assert_array_equal(sample["raters"].numpy(), np.stack([item["raters"][r].T for r in ("ann1", "ann2")]))
    np.testing.assert_allclose(sample["confidence"].numpy(), item["confidence"].T[None] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(sample["soft_label"].numpy(), np.moveaxis(item["probs"][:, :, 0], -1, 0))
    assert "affine" not in sample and "spacing" not in sample and folder.info["spatial_dims"] == 2


def test_index_and_check_case(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a",))
    cases, raters = index_generic(tmp_path)
    assert raters == ["r1", "r2", "r3"] and [p.parent.name for p in cases[0].raters] == raters
    layout = check_case(cases[0], 3)
    assert layout == (2, (6, 5, 4), True)
    assert set(load_sample(cases[0], layout, num_classes=3)) >= {"image", "label", "raters", "soft_label"}


def test_unmatched_cases_list_at_most_five_names(tmp_path, rng):
    for i in range(8):
        save_png(np.zeros((2, 2), np.uint8), tmp_path / "images" / f"c{i}.png")
    save_png(np.zeros((2, 2), np.uint8), tmp_path / "labels" / "c0.png")
    save_png(np.zeros((2, 2), np.uint8), tmp_path / "labels" / "stray.png")
    with pytest.raises(ValueError, match=r"7 image\(s\) without a file in .*labels") as err:
        SegmentationFolder(tmp_path, num_classes=2)
    message = str(err.value)
    assert "'c1.png', 'c2.png', 'c3.png', 'c4.png', 'c5.png' and 2 more" in message
    assert "1 file(s) in" in message and "without an image in images/: 'stray.png'" in message


def test_missing_rater_map_is_an_error(tmp_path, rng):
    make_2d(tmp_path, rng)
    (tmp_path / "raters" / "ann2" / "x1.png").unlink()
    with pytest.raises(ValueError, match=f"1 image\\(s\\) without a file in {named(tmp_path / 'raters' / 'ann2')}"):
        SegmentationFolder(tmp_path, num_classes=2)


def test_shape_mismatch_names_both_files(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a", "b"))
    save_nifti(np.zeros((6, 5, 3), np.uint8), tmp_path / "labels" / "b.nii.gz")
    with pytest.raises(
        ValueError, match=f"case 'b': shape mismatch: the image {named(tmp_path / 'images' / 'b.nii.gz')} has spatial "
        f"shape \\(6, 5, 4\\) but the label map {named(tmp_path / 'labels' / 'b.nii.gz')} has \\(6, 5, 3\\)",
    ):  # fmt: skip
        SegmentationFolder(tmp_path, num_classes=3)


def test_spacing_mismatch_beyond_relative_1e3(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a",))
    label = tmp_path / "labels" / "a.nii.gz"
    save_nifti(np.zeros((6, 5, 4), np.uint8), label, zooms=(0.8 * (1 + 5e-4), 0.9, 2.0))  # within tolerance
    SegmentationFolder(tmp_path, num_classes=3)
    save_nifti(np.zeros((6, 5, 4), np.uint8), label, zooms=(0.8, 0.9, 2.5))
    with pytest.raises(ValueError, match=f"case 'a': spacing mismatch: .* but {named(label)} has \\(0.8.*2.5\\)"):
        SegmentationFolder(tmp_path, num_classes=3)


def test_rater_maps_of_different_shapes(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a",))
    bad = save_nifti(np.zeros((6, 5, 5), np.uint8), tmp_path / "raters" / "r3" / "a.nii.gz")
    with pytest.raises(
        ValueError, match=f"case 'a': the rater maps differ in shape: .*r1.* has \\(6, 5, 4\\), {named(bad)}"
    ):
        SegmentationFolder(tmp_path, num_classes=3)


def test_non_integer_label_map(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a", "b"))
    bad = save_nifti(np.full((6, 5, 4), 0.5, np.float32), tmp_path / "labels" / "b.nii.gz")
    with pytest.raises(ValueError, match=f"the label map {named(bad)} must hold integer labels"):
        SegmentationFolder(tmp_path, num_classes=3)


@pytest.mark.parametrize(("value", "shown"), [(3, "max 3"), (-1, "min -1")])
def test_out_of_range_labels(tmp_path, rng, value, shown):
    make_3d(tmp_path, rng, cases=("a",))
    bad = save_nifti(np.full((6, 5, 4), value, np.int16), tmp_path / "raters" / "r2" / "a.nii.gz")
    with pytest.raises(ValueError, match=f"the rater map {named(bad)} must hold labels in \\[0, 2\\].*{shown}"):
        SegmentationFolder(tmp_path, num_classes=3)


@pytest.mark.parametrize(
    ("values", "message"),
    [((1.2, -0.2, 0.0), "must be probabilities in \\[0, 1\\]"), ((0.5, 0.3, 0.1), "must sum to 1")],
)
def test_soft_maps_must_be_distributions(tmp_path, rng, values, message):
    make_3d(tmp_path, rng, cases=("a",))
    bad = save_nifti(np.zeros((6, 5, 4, 3), np.float32) + np.float32(values), tmp_path / "probs" / "a.nii.gz")
    with pytest.raises(ValueError, match=f"the soft map {named(bad)}.* {message}"):
        SegmentationFolder(tmp_path, num_classes=3)


def test_soft_map_channels_and_png(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a",))
    bad = save_nifti(np.full((6, 5, 4, 2), 0.5, np.float32), tmp_path / "probs" / "a.nii.gz")
    with pytest.raises(
        ValueError, match=f"the soft map {named(bad)} has 2 class channel\\(s\\); expected num_classes=3"
    ):
        SegmentationFolder(tmp_path, num_classes=3)
    bad.unlink()
    save_png(np.zeros((5, 6), np.uint8), tmp_path / "probs" / "a.png")
    with pytest.raises(ValueError, match=r"no .nii.gz / .nii files in the probs folder"):
        SegmentationFolder(tmp_path, num_classes=3)


def test_confidence_outside_unit_interval(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a",))
    bad = save_nifti(np.full((6, 5, 4), 1.5, np.float32), tmp_path / "confidence" / "a.nii")
    with pytest.raises(ValueError, match=f"the confidence map {named(bad)} must hold values in \\[0, 1\\]"):
        SegmentationFolder(tmp_path, num_classes=3)


@pytest.mark.parametrize("where", ["labels/a.nii.gz", "images/a.nii.gz", "raters/r1/a.nii.gz"])
def test_corrupt_nifti(tmp_path, rng, where):
    make_3d(tmp_path, rng, cases=("a",))
    (tmp_path / where).write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ValueError, match=f"cannot read the NIfTI file {named(tmp_path / where)}"):
        SegmentationFolder(tmp_path, num_classes=3)


def test_corrupt_png(tmp_path, rng):
    make_2d(tmp_path, rng)
    bad = tmp_path / "images" / "x2.png"
    bad.write_bytes(b"garbage" * 30)
    with pytest.raises(ValueError, match=f"cannot read the PNG file {named(bad)}"):
        SegmentationFolder(tmp_path, num_classes=2)


def test_empty_and_missing_folders(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match=r"the images folder .* does not exist"):
        SegmentationFolder(tmp_path, num_classes=2)
    (tmp_path / "images").mkdir()
    with pytest.raises(
        ValueError, match=f"no .nii.gz / .nii / .png files in the images folder {named(tmp_path / 'images')}"
    ):
        SegmentationFolder(tmp_path, num_classes=2)
    save_png(np.zeros((2, 2), np.uint8), tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    with pytest.raises(ValueError, match=r"no .* files in the labels folder"):
        SegmentationFolder(tmp_path, num_classes=2)
    (tmp_path / "labels").rmdir()
    (tmp_path / "raters").mkdir()
    with pytest.raises(ValueError, match=f"the raters folder {named(tmp_path / 'raters')} must hold one sub-folder"):
        SegmentationFolder(tmp_path, num_classes=2)


def test_two_files_of_one_case(tmp_path):
    save_png(np.zeros((2, 2), np.uint8), tmp_path / "images" / "a.png")
    save_nifti(np.zeros((2, 2), np.float32), tmp_path / "images" / "a.nii.gz")
    with pytest.raises(ValueError, match=r"case 'a' has two files in the images folder: a.nii.gz, a.png"):
        SegmentationFolder(tmp_path, num_classes=2)


def test_images_must_be_batchable(tmp_path):
    save_png(np.zeros((2, 2), np.uint8), tmp_path / "images" / "a.png")
    save_png(np.zeros((2, 2, 3), np.uint8), tmp_path / "images" / "b.png")
    with pytest.raises(
        ValueError, match=f"one number of channels: .*a.png.* and {named(tmp_path / 'images' / 'b.png')}"
    ):
        SegmentationFolder(tmp_path, num_classes=2)
    save_nifti(np.zeros((2, 2), np.float32), tmp_path / "images" / "b.nii.gz")
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(ValueError, match=r"one format \(all NIfTI or all PNG\)"):
        SegmentationFolder(tmp_path, num_classes=2)


def test_check_values_false_defers_value_errors_to_access(tmp_path, rng):
    make_3d(tmp_path, rng, cases=("a", "b"))
    bad = save_nifti(np.full((6, 5, 4), 7, np.uint8), tmp_path / "labels" / "b.nii.gz")
    folder = SegmentationFolder(tmp_path, num_classes=3, check_values=False)
    dataset = folder.dataset()
    assert dataset[0]["case"] == "a"
    with pytest.raises(ValueError, match=f"the label map {named(bad)} must hold labels in \\[0, 2\\]"):
        dataset[1]


def test_lazy_reads_on_access_eager_keeps(tmp_path, rng):
    written = make_3d(tmp_path, rng, cases=("a",))
    lazy = SegmentationFolder(tmp_path, num_classes=3)
    eager = SegmentationFolder(tmp_path, num_classes=3, load="eager")
    for key in ("image", "label", "raters", "soft_label", "confidence", "affine"):
        assert torch.equal(lazy.dataset()[0][key], eager.dataset()[0][key])
    save_nifti(np.zeros((6, 5, 4), np.uint8), tmp_path / "labels" / "a.nii.gz", affine=written["a"]["affine"])
    assert int(lazy.dataset()[0]["label"].sum()) == 0
    assert torch.equal(eager.dataset()[0]["label"], torch.from_numpy(written["a"]["label"][None]).long())
    save_nifti(np.zeros((6, 5, 3), np.uint8), tmp_path / "labels" / "a.nii.gz", affine=written["a"]["affine"])
    with pytest.raises(ValueError, match=r"has shape \(6, 5, 3\), not \(6, 5, 4\) as when the folder was read"):
        lazy.dataset()[0]


def test_case_record():
    case = SegmentationCase("a", Path("images/a.png"))
    assert case.image == Path("images/a.png") and case.label is None and case.raters == () and case.probs is None
