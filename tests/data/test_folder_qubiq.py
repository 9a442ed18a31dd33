"""QUBIQ's native layout: raters of one task, rater mean and strict majority (as fuse_raters), and layout errors."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch

from softlabels.data.folder_qubiq import index_qubiq
from softlabels.data.folders import SegmentationFolder
from softlabels.targets import fuse_raters


def save_nifti(array, path, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([0.7, 0.7, 1.0, 1.0]) if affine is None else affine), str(path))
    return path


def named(path):
    return re.escape(repr(str(path)))


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def make_qubiq(root, rng, cases=("case01", "case02", "case03"), shape=(7, 6, 1), raters=3, image_channels=None):
    """QUBIQ-like case folders: task01 (``raters`` maps) and task02 (2 maps), plus a derived file to ignore."""
    written = {}
    image_shape = shape if image_channels is None else (*shape[:2], image_channels)
    for i, case in enumerate(cases):
        affine = np.diag([0.7, 0.7, 1.0, 1.0])
        affine[:3, 3] = [-i, i, 0.0]
        image = rng.normal(size=image_shape).astype(np.float32)
        maps = [(rng.uniform(size=shape) < 0.5).astype(np.uint8) for _ in range(raters)]
        save_nifti(image, root / case / "image.nii.gz", affine)
        for r, array in enumerate(maps, start=1):
            save_nifti(array, root / case / f"task01_seg{r:02d}.nii.gz", affine)
        for r in (1, 2):
            save_nifti(np.ones(shape, np.uint8), root / case / f"task02_seg{r:02d}.nii.gz", affine)
        save_nifti(np.zeros(shape, np.float32), root / case / f"{case}_mask.nii.gz", affine)
        written[case] = {"image": image, "maps": maps, "affine": affine}
    return written


def test_qubiq_2d_round_trip_mean_and_majority(tmp_path, rng):
    written = make_qubiq(tmp_path, rng)
    folder = SegmentationFolder(tmp_path, layout="qubiq")
    assert folder.cases == ["case01", "case02", "case03"] and folder.rater_names == ["seg01", "seg02", "seg03"]
    assert folder.num_classes == 2 and folder.info["spatial_dims"] == 2 and folder.info["qubiq_task"] == 1
    for sample in folder.dataset():
        item = written[sample["case"]]
        raters = np.stack([m[:, :, 0] for m in item["maps"]])  # (x, y, 1) slices are 2D
        np.testing.assert_array_equal(sample["raters"].numpy(), raters)
        np.testing.assert_array_equal(sample["image"].numpy(), item["image"][None, :, :, 0])
        mean = raters.mean(0, dtype=np.float64)
        np.testing.assert_allclose(sample["soft_label"].numpy(), np.stack([1 - mean, mean]), atol=1e-7)
        np.testing.assert_array_equal(sample["label"].numpy(), (raters.sum(0) >= 2)[None])
        fused = fuse_raters(torch.from_numpy(raters)[:, None].long(), 2, method="majority")
        assert torch.equal(sample["label"], fused.argmax(1))
        np.testing.assert_allclose(sample["affine"].numpy(), item["affine"])
        np.testing.assert_allclose(sample["spacing"].numpy(), (0.7, 0.7), rtol=1e-6)


def test_even_raters_tie_is_background(tmp_path, rng):
    make_qubiq(tmp_path, rng, cases=("case01",), raters=2)
    save_nifti(np.ones((7, 6, 1), np.uint8), tmp_path / "case01" / "task01_seg01.nii.gz")
    save_nifti(np.zeros((7, 6, 1), np.uint8), tmp_path / "case01" / "task01_seg02.nii.gz")
    sample = SegmentationFolder(tmp_path, layout="qubiq").dataset()[0]
    assert int(sample["label"].sum()) == 0  # 1 vote of 2: no strict majority (>= floor(2/2) + 1 = 2)
    assert torch.allclose(sample["soft_label"], torch.full((2, 7, 6), 0.5))


def test_task_choice_and_3d_volumes(tmp_path, rng):
    make_qubiq(tmp_path, rng, cases=("case1-1", "case1-2"), shape=(5, 4, 3))
    folder = SegmentationFolder(tmp_path, layout="qubiq", task=2, load="eager")
    sample = folder.dataset()[1]
    assert folder.rater_names == ["seg01", "seg02"] and sample["case"] == "case1-2"
    assert tuple(sample["raters"].shape) == (2, 5, 4, 3) and tuple(sample["image"].shape) == (1, 5, 4, 3)
    assert int(sample["label"].min()) == 1 and torch.equal(sample["soft_label"][1], torch.ones(5, 4, 3))


def test_multimodal_slices_have_channels_last(tmp_path, rng):
    written = make_qubiq(tmp_path, rng, cases=("case01",), shape=(7, 6), image_channels=4)
    sample = SegmentationFolder(tmp_path, layout="qubiq").dataset()[0]
    np.testing.assert_array_equal(sample["image"].numpy(), np.moveaxis(written["case01"]["image"], -1, 0))


def test_index_qubiq_ignores_other_files(tmp_path, rng):
    make_qubiq(tmp_path, rng, cases=("case01",))
    cases, _ = index_qubiq(tmp_path, 1)
    assert [p.name for p in cases[0].raters] == ["task01_seg01.nii.gz", "task01_seg02.nii.gz", "task01_seg03.nii.gz"]
    assert cases[0].label is None and cases[0].image.name == "image.nii.gz"


def test_layout_errors(tmp_path, rng):
    make_qubiq(tmp_path / "kidney" / "Training", rng)
    with pytest.raises(
        ValueError, match=r"without image.nii.gz: 'Training' \(the folder of case folders, e.g. .*Training'\?\)"
    ):
        SegmentationFolder(tmp_path / "kidney", layout="qubiq")
    root = tmp_path / "kidney" / "Training"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"the QUBIQ folder {named(tmp_path / 'empty')} holds no case folders"):
        SegmentationFolder(tmp_path / "empty", layout="qubiq")
    with pytest.raises(
        ValueError,
        match=r"without task03_seg<RR>.nii.gz maps: 'case01', 'case02', 'case03' \(tasks found: \[1, 2\]\)",
    ):
        SegmentationFolder(root, layout="qubiq", task=3)
    (root / "case02" / "task01_seg03.nii.gz").unlink()
    with pytest.raises(ValueError, match=f"QUBIQ case {named(root / 'case02')} has the raters \\[1, 2\\] of task 01"):
        SegmentationFolder(root, layout="qubiq")
    (root / "case03" / "image.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"without image.nii.gz: 'case03'"):
        SegmentationFolder(root, layout="qubiq")
    with pytest.raises(ValueError, match=r"`num_classes` of SegmentationFolder must be 2"):
        SegmentationFolder(root, layout="qubiq", num_classes=3)
    with pytest.raises(ValueError, match=r"`task` of SegmentationFolder must be an int >= 1; got 0"):
        SegmentationFolder(root, layout="qubiq", task=0)


def test_rater_maps_must_be_binary(tmp_path, rng):
    make_qubiq(tmp_path, rng, cases=("case01",))
    bad = save_nifti(np.full((7, 6, 1), 2, np.uint8), tmp_path / "case01" / "task01_seg02.nii.gz")
    with pytest.raises(ValueError, match=f"the rater map {named(bad)} must hold labels in \\[0, 1\\]"):
        SegmentationFolder(tmp_path, layout="qubiq")


def test_rater_shape_mismatch(tmp_path, rng):
    make_qubiq(tmp_path, rng, cases=("case01",))
    bad = save_nifti(np.zeros((7, 5, 1), np.uint8), tmp_path / "case01" / "task01_seg03.nii.gz")
    with pytest.raises(ValueError, match=f"the rater maps differ in shape: .* {named(bad)} has \\(7, 5\\)"):
        SegmentationFolder(tmp_path, layout="qubiq")
