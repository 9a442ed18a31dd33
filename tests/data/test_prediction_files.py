"""Reading prediction and reference files: formats, axis order, case matching, soft references, clear errors."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from softlabels.data.prediction_files import (
    CaseFiles,
    case_stem,
    example_folder,
    index_folder,
    list_cases,
    load_case,
    read_label_map,
    read_probs,
)

RNG_SEED = 7


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def save_nifti(array: np.ndarray, path, zooms=(1.0, 1.0, 1.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(path))


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


def test_case_stem():
    assert case_stem("a/b/Case_01.nii.gz") == "Case_01"
    assert case_stem("x.NII") == "x"
    assert case_stem("x.y.npz") == "x.y"
    assert case_stem("x.png") == "x"
    assert case_stem("x.pkl") is None
    assert case_stem(".hidden.nii.gz") is None
    assert case_stem(".nii.gz") is None


def test_nifti_4d_classes_last_and_spacing(tmp_path, rng):
    probs = softmax(rng.normal(size=(5, 6, 7, 3)), -1).astype(np.float32)
    save_nifti(probs, tmp_path / "a.nii.gz", zooms=(0.5, 0.7, 2.0))
    out, spacing = read_probs(tmp_path / "a.nii.gz")
    assert out.shape == (3, 5, 6, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.moveaxis(probs, -1, 0))
    assert spacing == pytest.approx((0.5, 0.7, 2.0))


def test_nifti_3d_is_binary_foreground(tmp_path, rng):
    fg = rng.uniform(size=(4, 5, 6)).astype(np.float32)
    save_nifti(fg, tmp_path / "a.nii")
    out, _ = read_probs(tmp_path / "a.nii")
    np.testing.assert_array_equal(out, fg[None])


def test_nnunet_npz_axes_reversed_to_match_nifti(tmp_path, rng):
    probs_xyz = softmax(rng.normal(size=(3, 5, 6, 7)), 0).astype(np.float32)  # (C, x, y, z)
    np.savez_compressed(tmp_path / "a.npz", probabilities=probs_xyz.transpose(0, 3, 2, 1))  # nnU-Net (C, z, y, x)
    out, spacing = read_probs(tmp_path / "a.npz")
    np.testing.assert_array_equal(out, probs_xyz)
    assert spacing is None  # no .pkl beside it: no geometry
    (tmp_path / "a.pkl").write_bytes(b"not a pickle")  # the .pkl is read (tests/data/test_nnunet_files.py)
    with pytest.raises(ValueError, match=r"cannot read the nnU-Net properties file .*a\.pkl"):
        read_probs(tmp_path / "a.npz")


def test_half_precision_npz_is_renormalised(tmp_path, rng):
    probs = softmax(rng.normal(size=(4, 1, 8, 9)), 0).astype(np.float16)
    np.savez(tmp_path / "a.npz", probabilities=probs)
    out, _ = read_probs(tmp_path / "a.npz")
    assert out.dtype == np.float32 and out.shape == (4, 9, 8)  # trailing singleton z dropped
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-6)
    np.testing.assert_allclose(out, probs.astype(np.float64).transpose(0, 3, 2, 1)[..., 0], atol=2e-3)


def test_half_precision_npz_not_summing_to_one_is_an_error(tmp_path, rng):
    probs = (0.9 * softmax(rng.normal(size=(3, 2, 4, 4)), 0)).astype(np.float16)
    np.savez(tmp_path / "a.npz", probabilities=probs)
    with pytest.raises(
        ValueError, match=r"a\.npz.*sum to 1 over the classes within 0\.01; got a maximum deviation of 0\.1"
    ):
        read_probs(tmp_path / "a.npz")


def test_png_labels_transposed_like_nifti(tmp_path):
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)  # (rows, columns)
    Image.fromarray(labels).save(tmp_path / "a.png")
    out, spacing = read_label_map(tmp_path / "a.png")
    np.testing.assert_array_equal(out, labels.T)
    assert out.dtype == np.int64 and spacing is None


def test_nifti_float_labels_must_be_integers(tmp_path):
    save_nifti(np.array([[[0.0, 1.0]]], dtype=np.float32), tmp_path / "ok.nii.gz")
    assert read_label_map(tmp_path / "ok.nii.gz")[0].tolist() == [[[0, 1]]]
    save_nifti(np.array([[[0.0, 0.5]]], dtype=np.float32), tmp_path / "bad.nii.gz")
    with pytest.raises(ValueError, match=r"bad\.nii\.gz' must hold integer labels"):
        read_label_map(tmp_path / "bad.nii.gz")


def test_rgb_png_label_rejected(tmp_path):
    Image.fromarray(np.zeros((3, 4, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png' must have one channel"):
        read_label_map(tmp_path / "rgb.png")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.nii.gz", b"not a gzip file"),
        ("a.nii", b"garbage" * 10),
        ("a.npz", b"PK\x03\x04 truncated zip"),
    ],
)
def test_corrupt_file_named(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=rf"cannot read the .* file '.*{name}'"):
        read_probs(tmp_path / name)


def test_truncated_nifti_named(tmp_path, rng):
    save_nifti(rng.uniform(size=(8, 8, 8)).astype(np.float32), tmp_path / "a.nii.gz")
    data = gzip.decompress((tmp_path / "a.nii.gz").read_bytes())
    (tmp_path / "a.nii.gz").write_bytes(gzip.compress(data[: len(data) // 2]))
    with pytest.raises(ValueError, match=r"cannot read the NIfTI file '.*a\.nii\.gz'"):
        read_probs(tmp_path / "a.nii.gz")


def test_npz_without_probabilities_key(tmp_path):
    np.savez(tmp_path / "a.npz", softmax=np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"no key 'probabilities'.*\['softmax'\]"):
        read_probs(tmp_path / "a.npz")


def test_index_folder_prefers_npz_and_rejects_duplicates(tmp_path):
    for name in ("a.npz", "a.nii.gz", "a.pkl", "b.nii.gz", "plans.json"):
        (tmp_path / name).write_bytes(b"")
    found = index_folder(tmp_path, (".npz", ".nii.gz", ".nii"), what="--probs")
    assert {k: v.name for k, v in found.items()} == {"a": "a.npz", "b": "b.nii.gz"}
    (tmp_path / "b.nii").write_bytes(b"")
    with pytest.raises(ValueError, match=r"case 'b' has two files in the --probs folder"):
        index_folder(tmp_path, (".npz", ".nii.gz", ".nii"), what="--probs")


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"the --probs folder '.*nope' does not exist"):
        list_cases(tmp_path / "nope", tmp_path, kind="labels")
    (tmp_path / "p").mkdir()
    with pytest.raises(ValueError, match=r"no .npz / .nii.gz / .nii files in the --probs folder"):
        list_cases(tmp_path / "p", tmp_path, kind="labels")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        index_folder(tmp_path / "f.txt", (".png",), what="--labels")


def test_unmatched_cases_listed(tmp_path):
    for name in [f"p/case{i}.npz" for i in range(8)] + ["l/case0.png", "l/other.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"7 prediction\(s\) without a reference.*'case1'.*and 2 more.*'other'"):
        list_cases(tmp_path / "p", tmp_path / "l", kind="labels")


def test_raters_soft_reference_is_mean_of_one_hot(tmp_path, rng):
    shape = (4, 5, 3)
    raters = [rng.integers(0, 3, size=shape).astype(np.uint8) for _ in range(3)]
    probs = softmax(rng.normal(size=(*shape, 3)), -1).astype(np.float32)
    save_nifti(probs, tmp_path / "p" / "c.nii.gz", zooms=(1.0, 2.0, 3.0))  # the raters' grid: same voxel sizes
    for r, labels in enumerate(raters):
        save_nifti(labels, tmp_path / "raters" / f"r{r}" / "c.nii.gz", zooms=(1.0, 2.0, 3.0))
    cases = list_cases(tmp_path / "p", tmp_path / "raters", kind="raters")
    assert [p.parent.name for p in cases[0].reference] == ["r0", "r1", "r2"]
    case = load_case(cases[0], kind="raters")
    expected = np.mean([np.eye(3)[lab].transpose(3, 0, 1, 2) for lab in raters], axis=0)
    assert case.target.shape == (1, 3, *shape)
    np.testing.assert_allclose(case.target[0].numpy(), expected, atol=1e-7)
    assert case.spacing == pytest.approx((1.0, 2.0, 3.0))


def test_raters_binary_single_channel(tmp_path, rng):
    raters = [rng.integers(0, 2, size=(6, 7)).astype(np.uint8) for _ in range(2)]
    np.savez(tmp_path / "c.npz", probabilities=rng.uniform(size=(1, 7, 6)).astype(np.float32))
    for r, labels in enumerate(raters):
        (tmp_path / f"r{r}").mkdir()
        Image.fromarray(labels.T).save(tmp_path / f"r{r}" / "c.png")
    case = load_case(CaseFiles("c", tmp_path / "c.npz", (tmp_path / "r0/c.png", tmp_path / "r1/c.png")), kind="raters")
    np.testing.assert_allclose(case.target[0, 0].numpy(), np.mean(raters, axis=0))


def test_rater_label_out_of_range(tmp_path):
    np.savez(tmp_path / "c.npz", probabilities=np.full((2, 1, 2, 2), 0.5, dtype=np.float32))
    Image.fromarray(np.array([[0, 5], [1, 0]], dtype=np.uint8)).save(tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"r\.png' must hold labels in \[0, 1\]; got min 0, max 5"):
        load_case(CaseFiles("c", tmp_path / "c.npz", (tmp_path / "r.png",)), kind="raters")


def test_no_rater_subfolders(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.npz").write_bytes(b"")
    (tmp_path / "raters").mkdir()
    with pytest.raises(ValueError, match="one sub-folder per rater; found none"):
        list_cases(tmp_path / "p", tmp_path / "raters", kind="raters")


def test_shape_mismatch_names_case(tmp_path, rng):
    save_nifti(softmax(rng.normal(size=(4, 4, 4, 2)), -1).astype(np.float32), tmp_path / "p.nii.gz")
    save_nifti(np.zeros((4, 4, 5), dtype=np.uint8), tmp_path / "l.nii.gz")
    files = CaseFiles("case7", tmp_path / "p.nii.gz", (tmp_path / "l.nii.gz",))
    with pytest.raises(ValueError, match=r"case 'case7': shape mismatch.*\(4, 4, 4\).*\(4, 4, 5\)"):
        load_case(files, kind="labels")


def test_nan_names_case(tmp_path, rng):
    probs = softmax(rng.normal(size=(4, 4, 4, 2)), -1).astype(np.float32)
    probs[1, 2, 3, 0] = np.nan
    save_nifti(probs, tmp_path / "p.nii.gz")
    save_nifti(np.zeros((4, 4, 4), dtype=np.uint8), tmp_path / "l.nii.gz")
    with pytest.raises(ValueError, match=r"case 'case3'.*holds 1 NaN/inf value"):
        load_case(CaseFiles("case3", tmp_path / "p.nii.gz", (tmp_path / "l.nii.gz",)), kind="labels")


def test_num_classes_checked(tmp_path, rng):
    save_nifti(softmax(rng.normal(size=(4, 4, 4, 2)), -1).astype(np.float32), tmp_path / "p.nii.gz")
    save_nifti(np.zeros((4, 4, 4), dtype=np.uint8), tmp_path / "l.nii.gz")
    with pytest.raises(ValueError, match=r"case 'x'.*2 class channel\(s\); expected num_classes=3"):
        load_case(CaseFiles("x", tmp_path / "p.nii.gz", (tmp_path / "l.nii.gz",)), kind="labels", num_classes=3)


def test_example_folder_is_small_and_complete():
    root = example_folder()
    names = {p.name for p in (root / "probs").iterdir()}
    assert len(names) == 4
    for sub in ("labels", "raters/rater1", "raters/rater2", "raters/rater3"):
        assert {p.name for p in (root / sub).iterdir()} == names
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 1.5e6
    case = load_case(list_cases(root / "probs", root / "labels", kind="labels")[0], kind="labels")
    assert case.probs.shape == (1, 3, 32, 32, 16) and case.target.shape == (1, 32, 32, 16)
    assert set(case.target.unique().tolist()) == {0, 1, 2}
    assert case.spacing == pytest.approx((1.0, 1.0, 2.0))


def test_example_is_reproduced_by_its_generator(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[2] / "scripts" / "make_example.py"
    spec = importlib.util.spec_from_file_location("make_example", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    root = example_folder()
    shipped = sorted(p.relative_to(root) for p in root.rglob("*.nii.gz"))
    assert shipped == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.nii.gz"))
    for rel in shipped:
        assert (tmp_path / rel).read_bytes() == (root / rel).read_bytes(), rel


# ------------------------------------------------------------------------------------------------ unreadable entries
def make_entry(folder, name, kind):
    import os

    path = folder / name
    if kind == "dangling":
        os.symlink(folder / "missing" / name, path)
    elif kind == "loop":
        os.symlink(path, path)
    elif kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dangling", "is a broken symbolic link"),
        ("loop", "is a symbolic link loop"),
        ("folder", "is a folder, not a file"),
        ("fifo", "is not a regular file"),
    ],
)
def test_index_folder_names_entries_it_cannot_read(tmp_path, kind, message):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    path = make_entry(tmp_path, "b.nii.gz", kind)
    with pytest.raises(ValueError, match=rf"'{path}' in the --labels folder {message}"):
        index_folder(tmp_path, (".nii.gz", ".nii", ".png"), what="--labels")


def test_unreadable_entries_with_other_suffixes_are_ignored(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    make_entry(tmp_path, "notes.txt", "dangling")
    make_entry(tmp_path, "b.png", "dangling")  # not a probability-map suffix: not listed for --probs
    assert list(index_folder(tmp_path, (".npz", ".nii.gz", ".nii"), what="--probs")) == ["a"]
    with pytest.raises(ValueError, match=r"b\.png' in the --labels folder is a broken symbolic link"):
        index_folder(tmp_path, (".nii.gz", ".nii", ".png"), what="--labels")


def test_broken_link_among_rater_folders_is_named(tmp_path):
    import os

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.npz").write_bytes(b"")
    (tmp_path / "raters" / "r1").mkdir(parents=True)
    (tmp_path / "raters" / "r1" / "a.png").write_bytes(b"")
    os.symlink(tmp_path / "gone", tmp_path / "raters" / "r2")
    with pytest.raises(ValueError, match=r"raters/r2' in the --raters folder is a broken symbolic link"):
        list_cases(tmp_path / "p", tmp_path / "raters", kind="raters")


# ----------------------------------------------------------------------------------------------------- geometry
def grid(zooms=(1.5, 2.0, 2.5), origin=(4.0, -3.0, 7.0)) -> np.ndarray:
    out = np.diag([*zooms, 1.0])
    out[:3, 3] = origin
    return out


def reversed_axis(array: np.ndarray, affine: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The same image with voxel axis ``axis`` stored reversed (the affine adjusted)."""
    out = affine.copy()
    out[:3, axis] = -affine[:3, axis]
    out[:3, 3] = affine[:3, 3] + (array.shape[axis] - 1) * affine[:3, axis]
    return np.flip(array, axis).copy(), out


