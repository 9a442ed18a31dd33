"""Data sources by name: every source of the config builds its DataModule; transforms by name; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softlabels.training.data_sources import DATA_SOURCES, build_datamodule, build_transforms
from tests.data.test_folder_qubiq import make_qubiq
from tests.data.test_folders import make_folder
from tests.data.test_image_folder import make_folder as make_image_folder
from tests.data.test_image_folder import write_medmnist
from tests.data.test_lidc import FIVE


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def first_batch(dm):
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def test_synthetic_sources_follow_the_run_seed_and_batch_sizes():
    options = {"shape": [16, 16], "num_cases": [6, 2, 2]}
    a = build_datamodule("synthetic_segmentation", options, task="segmentation", seed=3, batch_size=3)
    b = build_datamodule("synthetic_segmentation", dict(options), task="segmentation", seed=3, batch_size=3)
    c = build_datamodule("synthetic_segmentation", dict(options), task="segmentation", seed=4, batch_size=3)
    batch = first_batch(a)
    assert batch["image"].shape == (3, 1, 16, 16) and "true_probs" in batch
    torch.testing.assert_close(batch["image"], first_batch(b)["image"])
    assert not torch.equal(a.train_set[0]["image"], c.train_set[0]["image"])
    cls = build_datamodule(
        "synthetic_classification", {"num_items": [8, 4, 4]}, task="classification", batch_size=4, eval_batch_size=2
    )
    cls.setup("fit")
    assert len(cls.train_set) == 8 and next(iter(cls.val_dataloader()))["image"].shape[0] == 2


def test_mni152_and_lidc_sources(tmp_path, monkeypatch):
    mni = build_datamodule(
        "mni152", {"downsample": 4, "size_multiple": 16, "num_slabs": 6, "gap": 1}, task="segmentation", batch_size=2
    )
    batch = first_batch(mni)
    assert batch["image"].shape[:2] == (2, 1) and torch.allclose(batch["soft_label"].sum(1), torch.ones(1))
    monkeypatch.setenv("SOFTLABELS_CACHE", str(tmp_path))
    options = {"build": {"patient_ids": list(FIVE)}, "spatial_dims": 2, "size": [16, 16], "num_raters": 3}
    lidc = build_datamodule("lidc", options, task="segmentation", batch_size=2)
    batch = first_batch(lidc)
    assert batch["raters"].shape[1:] == (3, 16, 16) and (tmp_path / "lidc").is_dir()  # cached under the env folder
    cls = build_datamodule("lidc", {"build": {"patient_ids": list(FIVE)}}, task="classification", batch_size=2)
    assert first_batch(cls)["label"].ndim == 1


def test_folder_sources_with_train_transforms_on_the_train_split_only(tmp_path, rng):
    make_folder(tmp_path / "seg", rng, dims=3, cases=[f"c{i}" for i in range(6)])
    spec = [{"name": "RandFlipd", "keys": ["image", "label"], "options": {"prob": 1.0, "spatial_axis": 0}}]
    options = {"root": str(tmp_path / "seg"), "num_classes": 3, "fractions": [0.5, 0.25, 0.25]}
    plain = build_datamodule("folder", dict(options), task="segmentation", batch_size=1)
    flipped = build_datamodule("folder", dict(options), task="segmentation", batch_size=1, train_transforms=spec)
    for dm in (plain, flipped):
        dm.setup("fit")
    torch.testing.assert_close(torch.as_tensor(flipped.train_set[0]["image"]), plain.train_set[0]["image"].flip(1))
    torch.testing.assert_close(torch.as_tensor(flipped.val_set[0]["image"]), plain.val_set[0]["image"])
    make_qubiq(tmp_path / "qubiq", rng, cases=tuple(f"case{i:02d}" for i in range(4)))
    qubiq = build_datamodule("qubiq", {"root": str(tmp_path / "qubiq"), "fractions": [0.5, 0.25, 0.25]},
                             task="segmentation", batch_size=1)  # fmt: skip
    assert first_batch(qubiq)["raters"].shape[1] == 3


def test_folder_transforms_for_every_split_from_yaml_lists_and_class_names(tmp_path, rng):
    make_folder(tmp_path / "seg", rng, dims=3, cases=[f"c{i}" for i in range(6)])
    spec = [{"name": "ScaleIntensityd", "keys": ["image"], "options": {"minv": 0.0, "maxv": 2.0}}]
    options = {"root": str(tmp_path / "seg"), "num_classes": 3, "fractions": [0.5, 0.25, 0.25]}
    by_key = build_datamodule("folder", dict(options), task="segmentation", transforms=spec)
    in_options = build_datamodule("folder", {**options, "transform": spec, "class_names": ["bg", "a", "b"]},
                                  task="segmentation")  # fmt: skip
    for dm in (by_key, in_options):  # a list under data.options.transform is built, not called ('list' object ...)
        for dataset in (dm.train_set, dm.val_set, dm.test_set):
            assert float(torch.as_tensor(dataset[0]["image"]).max()) == pytest.approx(2.0)
    assert in_options.info["class_names"] == ["bg", "a", "b"] and in_options.test_set.info["class_names"][2] == "b"
    with pytest.raises(ValueError, match="class_names must list 3 names"):
        build_datamodule("folder", {**options, "class_names": ["bg"]}, task="segmentation")
    with pytest.raises(ValueError, match=r"data.transforms are supported for .* only; got source 'mni152'"):
        build_datamodule("mni152", {}, task="segmentation", transforms=spec)


def test_image_folder_and_medmnist_sources(tmp_path, rng):
    make_image_folder(tmp_path / "images", rng, per_class=4)
    dm = build_datamodule("image_folder", {"root": str(tmp_path / "images"), "size": [8, 8]}, task="classification",
                          batch_size=2)  # fmt: skip
    assert first_batch(dm)["image"].shape == (2, 1, 8, 8) and dm.info["num_classes"] == 3
    write_medmnist(tmp_path / "pneumonia.npz", rng)
    med = build_datamodule("medmnist", {"path": str(tmp_path / "pneumonia.npz")}, task="classification", batch_size=2)
    assert first_batch(med)["label"].shape == (2,)


def test_transforms_by_name():
    compose = build_transforms([
        {"name": "RandFlipd", "keys": ["image"], "options": {"prob": 1.0, "spatial_axis": 0}},
        {"name": "ScaleIntensityd", "keys": ["image"]},
    ])  # fmt: skip
    out = compose({"image": torch.arange(4.0).reshape(1, 4, 1)})
    torch.testing.assert_close(torch.as_tensor(out["image"]).flatten(), torch.tensor([1.0, 2 / 3, 1 / 3, 0.0]))
    assert build_transforms(None) is None and build_transforms([]) is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: build_datamodule("synthetic_segmentaton", task="segmentation"), "synthetic_segmentation"),
        (lambda: build_datamodule("image_folder", {"root": "x"}, task="segmentation"), "serves \\['classification'\\]"),
        (
            lambda: build_datamodule(
                "synthetic_segmentation",
                {"shape": [8, 8], "num_cases": [2, 1, 1]},
                task="segmentation",
                train_transforms=[{"name": "RandFlipd"}],
            ),
            "only; got source",
        ),
        (lambda: build_transforms([{"name": "RandFlip_d"}]), "RandFlipd"),
        (lambda: build_transforms([{"name": "RandFlipd", "key": ["image"]}]), "unknown key\\(s\\) \\['key'\\]"),
        (lambda: build_transforms([{"name": "RandFlipd", "options": {"probability": 1}}]), "could not be built"),
        (lambda: build_datamodule("synthetic_classification", {"colour": 1}, task="classification"), "colour"),
    ],
)
def test_errors_name_the_problem(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_every_source_is_named_with_its_tasks():
    assert set(DATA_SOURCES) == {
        "synthetic_segmentation", "synthetic_classification", "mni152", "lidc", "folder", "qubiq", "image_folder",
        "medmnist",
    }  # fmt: skip
    assert all(tasks and set(tasks) <= {"segmentation", "classification"} for tasks, _ in DATA_SOURCES.values())
