"""convert_to_nnunet: nnU-Net v2 raw folders from generic and QUBIQ folders, geometry kept, labels encoded, refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from softlabels.integrations.nnunet.convert import convert_to_nnunet
from softlabels.integrations.nnunet.encoding import LabelEncoding, decode_foreground, decode_raters

AFFINE_2D = np.array([[0.5, 0, 0, -10.0], [0, 0.75, 0, 4.0], [0, 0, 2.0, 1.5], [0, 0, 0, 1]])
AFFINE_3D = np.array([[0, -0.8, 0, 30.0], [1.2, 0, 0, -5.0], [0, 0, 1.5, 2.0], [0, 0, 0, 1]])  # axes swapped, flipped


def _save(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _rater_folder(root: Path, shape: tuple[int, ...], affine: np.ndarray, num_raters: int = 3, cases=("a", "b")):
    """A generic folder images/ + raters/r1..rR/, random binary maps; returns {case: (image, raters)}."""
    rng = np.random.default_rng(0)
    data = {}
    for case in cases:
        image = rng.normal(size=shape).astype(np.float32)
        raters = rng.integers(0, 2, size=(num_raters, *shape)).astype(np.uint8)
        _save(root / "images" / f"{case}.nii.gz", image, affine)
        for r in range(num_raters):
            _save(root / "raters" / f"r{r + 1}" / f"{case}.nii.gz", raters[r], affine)
        data[case] = (image, raters)
    return data


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))
    return np.asarray(image.dataobj), image.affine


def _decoded(path: Path, num_raters: int) -> np.ndarray:
    """The rater maps ``(R, *spatial)`` that a written label map decodes to (decode_raters, nnU-Net's layout)."""
    written, _ = _read(path)
    assert written.dtype == np.uint8
    return decode_raters(torch.from_numpy(written)[None, None], num_raters)[0].numpy()


def _consecutive_labels(labels: dict) -> list[int]:
    values = set()
    for value in labels.values():
        values |= set(value) if isinstance(value, list) else {value}
    return sorted(values)


@pytest.mark.parametrize(("shape", "affine"), [((6, 5, 1), AFFINE_2D), ((4, 5, 3), AFFINE_3D)], ids=["2d", "3d"])
def test_generic_raters_to_nnunet(tmp_path, shape, affine):
    data = _rater_folder(tmp_path / "in", shape, affine)
    out = convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=12, name="Raters")
    folder = tmp_path / "raw" / "Dataset012_Raters"
    assert out["folder"] == str(folder) and out["cases"] == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset012_Raters"]  # no staging left
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["a_0000.nii.gz", "b_0000.nii.gz"]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["a.nii.gz", "b.nii.gz"]
    for case, (image, raters) in data.items():
        written_image, image_affine = _read(folder / "imagesTr" / f"{case}_0000.nii.gz")
        written_label, label_affine = _read(folder / "labelsTr" / f"{case}.nii.gz")
        assert written_image.shape == shape and written_label.shape == shape
        np.testing.assert_allclose(image_affine, affine, atol=1e-6)
        np.testing.assert_allclose(label_affine, affine, atol=1e-6)
        np.testing.assert_array_equal(written_image, image)
        assert written_label.dtype == np.uint8
        np.testing.assert_array_equal(written_label, raters[0] + 2 * raters[1] + 4 * raters[2])  # one bit per rater
        np.testing.assert_array_equal(_decoded(folder / "labelsTr" / f"{case}.nii.gz", 3), raters)
        count = decode_raters(torch.from_numpy(written_label)[None], 3).sum(1)  # popcount
        soft = decode_foreground(count, 3)
        assert torch.equal(soft[0, 1], torch.from_numpy(raters.astype(np.float64).mean(0).astype(np.float32)))
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {
        "background": 0,
        "at_least_1_of_3": [1, 2, 3, 4, 5, 6, 7],
        "at_least_2_of_3": [3, 5, 6, 7],
        "at_least_3_of_3": 7,
    }
    assert dataset["regions_class_order"] == [1, 3, 7]
    assert (dataset["numTraining"], dataset["file_ending"], dataset["channel_names"]) == (2, ".nii.gz", {"0": "image"})
    assert _consecutive_labels(dataset["labels"]) == list(range(8))
    assert "one bit per rater" in dataset["description"] and "3 raters" in dataset["description"]
    encoding = json.loads((folder / "softlabels_encoding.json").read_text())
    assert encoding == dataset["softlabels_encoding"] == out["encoding"]
    assert LabelEncoding.from_dict(encoding) == LabelEncoding("rater_bits", 3, "raters")


