"""Segmentation folders as datasets and DataModules: splits (hash, JSON, by patient), batches the methods read."""

from __future__ import annotations

import pickle
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from softlabels.data.folders import SegmentationFolder, split_cases
from softlabels.data.splits import SPLITS, write_splits
from softlabels.methods import create_method


def save_nifti(array, path, zooms=(1.0, 1.0, 2.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(path))


def save_png(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def named(path):
    return re.escape(repr(str(path)))


@pytest.fixture
def rng():
    return np.random.default_rng(2)


def make_folder(root, rng, *, dims, cases, num_classes=3, raters=3):
    """A small folder: 3D NIfTI (x, y, z) or 2D PNG, with labels, raters, probs and confidence."""
    shape = (6, 5, 4) if dims == 3 else (6, 5)
    for case in cases:
        logits = rng.normal(size=(*shape, num_classes) if dims == 3 else (*shape, 1, num_classes))
        save_nifti(
            (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32),
            root / "probs" / f"{case}.nii.gz",
        )
        if dims == 3:
            save_nifti(rng.normal(size=shape).astype(np.float32), root / "images" / f"{case}.nii.gz")
            save_nifti(rng.integers(0, num_classes, shape).astype(np.uint8), root / "labels" / f"{case}.nii.gz")
            save_nifti(rng.uniform(size=shape).astype(np.float32), root / "confidence" / f"{case}.nii.gz")
            for r in range(raters):
                save_nifti(
                    rng.integers(0, num_classes, shape).astype(np.uint8), root / "raters" / f"r{r}" / f"{case}.nii.gz"
                )
        else:  # PNG arrays are (rows, columns) = (y, x)
            save_png(rng.integers(0, 256, shape[::-1], dtype=np.uint8), root / "images" / f"{case}.png")
            save_png(rng.integers(0, num_classes, shape[::-1], dtype=np.uint8), root / "labels" / f"{case}.png")
            save_png(rng.integers(0, 256, shape[::-1], dtype=np.uint8), root / "confidence" / f"{case}.png")
            for r in range(raters):
                save_png(
                    rng.integers(0, num_classes, shape[::-1], dtype=np.uint8), root / "raters" / f"r{r}" / f"{case}.png"
                )
    return shape


def test_split_cases_is_deterministic_disjoint_and_complete():
    cases = [f"case_{i:03d}" for i in range(40)]
    split = split_cases(cases, seed=3)
    shuffled = split_cases(list(reversed(cases)), seed=3)  # the order of the input does not matter
    assert all(sorted(split[s]) == sorted(shuffled[s]) for s in SPLITS)
    assert sorted(c for s in SPLITS for c in split[s]) == cases
    assert [len(split[s]) for s in SPLITS] == [28, 6, 6]
    assert split != split_cases(cases, seed=4)


def test_split_cases_by_patient():
    cases = [f"p{p}_scan{s}" for p in range(12) for s in range(3)]
    split = split_cases(cases, fractions=(0.5, 0.25, 0.25), group=lambda c: c.split("_")[0])
    patients = {s: {c.split("_")[0] for c in split[s]} for s in SPLITS}
    assert not (
        patients["train"] & patients["val"]
        or patients["train"] & patients["test"]
        or patients["val"] & patients["test"]
    )
    assert [len(patients[s]) for s in SPLITS] == [6, 3, 3] and sum(len(split[s]) for s in SPLITS) == 36


def test_split_cases_from_json(tmp_path):
    cases = ["p1_a", "p1_b", "p2_a", "p3_a"]
    path = write_splits(tmp_path / "split.json", {"train": ["p2", "p1"], "val": [], "test": ["p3"]})
    split = split_cases(cases, split_file=path, group=lambda c: c.split("_")[0])
    assert split == {"train": ["p1_a", "p1_b", "p2_a"], "val": [], "test": ["p3_a"]}


def test_split_file_errors(tmp_path):
    unknown = write_splits(tmp_path / "unknown.json", {"train": ["a", "zz"], "test": ["b"]})
    with pytest.raises(ValueError, match=f"split file {named(unknown)} lists unknown id\\(s\\) \\['zz'\\]"):
        split_cases(["a", "b"], split_file=unknown)
    partial = write_splits(tmp_path / "partial.json", {"train": ["a"]})
    with pytest.raises(ValueError, match=f"split file {named(partial)} does not list 1 id\\(s\\) of the data: 'b'"):
        split_cases(["a", "b"], split_file=partial)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=f"split file {named(broken)} could not be read as JSON"):
        split_cases(["a"], split_file=broken)
    with pytest.raises(TypeError, match=r"`group` of split_cases must return a str; got int for 'a'"):
        split_cases(["a"], group=len)


def test_folder_datasets_split_by_case_and_group(tmp_path, rng):
    cases = [f"pat{p}_{t}" for p in range(5) for t in ("pre", "post")]
    make_folder(tmp_path, rng, dims=3, cases=cases)
    folder = SegmentationFolder(tmp_path, num_classes=3, check_values=False)
    sets = folder.datasets(fractions=(0.6, 0.2, 0.2), group=lambda c: c.split("_")[0])
    names = {s: [sample["case"] for sample in sets[s]] for s in SPLITS}
    assert sorted(c for part in names.values() for c in part) == sorted(cases)
    groups = {s: {sample["group"] for sample in sets[s]} for s in SPLITS}
    assert [len(groups[s]) for s in SPLITS] == [3, 1, 1] and not groups["train"] & (groups["val"] | groups["test"])
    assert sets["val"].info["split"] == "val" and sets["val"].info["num_classes"] == 3
    path = write_splits(tmp_path / "split.json", {"train": cases[:6], "val": cases[6:8], "test": cases[8:]})
    by_file = folder.datasets(split_file=path)
    assert sorted(s["case"] for s in by_file["test"]) == sorted(cases[8:])


@pytest.mark.parametrize("dims", [2, 3])
def test_datamodule_batches_feed_the_methods(tmp_path, rng, dims):
    shape = make_folder(tmp_path, rng, dims=dims, cases=[f"c{i}" for i in range(6)])
    folder = SegmentationFolder(tmp_path, num_classes=3)
    dm = folder.datamodule(fractions=(4 / 6, 1 / 6, 1 / 6), batch_size=2, seed=1)
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape) == (2, 1, *shape) and batch["image"].dtype == torch.float32
    assert tuple(batch["label"].shape) == (2, 1, *shape) and batch["label"].dtype == torch.int64
    assert tuple(batch["raters"].shape) == (2, 3, *shape) and batch["raters"].dtype == torch.int64
    assert tuple(batch["soft_label"].shape) == (2, 3, *shape) and tuple(batch["confidence"].shape) == (2, 1, *shape)
    assert ("affine" in batch) == (dims == 3) and len(batch["case"]) == 2
    if dims == 3:
        assert tuple(batch["affine"].shape) == (2, 4, 4) and tuple(batch["spacing"].shape) == (2, 3)
    target = create_method("raters_mean", num_classes=3).make_target(batch).target
    onehot = batch["raters"].numpy()[:, :, None] == np.arange(3).reshape(1, 1, 3, *([1] * dims))
    np.testing.assert_allclose(target.numpy(), onehot.mean(1), atol=1e-6)
    assert torch.equal(create_method("hard", num_classes=3).make_target(batch).target, batch["label"][:, 0])
    assert create_method("soft_label", num_classes=3).make_target(batch).target.shape == batch["soft_label"].shape
    assert create_method("confidence_soft", num_classes=3).make_target(batch).target.shape == batch["soft_label"].shape


