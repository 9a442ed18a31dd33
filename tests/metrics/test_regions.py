"""Foreground mask and boundary band against a brute-force distance computation, 2D and 3D, with spacing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.functional.regions import boundary_band, foreground_mask


def brute_band(labels: np.ndarray, width: float, spacing=None) -> np.ndarray:
    spacing = np.ones(labels.ndim) if spacing is None else np.asarray(spacing, float)
    coords = np.array(list(itertools.product(*[range(s) for s in labels.shape])))
    flat = labels.reshape(-1)
    out = np.zeros(flat.shape, bool)
    for i, x in enumerate(coords):
        other = coords[flat != flat[i]]
        if len(other):
            out[i] = np.sqrt((((other - x) * spacing) ** 2).sum(1)).min() <= width
    return out.reshape(labels.shape)


@pytest.mark.parametrize("shape", [(2, 9, 11), (2, 6, 7, 5)])
@pytest.mark.parametrize("width", [1, 1.5, 3])
def test_band_matches_brute_force(shape, width):
    g = torch.Generator().manual_seed(sum(shape))
    labels = torch.randint(0, 3, shape, generator=g)
    labels = torch.where(torch.rand(shape, generator=g) > 0.7, labels, torch.zeros_like(labels))
    band = boundary_band(labels, width=width)
    for n in range(shape[0]):
        assert np.array_equal(band[n].numpy(), brute_band(labels[n].numpy(), width))


def test_band_with_spacing_and_soft_target():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 2:6, 3:6] = 1
    spacing = (2.0, 0.5)
    band = boundary_band(labels, width=1.0, spacing=spacing)
    assert np.array_equal(band[0].numpy(), brute_band(labels[0].numpy(), 1.0, spacing))
    soft = torch.nn.functional.one_hot(labels, 2).permute(0, 3, 1, 2).float() * 0.8 + 0.1
    assert torch.equal(boundary_band(soft, width=1.0, spacing=spacing), band)


def test_uniform_label_has_no_band_and_foreground():
    labels = torch.ones(2, 5, 5, dtype=torch.long)
    assert not boundary_band(labels, width=2).any()
    assert foreground_mask(labels).all()
    assert not foreground_mask(torch.zeros(1, 3, 3, dtype=torch.long)).any()


def test_bad_arguments():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`width` of boundary_band.*got 0"):
        boundary_band(labels, width=0)
    with pytest.raises(ValueError, match=r"`spacing` of boundary_band must have 2 values"):
        boundary_band(labels, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"soft target"):
        foreground_mask(torch.zeros(4, 4))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 10), min_size=2, max_size=3),
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9), st.integers(0, 3)), max_size=3),
    st.floats(0.3, 3.5),
    st.booleans(),
)
def test_band_of_small_structures_in_a_large_volume_matches_brute_force(shape, blobs, width, anisotropic):
    """The transforms run on the crop around the label changes: same band as the whole-volume definition."""
    labels = np.zeros(shape, dtype=np.int64)
    for *centre, label in blobs:  # boxes of radius 1, touching the border or not
        box = tuple(slice(max(c % s - 1, 0), c % s + 2) for c, s in zip(centre, shape, strict=False))
        labels[box] = label
    spacing = [0.5 + 0.7 * k for k in range(len(shape))] if anisotropic else None
    band = boundary_band(torch.from_numpy(labels)[None], width=width, spacing=spacing)[0].numpy()
    np.testing.assert_array_equal(band, brute_band(labels, width, spacing))