def test_soft_reference_stored_flipped_and_permuted_is_matched(tmp_path, rng):
    soft = softmax(rng.normal(size=(5, 4, 3, 2)), -1).astype(np.float32)
    probs = softmax(rng.normal(size=(5, 4, 3, 2)), -1).astype(np.float32)
    nib.save(nib.Nifti1Image(probs, grid()), str(tmp_path / "p.nii.gz"))
    stored, affine = reversed_axis(soft, grid(), 1)
    affine[:3, :3] = affine[:3, [2, 0, 1]]  # store axes (z, x, y)
    nib.save(nib.Nifti1Image(stored.transpose(2, 0, 1, 3).copy(), affine), str(tmp_path / "r.nii.gz"))
    case = load_case(CaseFiles("c", tmp_path / "p.nii.gz", (tmp_path / "r.nii.gz",)), kind="ref_probs")
    np.testing.assert_array_equal(case.target[0].numpy(), np.moveaxis(soft, -1, 0))
    assert case.spacing == pytest.approx((1.5, 2.0, 2.5))


def test_npz_prediction_raters_are_matched_to_the_first_rater(tmp_path, rng):
    raters = [rng.integers(0, 2, size=(4, 5, 3)).astype(np.uint8) for _ in range(2)]
    np.savez(tmp_path / "c.npz", probabilities=np.full((2, 3, 5, 4), 0.5, dtype=np.float32))
    nib.save(nib.Nifti1Image(raters[0], grid()), str(tmp_path / "r0.nii.gz"))
    nib.save(nib.Nifti1Image(*reversed_axis(raters[1], grid(), 0)), str(tmp_path / "r1.nii.gz"))
    files = CaseFiles("c", tmp_path / "c.npz", (tmp_path / "r0.nii.gz", tmp_path / "r1.nii.gz"))
    case = load_case(files, kind="raters")
    expected = np.mean([np.eye(2)[r].transpose(3, 0, 1, 2) for r in raters], axis=0)
    np.testing.assert_allclose(case.target[0].numpy(), expected)
    assert case.spacing == pytest.approx((1.5, 2.0, 2.5))