def test_one_rater_is_a_plain_binary_dataset(tmp_path):
    data = _rater_folder(tmp_path / "in", (4, 4, 1), AFFINE_2D, num_raters=1, cases=("a",))
    out = convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=1, name="One", channel_names=["MRI"])
    assert out["encoding"] == LabelEncoding("rater_bits", 1, "raters").to_dict()
    assert out["dataset_json"]["labels"] == {"background": 0, "foreground": 1}
    written, _ = _read(Path(out["folder"]) / "labelsTr" / "a.nii.gz")
    np.testing.assert_array_equal(written, data["a"][1][0])  # one rater: the code is its map
    assert "regions_class_order" not in out["dataset_json"]
    assert out["dataset_json"]["channel_names"] == {"0": "MRI"}


def test_confidence_to_nnunet(tmp_path):
    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, size=(5, 4, 1)).astype(np.uint8)
    confidence = rng.random((5, 4, 1)).astype(np.float32)
    _save(tmp_path / "in" / "images" / "c.nii.gz", rng.normal(size=(5, 4, 1)).astype(np.float32), AFFINE_2D)
    _save(tmp_path / "in" / "labels" / "c.nii.gz", label, AFFINE_2D)
    _save(tmp_path / "in" / "confidence" / "c.nii.gz", confidence, AFFINE_2D)
    out = convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=3, name="Conf", levels=4)
    assert out["encoding"] == LabelEncoding("foreground_levels", 4, "confidence").to_dict()
    assert out["dataset_json"]["regions_class_order"] == [1, 2, 3, 4]
    written, affine = _read(Path(out["folder"]) / "labelsTr" / "c.nii.gz")
    np.testing.assert_allclose(affine, AFFINE_2D, atol=1e-6)
    q = np.where(label == 1, confidence.astype(np.float64), 1 - confidence.astype(np.float64))
    assert written.shape == (5, 4, 1) and written.max() <= 4
    assert np.all(np.abs(written / 4 - q) <= 1 / 8 + 1e-9)


def test_png_hard_labels_rgb_image(tmp_path):
    rng = np.random.default_rng(2)
    labels = {c: rng.integers(0, 3, size=(3, 5)).astype(np.uint8) for c in ("p", "q")}  # PNG rows x columns
    labels["p"][0, 0] = 2  # the largest class is present: num_classes is inferred as 3
    for sub in ("images", "labels"):
        (tmp_path / "in" / sub).mkdir(parents=True)
    for case, label in labels.items():
        rgb = rng.integers(0, 255, size=(3, 5, 3)).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "in" / "images" / f"{case}.png")
        Image.fromarray(label).save(tmp_path / "in" / "labels" / f"{case}.png")
    out = convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=4, name="Png")
    folder = Path(out["folder"])
    assert out["encoding"]["kind"] == "labels" and out["encoding"]["num_classes"] == 3
    assert out["dataset_json"]["labels"] == {"background": 0, "class_1": 1, "class_2": 2}
    assert "regions_class_order" not in out["dataset_json"]
    assert out["dataset_json"]["channel_names"] == {"0": "channel_0", "1": "channel_1", "2": "channel_2"}
    assert sorted(p.name for p in (folder / "imagesTr").iterdir())[:3] == [f"p_000{c}.nii.gz" for c in range(3)]
    written, affine = _read(folder / "labelsTr" / "p.nii.gz")
    assert written.shape == (5, 3, 1)  # (x, y, 1): the PNG transposed
    np.testing.assert_array_equal(affine, np.eye(4))
    np.testing.assert_array_equal(written[..., 0], labels["p"].T)
    more = convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=5, name="Png4", num_classes=4)
    assert more["dataset_json"]["labels"]["class_3"] == 3