def test_qubiq_batch_feeds_the_rater_methods(tmp_path, rng):
    for case in ("case01", "case02"):
        save_nifti(rng.normal(size=(5, 4, 1)).astype(np.float32), tmp_path / case / "image.nii.gz")
        for r in range(1, 4):
            save_nifti(
                (rng.uniform(size=(5, 4, 1)) < 0.5).astype(np.uint8), tmp_path / case / f"task01_seg{r:02d}.nii.gz"
            )
    dm = SegmentationFolder(tmp_path, layout="qubiq").datamodule(fractions=(1.0, 0.0, 0.0), batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["raters"].shape) == (2, 3, 5, 4) and tuple(batch["label"].shape) == (2, 1, 5, 4)
    mean = create_method("raters_mean", num_classes=2).make_target(batch).target
    assert torch.allclose(mean, batch["soft_label"], atol=1e-6)
    majority = create_method("raters_majority", num_classes=2).make_target(batch).target
    assert torch.equal(majority.argmax(1), batch["label"][:, 0])


def test_transforms_apply_on_access(tmp_path, rng):
    from monai.transforms import Compose, Lambdad, ScaleIntensityd

    make_folder(tmp_path, rng, dims=3, cases=[f"c{i}" for i in range(4)])
    folder = SegmentationFolder(tmp_path, num_classes=3, load="eager")
    sets = folder.datasets(
        fractions=(0.5, 0.25, 0.25),
        transform=Compose([ScaleIntensityd(keys="image")]),
        train_transform=Lambdad(keys="image", func=lambda x: x * 0),
    )
    assert float(sets["train"][0]["image"].abs().sum()) == 0.0
    image = sets["val"][0]["image"]
    assert float(image.min()) == pytest.approx(0.0) and float(image.max()) == pytest.approx(1.0)
    stored = folder.dataset([sets["val"][0]["case"]])[0]["image"]
    assert float(stored.max()) != pytest.approx(1.0)  # the stored sample is never changed


def test_datasets_pickle_for_worker_processes(tmp_path, rng):
    make_folder(tmp_path, rng, dims=2, cases=["a", "b"])
    dataset = SegmentationFolder(tmp_path, num_classes=3).dataset()
    copy = pickle.loads(pickle.dumps(dataset))
    assert (
        torch.equal(copy[1]["raters"], dataset[1]["raters"]) and len(copy) == 2 and copy.samples[0:2][1]["case"] == "b"
    )


def test_option_errors(tmp_path, rng):
    make_folder(tmp_path, rng, dims=2, cases=["a"])
    with pytest.raises(
        ValueError,
        match=r"`layout` of SegmentationFolder must be one of 'generic', 'qubiq'; got 'qubic' \(did you mean 'qubiq'\?",
    ):
        SegmentationFolder(tmp_path, layout="qubic")
    with pytest.raises(
        ValueError, match=r"`num_classes` of SegmentationFolder must be an int >= 2 for the generic layout; got None"
    ):
        SegmentationFolder(tmp_path)
    with pytest.raises(ValueError, match=r"`load` of SegmentationFolder must be one of 'eager', 'lazy'; got 'all'"):
        SegmentationFolder(tmp_path, num_classes=3, load="all")
    with pytest.raises(FileNotFoundError, match=r"the generic data folder .*missing.* does not exist"):
        SegmentationFolder(tmp_path / "missing", num_classes=3)
    with pytest.raises(ValueError, match=r"`cases` of SegmentationFolder.dataset lists unknown case\(s\): 'zz'"):
        SegmentationFolder(tmp_path, num_classes=3).dataset(["a", "zz"])