def test_2d_label_stored_flipped_matches_a_slice_prediction(tmp_path, rng):
    labels = rng.integers(0, 3, size=(6, 5)).astype(np.uint8)
    nib.save(nib.Nifti1Image(np.eye(3, dtype=np.float32)[labels][:, :, None], grid()), str(tmp_path / "p.nii.gz"))
    stored, affine = reversed_axis(labels, grid(zooms=(1.5, 2.0, 5.0)), 1)  # other slice thickness: not compared
    nib.save(nib.Nifti1Image(stored, affine), str(tmp_path / "l.nii.gz"))
    case = load_case(CaseFiles("s", tmp_path / "p.nii.gz", (tmp_path / "l.nii.gz",)), kind="labels")
    np.testing.assert_array_equal(case.target[0].numpy(), labels)
    assert case.spacing == pytest.approx((1.5, 2.0))


@pytest.mark.parametrize(
    ("label_grid", "message"),
    [
        (grid(zooms=(1.5, 2.01, 2.5)), r"different voxel sizes, \(1\.5, 2\.01, 2\.5\) mm and \(1\.5, 2, 2\.5\) mm"),
        (grid(origin=(4.0, -3.0, 7.01)), r"different origins .*\(4, -3, 7\.01\) mm and \(4, -3, 7\) mm"),
    ],
)
def test_grids_differing_beyond_the_tolerance_are_refused(tmp_path, rng, label_grid, message):
    labels = rng.integers(0, 2, size=(4, 5, 3)).astype(np.uint8)
    nib.save(nib.Nifti1Image(np.eye(2, dtype=np.float32)[labels], grid()), str(tmp_path / "p.nii.gz"))
    files = CaseFiles("k", tmp_path / "p.nii.gz", (tmp_path / "l.nii.gz",))
    near = grid(zooms=(1.5, 2.0005, 2.5), origin=(4.0, -3.0, 7.0005))  # within 1e-3 mm + 1e-4 × the value
    nib.save(nib.Nifti1Image(labels, near), str(tmp_path / "l.nii.gz"))
    np.testing.assert_array_equal(load_case(files, kind="labels").target[0].numpy(), labels)
    nib.save(nib.Nifti1Image(labels, label_grid), str(tmp_path / "l.nii.gz"))
    with pytest.raises(ValueError, match=message) as info:
        load_case(files, kind="labels")
    assert f"case 'k': the reference {str(tmp_path / 'l.nii.gz')!r} and the prediction" in str(info.value)
    assert repr(str(tmp_path / "p.nii.gz")) in str(info.value)


def test_rotated_grid_is_refused(tmp_path, rng):
    labels = rng.integers(0, 2, size=(4, 5, 3)).astype(np.uint8)
    nib.save(nib.Nifti1Image(np.eye(2, dtype=np.float32)[labels], grid()), str(tmp_path / "p.nii.gz"))
    angle = np.deg2rad(10.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rotated = grid()
    rotated[:3, :3] = rotation @ rotated[:3, :3]
    nib.save(nib.Nifti1Image(labels, rotated), str(tmp_path / "l.nii.gz"))
    with pytest.raises(ValueError, match=r"case 'r': the voxel axes of the reference .* point in different directions"):
        load_case(CaseFiles("r", tmp_path / "p.nii.gz", (tmp_path / "l.nii.gz",)), kind="labels")