def test_qubiq_layout(tmp_path):
    rng = np.random.default_rng(3)
    maps = {}
    for case in ("case01", "case02"):
        _save(tmp_path / "q" / case / "image.nii.gz", rng.normal(size=(6, 6)).astype(np.float32), AFFINE_2D)
        maps[case] = rng.integers(0, 2, size=(2, 6, 6)).astype(np.uint8)
        for r in range(2):
            _save(tmp_path / "q" / case / f"task01_seg{r + 1:02d}.nii.gz", maps[case][r], AFFINE_2D)
        _save(tmp_path / "q" / case / "task02_seg01.nii.gz", np.zeros((6, 6), np.uint8), AFFINE_2D)
    out = convert_to_nnunet(tmp_path / "q", tmp_path / "raw", dataset_id=9, name="Qubiq", layout="qubiq", task=1)
    assert out["encoding"] == LabelEncoding("rater_bits", 2, "raters").to_dict()
    assert out["dataset_json"]["regions_class_order"] == [1, 3]
    written, affine = _read(Path(out["folder"]) / "labelsTr" / "case02.nii.gz")
    assert written.shape == (6, 6, 1)
    np.testing.assert_array_equal(written[..., 0], maps["case02"][0] + 2 * maps["case02"][1])  # seg01 is bit 0
    for case, rater_maps in maps.items():
        decoded = _decoded(Path(out["folder"]) / "labelsTr" / f"{case}.nii.gz", 2)
        np.testing.assert_array_equal(decoded[..., 0], rater_maps)
    np.testing.assert_allclose(affine, AFFINE_2D, atol=1e-6)


@pytest.mark.parametrize(
    ("num_raters", "shape", "affine"),
    [(2, (6, 5, 1), AFFINE_2D), (5, (4, 5, 3), AFFINE_3D), (8, (7, 6, 1), AFFINE_2D), (8, (3, 4, 5), AFFINE_3D)],
    ids=["2-raters-2d", "5-raters-3d", "8-raters-2d", "8-raters-3d"],
)
def test_converted_rater_maps_decode_to_the_input_rater_maps(tmp_path, num_raters, shape, affine):
    data = _rater_folder(tmp_path / "in", shape, affine, num_raters=num_raters)
    if num_raters == 8:  # all raters agree somewhere: the code 255 (uint8's largest) is written and read back
        for _, raters in data.values():
            raters[:, 0, 0, 0] = 1
        for r in range(num_raters):
            for case, (_, raters) in data.items():
                _save(tmp_path / "in" / "raters" / f"r{r + 1}" / f"{case}.nii.gz", raters[r], affine)
    out = convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=30, name="Decode")
    assert out["encoding"] == LabelEncoding("rater_bits", num_raters, "raters").to_dict()
    assert out["dataset_json"]["regions_class_order"] == [2**k - 1 for k in range(1, num_raters + 1)]
    for case, (_, raters) in data.items():
        path = Path(out["folder"]) / "labelsTr" / f"{case}.nii.gz"
        decoded = _decoded(path, num_raters)
        assert decoded.shape == (num_raters, *shape)
        np.testing.assert_array_equal(decoded, raters)  # every rater back, in the sorted rater-folder order
        if num_raters == 8:
            assert _read(path)[0][0, 0, 0] == 255


