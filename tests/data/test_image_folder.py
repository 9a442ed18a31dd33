"""Classification folders: ImageFolder (RadImageNet-style) and MedMNIST .npz round trips, splits, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from softlabels.data.image_folder import ImageFolder, MedMNISTFile
from softlabels.data.splits import SPLITS, write_splits
from softlabels.methods import create_method


def save_image(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def named(path):
    return re.escape(repr(str(path)))


@pytest.fixture
def rng():
    return np.random.default_rng(8)


def make_folder(root, rng, classes=("normal", "benign", "malignant"), per_class=4, hw=(6, 5), rgb=False):
    written = {}
    for c, name in enumerate(classes):
        for i in range(per_class):
            array = rng.integers(0, 256, (*hw, 3) if rgb else hw, dtype=np.uint8)
            rel = f"{name}/patient{i % 2}/img{c}{i}.png" if i % 2 else f"{name}/pat{c}{i}_img.png"
            save_image(array, root / rel)
            written[rel] = (array, name)
    return written


def test_image_folder_round_trip(tmp_path, rng):
    written = make_folder(tmp_path, rng)
    (tmp_path / "normal" / "notes.txt").write_text("ignored")
    save_image(np.zeros((6, 5), np.uint8), tmp_path / "normal" / ".hidden.png")
    folder = ImageFolder(tmp_path)
    assert folder.class_names == ["benign", "malignant", "normal"] and sorted(folder.cases) == sorted(written)
    assert folder.info["num_classes"] == 3 and folder.info["in_channels"] == 1 and folder.info["image_size"] == (6, 5)
    for sample in folder.dataset():
        array, name = written[sample["case"]]
        assert sample["image"].dtype == torch.float32 and tuple(sample["image"].shape) == (1, 6, 5)
        np.testing.assert_allclose(sample["image"].numpy(), array[None] / 255.0, rtol=1e-6)
        assert sample["label"].dtype == torch.int64 and sample["label"].ndim == 0
        assert folder.class_names[int(sample["label"])] == name


def test_rgb_16_bit_and_jpeg(tmp_path, rng):
    rgb = save_image(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8), tmp_path / "rgb" / "a" / "x.png")
    sample = ImageFolder(tmp_path / "rgb").dataset()[0]
    np.testing.assert_allclose(
        sample["image"].numpy(), np.asarray(Image.open(rgb)).transpose(2, 0, 1) / 255.0, rtol=1e-6
    )
    deep = rng.integers(0, 65536, (4, 3), dtype=np.uint16)
    save_image(deep, tmp_path / "deep" / "a" / "x.png")
    sample = ImageFolder(tmp_path / "deep").dataset()[0]
    np.testing.assert_allclose(sample["image"].numpy(), deep[None] / 65535.0, rtol=1e-6)
    save_image(np.full((8, 8), 128, np.uint8), tmp_path / "jpeg" / "a" / "x.jpg")
    sample = ImageFolder(tmp_path / "jpeg").dataset()[0]
    np.testing.assert_allclose(sample["image"].numpy(), np.full((1, 8, 8), 128 / 255.0), atol=2 / 255)


def test_resize_and_channel_conversion(tmp_path, rng):
    grey = save_image(np.full((6, 5), 200, np.uint8), tmp_path / "a" / "grey.png")
    rgb_array = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    save_image(rgb_array, tmp_path / "b" / "rgb.png")
    with pytest.raises(
        ValueError, match=f"one size \\(H, W\\) \\(or pass size=\\(H, W\\)\\): {named(grey)} has \\(6, 5\\)"
    ):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match=r"must share one channels \(or pass channels=1 or 3\)"):
        ImageFolder(tmp_path, size=(4, 4))
    folder = ImageFolder(tmp_path, size=(4, 4), channels=1)
    grey_sample, rgb_sample = (folder.dataset([c])[0] for c in ("a/grey.png", "b/rgb.png"))
    np.testing.assert_allclose(grey_sample["image"].numpy(), np.full((1, 4, 4), 200 / 255.0), rtol=1e-6)
    assert float(rgb_sample["image"].min()) >= 0.0 and float(rgb_sample["image"].max()) <= 1.0 + 1e-6
    same_size = ImageFolder(tmp_path, size=(9, 7), channels=1).dataset(["b/rgb.png"])[0]["image"]
    luma = (rgb_array.astype(np.float64) / 255.0) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(same_size.numpy(), luma[None], atol=1e-6)
    three = ImageFolder(tmp_path, size=(6, 5), channels=3).dataset(["a/grey.png"])[0]["image"]
    assert tuple(three.shape) == (3, 6, 5) and torch.equal(three[0], three[2])


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match=f"the ImageFolder {named(tmp_path)} holds no class folders"):
        ImageFolder(tmp_path)
    save_image(np.zeros((2, 2), np.uint8), tmp_path / "a" / "x.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder\(s\) of .* without .png / .jpg / .jpeg images: 'empty'"):
        ImageFolder(tmp_path)
    bad = save_image(np.zeros((2, 2, 4), np.uint8), tmp_path / "empty" / "rgba.png")
    with pytest.raises(ValueError, match=f"the image {named(bad)} must be grey or RGB .* got mode 'RGBA'"):
        ImageFolder(tmp_path)
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(ValueError, match=f"cannot read the image file {named(bad)}"):
        ImageFolder(tmp_path)
    with pytest.raises(
        ValueError, match=r"`size` of ImageFolder must be None or \(H, W\), two ints >= 1; got \(0, 3\)"
    ):
        ImageFolder(tmp_path, size=(0, 3))
    with pytest.raises(ValueError, match=r"`channels` of ImageFolder must be None, 1 or 3; got 2"):
        ImageFolder(tmp_path, channels=2)


def test_truncated_image_fails_on_access_naming_the_file(tmp_path, rng):
    path = save_image(rng.integers(0, 256, (64, 64), dtype=np.uint8), tmp_path / "a" / "x.png")
    path.write_bytes(path.read_bytes()[:100])  # the header survives, the pixel data does not
    dataset = ImageFolder(tmp_path).dataset()
    with pytest.raises(ValueError, match=f"cannot decode the image file {named(path)}"):
        dataset[0]


def test_split_files_and_patients(tmp_path, rng):
    make_folder(tmp_path, rng)
    folder = ImageFolder(tmp_path)
    unknown = write_splits(tmp_path / "unknown.json", {"train": ["nodule/x.png", "normal/pat20_img.png"]})
    with pytest.raises(
        ValueError, match=f"split file {named(unknown)} lists images in unknown class folder\\(s\\) 'nodule'"
    ):
        folder.datasets(split_file=unknown)
    missing = write_splits(tmp_path / "missing.json", {"train": ["normal/nope.png"]})
    with pytest.raises(
        ValueError, match=f"split file {named(missing)} lists unknown id\\(s\\) \\['normal/nope.png'\\]"
    ):
        folder.datasets(split_file=missing)
    cases = sorted(folder.cases)
    path = write_splits(tmp_path / "split.json", {"train": cases[:8], "val": cases[8:10], "test": cases[10:]})
    sets = folder.datasets(split_file=path)
    assert sorted(s["case"] for s in sets["val"]) == cases[8:10]

    def patient(path):
        return path.split("/")[1].split("_")[0]  # "patient1" or "pat01"

    sets = folder.datasets(fractions=(0.5, 0.25, 0.25), group=patient, seed=2)
    groups = {s: {x["group"] for x in sets[s]} for s in SPLITS}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])
    assert sum(len(sets[s]) for s in SPLITS) == 12


def test_image_folder_datamodule_batch(tmp_path, rng):
    make_folder(tmp_path, rng, rgb=True)
    dm = ImageFolder(tmp_path, size=(8, 8)).datamodule(fractions=(0.5, 0.25, 0.25), batch_size=3)
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape) == (3, 3, 8, 8) and batch["label"].dtype == torch.int64
    assert tuple(batch["label"].shape) == (3,) and dm.info["class_names"] == ["benign", "malignant", "normal"]
    method = create_method("ls", num_classes=3)
    target = method.make_target(batch)
    assert torch.equal(target.target, batch["label"])
    assert float(method(torch.zeros(3, 3), target)) == pytest.approx(np.log(3), rel=1e-6)  # uniform predictions


def write_medmnist(path, rng, *, rgb=False, sizes=(5, 2, 3), num_classes=4, **replace):
    arrays = {}
    for split, n in zip(SPLITS, sizes, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 6, 6, 3) if rgb else (n, 6, 6), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, num_classes, (n, 1)).astype(np.uint8)
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("rgb", [False, True])
def test_medmnist_round_trip(tmp_path, rng, rgb):
    arrays = write_medmnist(tmp_path / "mini.npz", rng, rgb=rgb)
    data = MedMNISTFile(tmp_path / "mini.npz", num_classes=4)
    sets = data.datasets()
    assert [len(sets[s]) for s in SPLITS] == [5, 2, 3] and data.info["in_channels"] == (3 if rgb else 1)
    sample = sets["test"][2]
    expected = arrays["test_images"][2]
    expected = expected.transpose(2, 0, 1) if rgb else expected[None]
    np.testing.assert_allclose(sample["image"].numpy(), expected / 255.0, rtol=1e-6)
    assert sample["label"].ndim == 0 and int(sample["label"]) == int(arrays["test_labels"][2, 0])
    assert sample["case"] == "test_000002" and sample["label"].dtype == torch.int64
    dm = data.datamodule(batch_size=4)
    batch = next(iter(dm.val_dataloader()))
    assert tuple(batch["image"].shape) == (2, 3 if rgb else 1, 6, 6) and tuple(batch["label"].shape) == (2,)


def test_medmnist_resize_and_inferred_classes(tmp_path, rng):
    write_medmnist(tmp_path / "mini.npz", rng, train_labels=np.array([[0], [1], [6], [2], [1]]))
    data = MedMNISTFile(tmp_path / "mini.npz", size=(8, 8), channels=3)
    assert data.num_classes == 7 and tuple(data.dataset("train")[0]["image"].shape) == (3, 8, 8)


def test_medmnist_errors(tmp_path, rng):
    path = tmp_path / "m.npz"
    write_medmnist(path, rng, val_labels=None)
    with pytest.raises(
        ValueError, match=f"MedMNIST file {named(path)} cannot be used: .*missing key\\(s\\) \\['val_labels'\\]"
    ):
        MedMNISTFile(path)
    write_medmnist(path, rng, train_labels=rng.integers(0, 2, (5, 14)))
    with pytest.raises(
        ValueError, match=f"`train_labels` of the MedMNIST file {named(path)} is multi-label, shape \\(5, 14\\)"
    ):
        MedMNISTFile(path)
    write_medmnist(path, rng, test_images=np.zeros((3, 6, 6), np.float32))
    with pytest.raises(
        ValueError, match=r"`test_images` of .* must be uint8 \(N, H, W\) or \(N, H, W, 3\); got float32"
    ):
        MedMNISTFile(path)
    write_medmnist(path, rng, val_labels=np.array([[0]]))
    with pytest.raises(ValueError, match=r"`val_labels` of .* must be integers \(N, 1\) with N = 2 images"):
        MedMNISTFile(path)
    write_medmnist(path, rng, num_classes=4)
    with pytest.raises(ValueError, match=f"labels of the MedMNIST file {named(path)} must be in \\[0, 1\\]"):
        MedMNISTFile(path, num_classes=2)
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match=f"MedMNIST file {named(path)} cannot be used"):
        MedMNISTFile(path)
    write_medmnist(path, rng)
    with pytest.raises(ValueError, match=r"`split` of MedMNISTFile.dataset must be one of"):
        MedMNISTFile(path).dataset("validation")
