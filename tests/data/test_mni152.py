"""MNI152 2009 template from nilearn's bundled files: offline loading, soft targets, slices/patches, slab splits.

Every expected value is computed here from the raw files with nibabel + NumPy (never remembered numbers).
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from softlabels.data import mni152 as mni
from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.mni152 import (
    MNI152_CLASS_NAMES,
    MNI152_FILES,
    MNI152_LICENSE,
    MNI152_REFERENCES,
    MNI152_SHAPE,
    MNI152Volumes,
    load_mni152,
    mni152_datamodule,
    mni152_datasets,
    mni152_soft_target,
    slab_splits,
)

SPEC = importlib.util.find_spec("nilearn")
pytestmark = pytest.mark.skipif(SPEC is None, reason="nilearn (its bundled data files) is not installed")
DATA = Path(SPEC.submodule_search_locations[0]) / "datasets" / "data" if SPEC else Path()
FAST = {"downsample": 2, "min_brain_voxels": 100, "gap": 2, "num_slabs": 6}  # 99×117×95 voxels: quick on a CPU


def raw_codes(key: str) -> np.ndarray:
    image = nib.load(DATA / MNI152_FILES[key])
    assert image.get_data_dtype() == np.uint8
    return np.asarray(image.dataobj).astype(np.int64)


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    return {key: raw_codes(key) / 255.0 for key in ("t1", "gm", "wm")}


@pytest.fixture(scope="module")
def volumes() -> MNI152Volumes:
    return load_mni152()


@pytest.fixture(scope="module")
def fast(volumes) -> tuple[SampleDataset, ...]:
    return mni152_datasets(volumes, **FAST)


@pytest.fixture(scope="module")
def fast4(volumes) -> tuple[SampleDataset, ...]:
    return mni152_datasets(volumes, num_classes=4, **FAST)


def reference_target(raw: dict[str, np.ndarray], num_classes: int, threshold: float = 0.0) -> np.ndarray:
    other = 1.0 - raw["gm"] - raw["wm"]
    assert other.min() > -1e-12  # GM + WM <= 1 up to rounding
    other = np.maximum(other, 0.0)
    if num_classes == 3:
        return np.stack([other, raw["gm"], raw["wm"]])
    mask = raw["t1"] > threshold
    return np.stack([other * ~mask, other * mask, raw["gm"], raw["wm"]])


def block_mean(array: np.ndarray, factor: int, fill: float = 0.0) -> np.ndarray:
    pad = [(0, -n % factor) for n in array.shape]
    padded = np.pad(array, pad, constant_values=fill)
    x, y, z = (n // factor for n in padded.shape)
    return padded.reshape(x, factor, y, factor, z, factor).mean(axis=(1, 3, 5))


def slab_of(index: int, ranges: list[tuple[int, int]]) -> tuple[int, int] | None:
    return next(((lo, hi) for lo, hi in ranges if lo <= index < hi), None)


def copy_root(tmp_path: Path) -> Path:
    for name in MNI152_FILES.values():
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


def test_loads_with_the_network_blocked(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    vol = load_mni152()
    train, val, test = mni152_datasets(vol, downsample=4, min_brain_voxels=20, gap=1, num_slabs=5)
    assert vol.t1.shape == MNI152_SHAPE and len(train) and len(val) and len(test)


def test_shapes_ranges_affine_and_values(volumes, raw):
    assert MNI152_SHAPE == (197, 233, 189)
    for key in ("t1", "gm", "wm"):
        array = getattr(volumes, key)
        assert array.shape == (197, 233, 189) and array.dtype == np.float64
        assert array.min() >= 0.0 and array.max() <= 1.0
        np.testing.assert_array_equal(array, raw[key])
        np.testing.assert_array_equal(volumes.affine, nib.load(DATA / MNI152_FILES[key]).affine)
        assert volumes.paths[key] == DATA / MNI152_FILES[key]


def test_a_user_copy_of_the_files_loads_the_same(tmp_path, volumes):
    copy = load_mni152(copy_root(tmp_path))
    np.testing.assert_array_equal(copy.gm, volumes.gm)
    assert copy.paths["wm"] == tmp_path / MNI152_FILES["wm"]


@pytest.mark.parametrize("num_classes", [3, 4])
def test_soft_target_is_a_distribution_and_matches_numpy(volumes, raw, num_classes):
    assert (raw_codes("gm") + raw_codes("wm")).max() <= 255  # GM + WM <= 1 holds exactly in the codes
    target = mni152_soft_target(volumes, num_classes=num_classes)
    assert target.shape == (num_classes, *MNI152_SHAPE)
    assert target.min() >= 0.0 and target.max() <= 1.0
    assert np.abs(target.sum(0) - 1.0).max() <= 1e-12
    assert np.abs(target - reference_target(raw, num_classes)).max() <= 1e-12


def test_four_classes_split_other_by_the_brain_mask(volumes, raw):
    target = mni152_soft_target(volumes, num_classes=4, brain_threshold=0.2)
    mask = raw["t1"] > 0.2
    assert np.all(target[1][~mask] == 0.0) and np.all(target[0][mask] == 0.0)
    assert np.abs(target[0] + target[1] - mni152_soft_target(volumes)[0]).max() <= 1e-15
    assert np.abs(target - reference_target(raw, 4, 0.2)).max() <= 1e-12
    assert target[1][mask].mean() > 0.05  # a real CSF-like mass inside the brain


def test_soft_voxel_counts_match_the_raw_files(volumes, raw):
    target = mni152_soft_target(volumes)
    for channel, key in ((1, "gm"), (2, "wm")):
        expected = int(((raw[key] > 0.02) & (raw[key] < 0.98)).sum())
        assert int(((target[channel] > 0.02) & (target[channel] < 0.98)).sum()) == expected
        assert expected > 1_000_000  # docs/data/mni152.md: GM 1.77 M, WM 1.23 M soft voxels


def test_the_template_is_exactly_left_right_symmetric(volumes):
    for key in ("t1", "gm", "wm"):
        array = getattr(volumes, key)
        assert np.abs(array - array[::-1]).max() == 0.0
    target = mni152_soft_target(volumes, num_classes=4)
    assert np.abs(target - target[:, ::-1]).max() == 0.0


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_slices_lie_in_their_slabs_with_gaps_and_match_numpy(volumes, raw, fast, axis):
    datasets = fast if axis == "axial" else mni152_datasets(volumes, axis=axis, **FAST)
    a = mni._AXES[axis]
    slabs = datasets[0].info["slabs"]
    t1 = np.moveaxis(block_mean(raw["t1"], 2), a, 0)
    gm = np.moveaxis(block_mean(raw["gm"], 2), a, 0)
    indices = {}
    for ds, name in zip(datasets, ("train", "val", "test"), strict=True):
        assert isinstance(ds, SampleDataset) and ds.info["split"] == name and len(ds) > 0
        indices[name] = [s["index"] for s in ds.samples]
        for sample in ds.samples:
            assert slab_of(sample["index"], slabs[name]) is not None
            assert sample["case"] == f"mni152_slab{sample['slab']:02d}_{axis}{sample['index']:03d}"
            assert sample["axis"] == axis
            np.testing.assert_allclose(sample["image"][0].numpy(), t1[sample["index"]], rtol=0, atol=1e-6)
            np.testing.assert_allclose(sample["soft_label"][1].numpy(), gm[sample["index"]], rtol=0, atol=1e-6)
    names = [s["case"] for ds in datasets for s in ds.samples]
    assert len(set(names)) == len(names)  # one name per slice: reports and prediction files never collide
    for first in indices:
        for second in indices:
            if first != second:
                gaps = np.abs(np.subtract.outer(indices[first], indices[second]))
                assert gaps.min() > FAST["gap"], (first, second)
    if axis == "sagittal":  # one hemisphere only: every 2-voxel block lies at or left of the midline x = 98
        assert max(max(v) for v in indices.values()) * 2 + 1 <= (MNI152_SHAPE[0] - 1) // 2


def test_patches_lie_entirely_in_their_slabs_with_gaps(volumes, raw):
    size = (16, 16, 16)
    datasets = mni152_datasets(volumes, mode="patches", patch_size=size, stride=8, **{**FAST, "num_slabs": 4})
    slabs = datasets[0].info["slabs"]
    t1, wm = block_mean(raw["t1"], 2), block_mean(raw["wm"], 2)
    spans = {}
    for ds, name in zip(datasets, ("train", "val", "test"), strict=True):
        assert ds.info["spatial_dims"] == 3 and len(ds) > 0
        spans[name] = [(s["index"], s["index"] + size[2]) for s in ds.samples]
        for sample in ds.samples:
            x, y, z = sample["origin"].tolist()
            assert z == sample["index"] and any(lo <= z and z + size[2] <= hi for lo, hi in slabs[name])
            assert sample["case"] == f"mni152_slab{sample['slab']:02d}_x{x:03d}_y{y:03d}_z{z:03d}"
            box = np.s_[x : x + 16, y : y + 16, z : z + 16]
            assert sample["image"].shape == (1, *size) and sample["label"].shape == (1, *size)
            np.testing.assert_allclose(sample["image"][0].numpy(), t1[box], rtol=0, atol=1e-6)
            np.testing.assert_allclose(sample["soft_label"][2].numpy(), wm[box], rtol=0, atol=1e-6)
    for first in spans:
        for second in spans:
            if first != second:
                for lo1, hi1 in spans[first]:
                    for lo2, hi2 in spans[second]:
                        assert lo2 - hi1 >= FAST["gap"] or lo1 - hi2 >= FAST["gap"]


def test_splits_are_deterministic_by_seed(volumes, fast):
    def layout(datasets):
        return datasets[0].info["slabs"], [[s["index"] for s in ds.samples] for ds in datasets]

    assert layout(mni152_datasets(volumes, seed=0, **FAST)) == layout(fast)
    assert layout(mni152_datasets(volumes, seed=1, **FAST))[0] != layout(fast)[0]
    assert slab_splits(0, 100, seed=3) == slab_splits(0, 100, seed=3) != slab_splits(0, 100, seed=4)


@pytest.mark.parametrize(
    ("start", "stop", "num_slabs", "gap", "fractions"),
    [
        (0, 100, 10, 2, (0.6, 0.2, 0.2)),
        (7, 153, 10, 4, (0.7, 0.15, 0.15)),
        (0, 20, 3, 0, (0.9, 0.05, 0.05)),
        (5, 40, 4, 3, (0.5, 0.5, 0.0)),
    ],
)
def test_slab_layout_and_counts(start, stop, num_slabs, gap, fractions):
    slabs = slab_splits(start, stop, num_slabs=num_slabs, gap=gap, fractions=fractions, seed=0)
    assert len(slabs) == num_slabs and slabs[0][0] == start and slabs[-1][1] == stop
    sizes = [hi - lo for lo, hi, _ in slabs]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert all(b[0] - a[1] == gap for a, b in itertools.pairwise(slabs))
    counts = [sum(split == name for *_, split in slabs) for name in ("train", "val", "test")]
    assert all((c >= 1) == (f > 0) for c, f in zip(counts, fractions, strict=True))
    assert all(abs(c - f * num_slabs) < 1.0 + (f > 0) for c, f in zip(counts, fractions, strict=True))


@pytest.mark.parametrize(("factor", "num_classes"), [(2, 3), (3, 4)])
def test_downsampling_averages_areas_and_keeps_the_simplex(volumes, raw, factor, num_classes):
    train, *_ = mni152_datasets(volumes, num_classes=num_classes, **{**FAST, "downsample": factor})
    expected = [block_mean(c, factor, fill=float(k == 0)) for k, c in enumerate(reference_target(raw, num_classes))]
    for sample in train.samples:
        soft = sample["soft_label"].double().numpy()
        assert soft.min() >= 0.0
        np.testing.assert_allclose(soft.sum(0), 1.0, rtol=0, atol=1e-6)
        for k in range(num_classes):
            np.testing.assert_allclose(soft[k], expected[k][..., sample["index"]], rtol=0, atol=1e-6)
    assert train.samples[0]["image"].shape[1:] == tuple(-(-n // factor) for n in MNI152_SHAPE[:2])


@pytest.mark.parametrize("mode", ["slices", "patches"])
def test_label_is_the_argmax_of_the_soft_label(volumes, fast4, mode):
    extra = {"mode": mode, "patch_size": 16, "num_slabs": 4}
    for ds in fast4 if mode == "slices" else mni152_datasets(volumes, num_classes=4, **{**FAST, **extra}):
        for sample in ds.samples[::3]:
            assert sample["label"].dtype == torch.int64 and sample["label"].shape[0] == 1
            np.testing.assert_array_equal(sample["label"][0].numpy(), np.argmax(sample["soft_label"].numpy(), axis=0))
        assert "true_probs" not in ds.samples[0]


def test_padding_and_cropping_to_multiples_of_16(volumes, fast4):
    plain = fast4[0]
    padded, *_ = mni152_datasets(volumes, num_classes=4, size_multiple=16, **FAST)
    cropped, *_ = mni152_datasets(volumes, num_classes=4, size_multiple=16, resize="crop", **FAST)
    before = [-o for o in padded.info["offsets"][:2]]
    for p, c, q in zip(plain.samples, cropped.samples, padded.samples, strict=True):
        (h, w), (ph, pw), (ch, cw) = p["image"].shape[1:], q["image"].shape[1:], c["image"].shape[1:]
        assert ph % 16 == pw % 16 == ch % 16 == cw % 16 == 0 and ph >= h and ch <= h
        inner = np.s_[before[0] : before[0] + h, before[1] : before[1] + w]
        np.testing.assert_array_equal(q["soft_label"][(slice(None), *inner)].numpy(), p["soft_label"].numpy())
        outside = torch.ones(ph, pw, dtype=torch.bool)
        outside[inner] = False
        assert torch.all(q["soft_label"][0][outside] == 1) and torch.all(q["image"][0][outside] == 0)
        assert torch.all(q["label"][0][outside] == 0)
        # the crop never cuts a voxel that is not pure background
        np.testing.assert_allclose(
            float((1 - c["soft_label"][0]).sum()), float((1 - p["soft_label"][0]).sum()), rtol=1e-5
        )


def test_zscore_uses_the_training_slabs_brain_voxels(volumes, raw):
    train, val, _ = mni152_datasets(volumes, normalize="zscore", **FAST)
    t1 = block_mean(raw["t1"], 2)
    brain = block_mean((raw["t1"] > 0).astype(float), 2) >= 0.5
    rows = np.zeros(t1.shape[2], dtype=bool)
    for lo, hi in train.info["slabs"]["train"]:
        rows[lo:hi] = True
    values = t1[brain & rows[None, None, :]]
    mean, std = values.mean(), values.std()
    assert train.info["normalize_mean"] == pytest.approx(mean) and train.info["normalize_std"] == pytest.approx(std)
    for sample in (train.samples[0], val.samples[-1]):
        expected = (t1[..., sample["index"]] - mean) / std
        np.testing.assert_allclose(sample["image"][0].numpy(), expected, rtol=0, atol=1e-5)


def test_info_carries_the_licence_references_and_sources(fast4):
    info = fast4[0].info
    assert info["license"] == MNI152_LICENSE
    assert "Louis Collins" in MNI152_LICENSE and "provided that the above copyright notice appear in all copies" in (
        MNI152_LICENSE
    )
    assert any("Unbiased average age-appropriate atlases for pediatric studies" in r for r in MNI152_REFERENCES)
    assert any("from birth to adulthood" in r for r in info["references"])
    assert info["num_classes"] == 4 and info["class_names"] == list(MNI152_CLASS_NAMES[4]) and info["spatial_dims"] == 2
    assert {Path(p).name for p in info["source_files"].values()} == set(MNI152_FILES.values())
    assert "152 healthy adults" in info["description"] and set(info["slabs"]) == {"train", "val", "test"}


def test_datamodule_batches_have_the_batch_layout(volumes):
    dm = mni152_datamodule(volumes, batch_size=4, **FAST)
    assert isinstance(dm, SoftLabelDataModule) and dm.info["num_classes"] == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 99, 117) and batch["image"].dtype == torch.float32
    assert batch["soft_label"].shape == (4, 3, 99, 117) and batch["label"].shape == (4, 1, 99, 117)
    assert batch["label"].dtype == torch.int64 and len(batch["case"]) == 4
    dm3 = mni152_datamodule(volumes, batch_size=2, mode="patches", patch_size=16, **{**FAST, "num_slabs": 4})
    batch3 = next(iter(dm3.val_dataloader()))
    assert batch3["image"].shape == (2, 1, 16, 16, 16) and batch3["soft_label"].shape == (2, 3, 16, 16, 16)
    assert batch3["origin"].shape == (2, 3)


def test_missing_nilearn_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(mni.importlib.util, "find_spec", lambda name, *a: None if name == "nilearn" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps nilearn"):
        load_mni152()


def test_bad_files_raise_errors_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`root` of load_mni152.*nope"):
        load_mni152(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"t1 file .*missing"):
        load_mni152(tmp_path)
    root = copy_root(tmp_path)
    gm = root / MNI152_FILES["gm"]
    gm.write_bytes(b"this is not a NIfTI file")
    with pytest.raises(ValueError, match=f"gm file .*{MNI152_FILES['gm']}.*could not be read"):
        load_mni152(root)
    gm.write_bytes((DATA / MNI152_FILES["gm"]).read_bytes()[:200_000])  # truncated gzip stream
    with pytest.raises(ValueError, match=r"gm file .*could not be read"):
        load_mni152(root)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(gm))
    with pytest.raises(ValueError, match=r"gm file .*must be \(197, 233, 189\); got shape \(4, 4, 4\)"):
        load_mni152(root)
    nib.save(nib.Nifti1Image(np.full(MNI152_SHAPE, 2.0, np.float32), np.eye(4)), str(gm))
    with pytest.raises(ValueError, match=r"gm file .*uint8 codes 0..255 or values in"):
        load_mni152(root)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"axis": "axal"}, r"`axis` of mni152_datasets .*got 'axal' \(did you mean 'axial'\?\)"),
        ({"mode": "patch"}, r"did you mean 'patches'"),
        ({"mode": "patches", "patch_size": 0}, r"`patch_size` of mni152_datasets must be .*got 0"),
        ({"mode": "patches", "patch_size": (32, 32)}, r"`patch_size` .*got \(32, 32\)"),
        ({"mode": "patches", "patch_size": (16, 16, 1000)}, r"`patch_size` .*must fit in the grid"),
        ({"mode": "patches", "patch_size": 48, "num_slabs": 4}, r"`patch_size` .*do not fit in a slab"),
        ({"mode": "patches", "stride": (8, 8, -1)}, r"`stride` .*got \(8, 8, -1\)"),
        ({"mode": "patches", "axis": "sagittal"}, r"mirror copies"),
        ({"mode": "patches", "size_multiple": 16}, r"size_multiple=16"),
        ({"num_classes": 5}, r"`num_classes` of mni152_datasets must be 3 or 4; got 5"),
        ({"brain_threshold": 1.5}, r"`brain_threshold` .*got 1.5"),
        ({"downsample": 0}, r"`downsample` of mni152_datasets must be an int >= 1; got 0"),
        ({"gap": -1}, r"`gap` .*got -1"),
        ({"fractions": (0.5, 0.5, 0.5)}, r"`fractions` of mni152_datasets"),
        ({"num_slabs": 2}, r"`num_slabs` .*non-empty splits"),
        ({"num_slabs": 60, "gap": 4}, r"`num_slabs` 60 with `gap` 4 do not fit"),
        ({"min_brain_voxels": 10**6}, r"`min_brain_voxels` .*no axial slice"),
        ({"normalize": "z"}, r"`normalize`"),
        ({"size_multiple": 128, "resize": "crop", "downsample": 1}, r"`size_multiple` .*would cut brain; got 128"),
    ],
)
def test_bad_options_raise_clear_errors(volumes, options, match):
    with pytest.raises(ValueError, match=match):
        mni152_datasets(volumes, **{**FAST, **options})


def test_other_bad_inputs(volumes, tmp_path):
    with pytest.raises(ValueError, match="`volumes` or `root`, not both"):
        mni152_datasets(volumes, root=tmp_path)
    shape = (2, 2, 2)
    too_much = MNI152Volumes(t1=np.ones(shape), gm=np.full(shape, 0.6), wm=np.full(shape, 0.6))
    with pytest.raises(ValueError, match=r"GM \+ WM must be <= 1 .*8 voxel\(s\)"):
        mni152_soft_target(too_much)
    with pytest.raises(ValueError, match=r"`wm` of MNI152Volumes must lie in \[0, 1\]"):
        MNI152Volumes(t1=np.ones(shape), gm=np.zeros(shape), wm=np.full(shape, -0.5))
    with pytest.raises(ValueError, match="`gm` of MNI152Volumes must be a 3D array"):
        MNI152Volumes(t1=np.ones(shape), gm=np.zeros((2, 2)), wm=np.zeros(shape))


def test_float_rounding_above_one_becomes_exactly_zero():
    half_up = np.nextafter(0.5, 1.0)
    assert 1.0 - (half_up + half_up) < 0.0  # the case is real in float64
    shape = (1, 1, 2)
    vol = MNI152Volumes(t1=np.ones(shape), gm=np.full(shape, half_up), wm=np.full(shape, half_up))
    target = mni152_soft_target(vol, num_classes=4)
    assert np.all(target >= 0.0) and np.all(target[:2] == 0.0)