def _assert_nothing_written(raw: Path) -> None:
    assert not raw.exists() or not [p for p in raw.iterdir() if p.name.startswith(("Dataset", ".Dataset"))]


def test_multi_class_raters_are_refused_and_nothing_is_left(tmp_path):
    _rater_folder(tmp_path / "in", (4, 4, 1), AFFINE_2D)
    bad = tmp_path / "in" / "raters" / "r2" / "b.nii.gz"
    _save(bad, np.full((4, 4, 1), 2, np.uint8), AFFINE_2D)
    with pytest.raises(ValueError, match=f"rater map '{re.escape(str(bad))}' holds label 2: .*binary") as info:
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=2, name="Bad")
    assert "\n" not in str(info.value)
    _assert_nothing_written(tmp_path / "raw")


def test_more_than_eight_raters_are_refused_naming_the_case_and_nothing_is_left(tmp_path):
    _rater_folder(tmp_path / "in", (4, 4, 1), AFFINE_2D, num_raters=9)
    with pytest.raises(ValueError, match=r"case 'a' has 9 raters: nnU-Net label maps hold at most 8") as info:
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=2, name="Nine")
    assert "\n" not in str(info.value)
    _assert_nothing_written(tmp_path / "raw")
    old = _rater_folder(tmp_path / "eight", (4, 4, 1), AFFINE_2D, num_raters=8)
    convert_to_nnunet(tmp_path / "eight", tmp_path / "raw", dataset_id=2, name="Nine")  # 8 raters: converted
    with pytest.raises(ValueError, match="case 'a' has 9 raters"):
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=2, name="Nine", overwrite=True)
    kept = tmp_path / "raw" / "Dataset002_Nine"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset002_Nine"]  # no staging left
    assert json.loads((kept / "dataset.json").read_text())["softlabels_encoding"]["levels"] == 8
    np.testing.assert_array_equal(_decoded(kept / "labelsTr" / "b.nii.gz", 8), old["b"][1])


def test_existing_dataset_refused_unless_overwrite(tmp_path):
    _rater_folder(tmp_path / "in", (4, 4, 1), AFFINE_2D, num_raters=2)
    folder = tmp_path / "raw" / "Dataset020_X"
    folder.mkdir(parents=True)
    convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=20, name="X")  # an empty folder is fine
    (folder / "keep.txt").write_text("old")
    with pytest.raises(ValueError, match="exists and is not empty; pass overwrite=True"):
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=20, name="X")
    assert (folder / "keep.txt").exists()
    convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=20, name="X", overwrite=True)
    assert not (folder / "keep.txt").exists() and (folder / "dataset.json").exists()
    with pytest.raises(ValueError, match="already holds 'Dataset020_X' with dataset id 20"):
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=20, name="Y")


def test_a_failed_overwrite_keeps_the_old_dataset(tmp_path):
    _rater_folder(tmp_path / "in", (4, 4, 1), AFFINE_2D, num_raters=2)
    convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=21, name="Keep")
    _save(tmp_path / "in" / "raters" / "r1" / "a.nii.gz", np.full((4, 4, 1), 3, np.uint8), AFFINE_2D)
    with pytest.raises(ValueError, match="holds label 3"):
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=21, name="Keep", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset021_Keep"]
    assert len(list((tmp_path / "raw" / "Dataset021_Keep" / "labelsTr").iterdir())) == 2


def test_confidence_with_non_binary_labels_is_refused(tmp_path):
    _save(tmp_path / "in" / "images" / "c.nii.gz", np.zeros((3, 3, 1), np.float32), AFFINE_2D)
    _save(tmp_path / "in" / "labels" / "c.nii.gz", np.full((3, 3, 1), 2, np.uint8), AFFINE_2D)
    _save(tmp_path / "in" / "confidence" / "c.nii.gz", np.ones((3, 3, 1), np.float32), AFFINE_2D)
    with pytest.raises(ValueError, match=r"label map .*c.nii.gz' holds label 2: the confidence encoding"):
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=2, name="C")
    _assert_nothing_written(tmp_path / "raw")
    out = convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=2, name="C", source="labels")
    assert out["encoding"]["num_classes"] == 3


