"""The stored input pipeline: it reproduces the training data's preparation and maps outputs back exactly."""

from __future__ import annotations

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.data.input_pipeline import InputPipeline, _apply_ornt, area_downsample, voxel_spacing
from softlabels.data.mni152 import load_mni152, mni152_datasets


@pytest.fixture(scope="module")
def volumes():
    return load_mni152()


@pytest.mark.parametrize("normalize", ["none", "zscore"])
def test_prepare_reproduces_the_mni152_training_slices(volumes, normalize):
    train, val, test = mni152_datasets(
        volumes, downsample=4, size_multiple=16, num_slabs=5, gap=1, min_brain_voxels=50, normalize=normalize
    )
    pipeline = InputPipeline.from_dict(train.info["input_pipeline"])
    prepared, _ = pipeline.prepare(torch.from_numpy(volumes.t1)[None], volumes.affine)
    for dataset in (train, val, test):
        for sample in (dataset[0], dataset[len(dataset) - 1]):
            expected = sample["image"]
            got = prepared[:, :, :, sample["index"]]
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_reoriented_resliced_copy_prepares_to_the_same_volume(volumes):
    pipeline = InputPipeline(2, orientation="RAS", spacing=(2.0, 2.0, 2.0), intensity="max", size_multiple=16,
                             slice_axis=2)  # fmt: skip
    image = torch.from_numpy(volumes.t1)[None]
    original, _ = pipeline.prepare(image, volumes.affine)
    # the same voxels stored left-to-right and inferior-to-superior flipped, scaled intensities: an LAI volume
    flipped = image.flip(1).flip(3) * 700.0
    affine = volumes.affine @ np.array(
        [[-1, 0, 0, image.shape[1] - 1], [0, 1, 0, 0], [0, 0, -1, image.shape[3] - 1], [0, 0, 0, 1]], dtype=float
    )
    assert nib.aff2axcodes(affine) == ("L", "A", "I")
    prepared, placement = pipeline.prepare(flipped, affine)
    torch.testing.assert_close(prepared, original, atol=1e-5, rtol=1e-5)
    probs = torch.softmax(torch.randn(3, *prepared.shape[1:]), dim=0)
    back = pipeline.restore(probs, placement)
    direct = pipeline.restore(probs, pipeline.prepare(image, volumes.affine)[1])
    torch.testing.assert_close(back, direct.flip(1).flip(3))


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(3, 12), st.integers(3, 12), st.integers(3, 12)),
    own=st.tuples(*[st.sampled_from([0.5, 1.0, 1.3, 2.0, 3.0])] * 3),
    target=st.sampled_from([None, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.7, 2.5, 0.9)]),
    multiple=st.sampled_from([None, 1, 4, 8]),
)
def test_restore_returns_probabilities_on_the_input_grid(shape, own, target, multiple):
    pipeline = InputPipeline(3, orientation="RAS", spacing=target, size_multiple=multiple)
    prepared, placement = pipeline.prepare(torch.rand(2, *shape), np.diag([*own, 1.0]))
    if multiple is not None:
        assert all(n % multiple == 0 for n in prepared.shape[1:])
    probs = torch.softmax(torch.randn(4, *prepared.shape[1:]), dim=0)
    restored = pipeline.restore(probs, placement)
    assert tuple(restored.shape) == (4, *shape)
    torch.testing.assert_close(restored.sum(0), torch.ones(shape), atol=1e-5, rtol=0)
    assert float(restored.min()) >= 0.0


def test_identity_pipeline_changes_nothing():
    image = torch.rand(1, 5, 7)
    pipeline = InputPipeline(2)
    prepared, placement = pipeline.prepare(image)
    assert pipeline.is_identity
    torch.testing.assert_close(prepared, image)
    probs = torch.softmax(torch.randn(3, 5, 7), dim=0)
    torch.testing.assert_close(pipeline.restore(probs, placement), probs)


def test_integer_ratio_uses_exact_block_means():
    image = torch.arange(6 * 4 * 2, dtype=torch.float64).reshape(1, 6, 4, 2)
    prepared, _ = InputPipeline(3, spacing=(2.0, 2.0, 2.0)).prepare(image, np.eye(4))
    np.testing.assert_allclose(prepared.numpy(), area_downsample(image.numpy(), 2), rtol=1e-6)


@pytest.mark.parametrize("codes", [("L", "P", "S"), ("A", "S", "R"), ("I", "L", "P"), ("R", "A", "S")])
def test_apply_ornt_matches_nibabel(codes):
    volume = torch.rand(2, 3, 4, 5)
    ornt = nio.ornt_transform(nio.axcodes2ornt(codes), nio.axcodes2ornt(("R", "A", "S")))
    expected = nio.apply_orientation(np.moveaxis(volume.numpy(), 0, -1), ornt)
    np.testing.assert_array_equal(np.moveaxis(_apply_ornt(volume, ornt).numpy(), 0, -1), expected)


def test_bad_stored_pipelines_are_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['spcing'\]"):
        InputPipeline.from_dict({"spatial_dims": 2, "spcing": [1, 1]})
    with pytest.raises(ValueError, match="`intensity` of InputPipeline"):
        InputPipeline.from_dict({"spatial_dims": 2, "intensity": "percentile"})
    with pytest.raises(ValueError, match="`normalize` of InputPipeline"):
        InputPipeline(2, normalize=(0.0, 0.0))


def test_voxel_spacing_of_an_oblique_affine():
    rotation = np.array([[0.0, -2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.5]])
    affine = np.eye(4)
    affine[:3, :3] = rotation
    assert voxel_spacing(affine) == (3.0, 2.0, 1.5)
