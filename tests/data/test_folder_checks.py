"""Reading one data file: headers without voxels, image channels and axis order, value checks naming the file."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from softlabels.data.folder_checks import (
    image_layout,
    read_confidence,
    read_header,
    read_image,
    read_labels,
    read_soft_label,
)


def save_nifti(array, path, zooms=(1.0, 1.0, 1.0), affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0]) if affine is None else affine), str(path))
    return path


def save_png(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def named(path):
    return re.escape(repr(str(path)))


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_header_of_nifti_and_png(tmp_path):
    affine = np.array([[0.5, 0, 0, -3], [0, 0.7, 0, 2], [0, 0, 2.0, 1], [0, 0, 0, 1]])
    header = read_header(save_nifti(np.zeros((4, 5, 6, 2), np.float32), tmp_path / "a.nii.gz", affine=affine))
    assert header.shape == (4, 5, 6, 2) and not header.is_png
    assert header.spacing[:3] == pytest.approx((0.5, 0.7, 2.0))
    np.testing.assert_allclose(header.affine, affine)
    png = read_header(save_png(np.zeros((3, 7), np.uint8), tmp_path / "b.png"))  # rows, columns
    assert png.shape == (7, 3) and png.mode == "L" and png.spacing is None and png.affine is None
    assert read_header(save_png(np.zeros((3, 7, 3), np.uint8), tmp_path / "c.png")).shape == (7, 3, 3)


@pytest.mark.parametrize("name", ["bad.nii.gz", "bad.nii", "bad.png"])
def test_corrupt_files_are_named(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not an image at all" * 20)
    with pytest.raises(ValueError, match=f"cannot read .*{named(path)}"):
        read_header(path)


def test_other_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.nii, \.nii\.gz or \.png file; got .*a\.npy"):
        read_header(tmp_path / "a.npy")


def test_png_images_are_transposed_to_x_y(tmp_path, rng):
    grey = rng.integers(0, 256, (3, 5), dtype=np.uint8)
    image, header = read_image(save_png(grey, tmp_path / "g.png"))
    assert image.dtype == np.float32 and header.is_png
    np.testing.assert_array_equal(image, grey.T[None].astype(np.float64))
    rgb = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    image, _ = read_image(save_png(rgb, tmp_path / "c.png"))
    np.testing.assert_array_equal(image, np.transpose(rgb, (2, 1, 0)).astype(np.float64))
    deep = rng.integers(0, 65536, (3, 5), dtype=np.uint16)
    image, _ = read_image(save_png(deep, tmp_path / "d.png"))
    np.testing.assert_array_equal(image[0], deep.T.astype(np.float64))  # values as stored, never rescaled


def test_nifti_image_channels(tmp_path, rng):
    vol = rng.normal(size=(4, 5, 6)).astype(np.float32)
    image, _ = read_image(save_nifti(vol, tmp_path / "v.nii.gz"))
    np.testing.assert_array_equal(image, vol[None])
    multi = rng.normal(size=(4, 5, 6, 2)).astype(np.float32)
    image, _ = read_image(save_nifti(multi, tmp_path / "m.nii.gz"))
    np.testing.assert_array_equal(image, np.moveaxis(multi, -1, 0))
    slice2d = rng.normal(size=(4, 5, 1, 3)).astype(np.float32)
    image, _ = read_image(save_nifti(slice2d, tmp_path / "s.nii.gz"))
    np.testing.assert_array_equal(image, np.moveaxis(slice2d[:, :, 0], -1, 0))
    modal = rng.normal(size=(4, 5, 3)).astype(np.float32)  # QUBIQ's multimodal slices: channels on the third axis
    path = save_nifti(modal, tmp_path / "q.nii.gz")
    assert image_layout(read_header(path), (4, 5)) == (3, (4, 5), True)
    assert image_layout(read_header(path), None) == (1, (4, 5, 3), False)
    image, _ = read_image(path, reference=(4, 5))
    np.testing.assert_array_equal(image, np.moveaxis(modal, -1, 0))


def test_bad_images(tmp_path):
    rgba = save_png(np.zeros((3, 4, 4), np.uint8), tmp_path / "rgba.png")
    with pytest.raises(ValueError, match=f"image PNG {named(rgba)} must be grey or RGB; got mode 'RGBA'"):
        read_image(rgba)
    nan = save_nifti(np.array([[[np.nan, 0.0]]], np.float32), tmp_path / "nan.nii.gz")
    with pytest.raises(ValueError, match=f"{named(nan)} holds 1 NaN/inf"):
        read_image(nan)


def test_labels_range_and_integers(tmp_path):
    ok = save_nifti(np.array([[[0.0], [2.0]]], np.float32), tmp_path / "ok.nii.gz")  # (x, y, 1): 2D
    assert read_labels(ok, 3).tolist() == [[0, 2]] and read_labels(ok, 3).dtype == np.int64
    with pytest.raises(ValueError, match=f"label map {named(ok)} must hold labels in \\[0, 1\\].*max 2"):
        read_labels(ok, 2)
    neg = save_nifti(np.array([[[-1, 0]]], np.int16), tmp_path / "neg.nii.gz")
    with pytest.raises(ValueError, match=f"rater map {named(neg)} must hold labels.*min -1"):
        read_labels(neg, 2, what="rater map")
    frac = save_nifti(np.array([[[0.5, 1.0]]], np.float32), tmp_path / "frac.nii.gz")
    with pytest.raises(ValueError, match=f"{named(frac)} must hold integer labels"):
        read_labels(frac, 2)


def test_soft_label_checks(tmp_path, rng):
    logits = rng.normal(size=(4, 5, 1, 3))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    soft = read_soft_label(save_nifti(probs, tmp_path / "p.nii.gz"), 3)
    np.testing.assert_array_equal(soft, np.moveaxis(probs[:, :, 0], -1, 0))
    fg = rng.uniform(size=(4, 5, 6)).astype(np.float32)
    soft = read_soft_label(save_nifti(fg, tmp_path / "fg.nii.gz"), 2)
    np.testing.assert_allclose(soft, np.stack([1 - fg, fg]), atol=1e-7)
    with pytest.raises(ValueError, match=f"{named(tmp_path / 'p.nii.gz')} has 3 class channel\\(s\\); expected num"):
        read_soft_label(tmp_path / "p.nii.gz", 4)
    high = probs.copy()
    high[0, 0, 0] = [1.25, -0.25, 0.0]
    with pytest.raises(ValueError, match=f"{named(tmp_path / 'high.nii.gz')} must be probabilities in \\[0, 1\\]"):
        read_soft_label(save_nifti(high, tmp_path / "high.nii.gz"), 3)


def test_soft_label_sum_tolerance_is_1e4(tmp_path):
    near = np.zeros((2, 2, 1, 2), np.float32) + np.float32([0.5, 0.5 + 5e-5])
    assert read_soft_label(save_nifti(near, tmp_path / "near.nii.gz"), 2).shape == (2, 2, 2)
    off = np.zeros((2, 2, 1, 2), np.float32) + np.float32([0.5, 0.5 + 3e-4])
    with pytest.raises(ValueError, match=f"{named(tmp_path / 'off.nii.gz')} must sum to 1.*tolerance 0.0001"):
        read_soft_label(save_nifti(off, tmp_path / "off.nii.gz"), 2)


def test_confidence(tmp_path, rng):
    conf = rng.uniform(size=(4, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(read_confidence(save_nifti(conf, tmp_path / "c.nii.gz")), conf)
    png = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    np.testing.assert_allclose(read_confidence(save_png(png, tmp_path / "c.png")), png.T / 255.0, rtol=1e-6)
    out = save_nifti(np.array([[[0.5, 1.5]]], np.float32), tmp_path / "out.nii.gz")
    with pytest.raises(
        ValueError, match=f"confidence map {named(out)} must hold values in \\[0, 1\\]; got min 0.5, max 1.5"
    ):
        read_confidence(out)
    deep = save_png(np.zeros((3, 4), np.uint16), tmp_path / "deep.png")
    with pytest.raises(ValueError, match=f"confidence PNG {named(deep)} must be 8-bit grey"):
        read_confidence(deep)