def test_qubiq_mixed_raters_refused(tmp_path):
    for case, raters in (("case01", 2), ("case02", 3)):
        _save(tmp_path / "q" / case / "image.nii.gz", np.zeros((3, 3), np.float32), np.eye(4))
        for r in range(raters):
            _save(tmp_path / "q" / case / f"task01_seg{r + 1:02d}.nii.gz", np.zeros((3, 3), np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="Every case must have the same raters"):
        convert_to_nnunet(tmp_path / "q", tmp_path / "raw", dataset_id=2, name="Q", layout="qubiq")
    _assert_nothing_written(tmp_path / "raw")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset_id": 0}, "`dataset_id` of convert_to_nnunet must be an int in \\[1, 999\\]; got 0"),
        ({"dataset_id": 1000}, "got 1000"),
        ({"name": "my data"}, "`name` of convert_to_nnunet.*got 'my data'"),
        ({"name": "../up"}, "got '../up'"),
        ({"levels": 0}, "`levels` of convert_to_nnunet"),
        ({"layout": "nnunet"}, "`layout` of convert_to_nnunet"),
        ({"source": "probs"}, "`source` of convert_to_nnunet"),
        ({"source": "confidence"}, "source='confidence' of convert_to_nnunet needs labels/ and confidence/"),
        ({"source": "labels"}, "needs labels/"),
        ({"channel_names": ["a", "b"]}, "`channel_names` of convert_to_nnunet must be 1 non-empty"),
        ({"layout": "qubiq", "task": 0}, "`task` of convert_to_nnunet"),
    ],
)
def test_argument_refusals(tmp_path, kwargs, message):
    _rater_folder(tmp_path / "in", (3, 3, 1), AFFINE_2D, num_raters=2, cases=("a",))
    arguments = {"dataset_id": 2, "name": "Args"} | kwargs
    with pytest.raises(ValueError, match=message):
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", **arguments)
    _assert_nothing_written(tmp_path / "raw")


def test_folder_without_targets_is_refused(tmp_path):
    _save(tmp_path / "in" / "images" / "a.nii.gz", np.zeros((3, 3, 1), np.float32), AFFINE_2D)
    with pytest.raises(ValueError, match=r"has no raters/, labels/ \(\+ confidence/\) to convert"):
        convert_to_nnunet(tmp_path / "in", tmp_path / "raw", dataset_id=2, name="Empty")
    with pytest.raises(ValueError, match="is not a folder"):
        (tmp_path / "file").write_text("x")
        convert_to_nnunet(tmp_path / "in", tmp_path / "file", dataset_id=2, name="Empty")


def test_the_cli_converts_and_refuses_with_one_line(tmp_path, capsys):
    from softlabels.cli import main

    root = tmp_path / "in"
    _rater_folder(root, (6, 5, 4), np.eye(4))
    argv = ["nnunet", "convert", "--input", str(root), "--output", str(tmp_path / "raw"), "--dataset-id", "7",
            "--name", "Tiny", "--channel-names", "CT"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Dataset007_Tiny" in out and "2 cases" in out and "rater_bits from raters" in out
    dataset = json.loads((tmp_path / "raw" / "Dataset007_Tiny" / "dataset.json").read_text())
    assert dataset["numTraining"] == 2 and dataset["softlabels_encoding"]["levels"] == 3
    assert dataset["channel_names"] == {"0": "CT"}
    assert main(argv) == 2  # the dataset exists: refused, one line, nothing changed
    err = capsys.readouterr().err
    assert err.startswith("softlabels nnunet: error: ") and len(err.strip().splitlines()) == 1
