import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.targets import SVLSd, fuse_raters, svls, svls_kernel


def random_labels(seed, shape, num_classes):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, shape, generator=gen)


def kernel_reference(dims, sigma, k, spacing):
    """float64 NumPy: Gaussian, normalised; centre := sum of neighbours; renormalised."""
    spacing = spacing or (1.0,) * dims
    g = np.zeros((k,) * dims)
    for idx in np.ndindex(*g.shape):
        d2 = sum(((i - k // 2) * s) ** 2 for i, s in zip(idx, spacing, strict=True))
        g[idx] = math.exp(-d2 / (2 * sigma**2))
    g /= g.sum()
    centre = (k // 2,) * dims
    g[centre] = 1 - g[centre]
    return g / g.sum()


def svls_reference(onehot, kernel):
    """float64 NumPy: replicate ('edge') padding, then a per-class correlation with the kernel."""
    k = kernel.shape[0]
    dims = kernel.ndim
    pad = [(0, 0), (0, 0)] + [(k // 2, k // 2)] * dims
    padded = np.pad(onehot, pad, mode="edge")
    out = np.zeros_like(onehot, dtype=np.float64)
    spatial = onehot.shape[2:]
    for off in itertools.product(range(k), repeat=dims):
        window = tuple(slice(o, o + n) for o, n in zip(off, spatial, strict=True))
        out += kernel[off] * padded[(slice(None), slice(None), *window)]
    return out


def one_hot_np(labels, num_classes):
    return np.moveaxis(np.eye(num_classes)[labels.numpy()], -1, 1)


def test_kernel_matches_spec_table():
    k2 = svls_kernel(2)
    assert k2[1, 1].item() == pytest.approx(0.5)
    assert k2[0, 1].item() == pytest.approx(0.0778, abs=1e-4)
    assert k2[0, 0].item() == pytest.approx(0.0472, abs=1e-4)
    k3 = svls_kernel(3)
    assert k3[1, 1, 1].item() == pytest.approx(0.5)
    assert k3[0, 1, 1].item() == pytest.approx(0.0308, abs=1e-4)
    assert k3[0, 0, 1].item() == pytest.approx(0.0187, abs=1e-4)
    assert k3[0, 0, 0].item() == pytest.approx(0.0113, abs=1e-4)
    # σ=0.5 and σ=2 values quoted in the spec
    assert svls_kernel(2, sigma=0.5)[0, 1].item() == pytest.approx(0.110, abs=1e-3)
    assert svls_kernel(2, sigma=2.0)[0, 0].item() == pytest.approx(0.059, abs=1e-3)


@pytest.mark.parametrize(
    ("dims", "sigma", "k", "spacing"), [(2, 1.0, 3, None), (2, 0.7, 5, (1.0, 2.5)), (3, 1.3, 5, (3.0, 1.0, 0.5))]
)
def test_kernel_matches_reference(dims, sigma, k, spacing):
    got = svls_kernel(dims, sigma, k, spacing)
    np.testing.assert_allclose(got.numpy(), kernel_reference(dims, sigma, k, spacing), atol=1e-12)
    assert got[(k // 2,) * dims].item() == pytest.approx(0.5)


@pytest.mark.parametrize("shape", [(2, 5, 6), (1, 3, 4, 5)])
def test_constant_map_is_one_hot(shape):
    labels = torch.full(shape, 2)
    got = svls(labels, 3)
    torch.testing.assert_close(got, torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float())


def test_straight_edge_2d_hand_computed():
    labels = torch.zeros(1, 3, 4, dtype=torch.long)
    labels[..., 2:] = 1
    got = svls(labels, 2)
    # neighbours share 0.5 in proportion to exp(-d²/2): faces e^-0.5 (×4), corners e^-1 (×4).
    # The pixel left of the edge sees class 1 in its right column: one face + two corners.
    total = 4 * math.exp(-0.5) + 4 * math.exp(-1)
    w = 0.5 * (math.exp(-0.5) + 2 * math.exp(-1)) / total
    expected_row = [0.0, w, 1 - w, 1.0]
    for row in range(3):  # replicate padding makes every row the same
        np.testing.assert_allclose(got[0, 1, row].numpy(), expected_row, atol=1e-6)


def test_straight_edge_2d_with_spacing_hand_computed():
    labels = torch.zeros(1, 3, 4, dtype=torch.long)
    labels[..., 2:] = 1
    got = svls(labels, 2, spacing=(1.0, 2.0))
    # distances: H-face 1, W-face 2, corner sqrt(5): weights e^-0.5 (×2), e^-2 (×2), e^-2.5 (×4)
    total = 2 * math.exp(-0.5) + 2 * math.exp(-2) + 4 * math.exp(-2.5)
    w = 0.5 * (math.exp(-2) + 2 * math.exp(-2.5)) / total
    np.testing.assert_allclose(got[0, 1, 1].numpy(), [0.0, w, 1 - w, 1.0], atol=1e-6)


def test_straight_edge_3d_hand_computed():
    labels = torch.zeros(1, 3, 3, 4, dtype=torch.long)
    labels[..., 2:] = 1
    got = svls(labels, 2)
    # 26 neighbours: faces e^-0.5 (×6), edges e^-1 (×12), corners e^-1.5 (×8).
    # The plane on the other side of the edge holds 1 face, 4 edges, 4 corners.
    total = 6 * math.exp(-0.5) + 12 * math.exp(-1) + 8 * math.exp(-1.5)
    w = 0.5 * (math.exp(-0.5) + 4 * math.exp(-1) + 4 * math.exp(-1.5)) / total
    np.testing.assert_allclose(got[0, 1, 1, 1].numpy(), [0.0, w, 1 - w, 1.0], atol=1e-6)


def test_straight_edge_3d_with_spacing_hand_computed():
    labels = torch.zeros(1, 3, 3, 4, dtype=torch.long)
    labels[..., 2:] = 1
    got = svls(labels, 2, spacing=(2.0, 1.0, 1.0))
    # offsets (a, b, c) weigh exp(-(4a² + b² + c²)/2); the far plane c=+1 holds
    # (0,0,1): e^-0.5, (0,±1,1): 2e^-1, (±1,0,1): 2e^-2.5, (±1,±1,1): 4e^-3
    plane = math.exp(-0.5) + 2 * math.exp(-1) + 2 * math.exp(-2.5) + 4 * math.exp(-3)
    # all 26 neighbours: depth 0 ring: 4e^-0.5 + 4e^-1; depth ±1: 2e^-2 + 8e^-2.5 + 8e^-3
    total = 4 * math.exp(-0.5) + 4 * math.exp(-1) + 2 * math.exp(-2) + 8 * math.exp(-2.5) + 8 * math.exp(-3)
    w = 0.5 * plane / total
    np.testing.assert_allclose(got[0, 1, 1, 1].numpy(), [0.0, w, 1 - w, 1.0], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.lists(st.integers(1, 5), min_size=3, max_size=4),
    num_classes=st.integers(1, 4),
    sigma=st.floats(0.3, 3.0),
    k=st.sampled_from([3, 5]),
    anisotropic=st.booleans(),
)
def test_matches_reference_and_is_a_distribution(seed, shape, num_classes, sigma, k, anisotropic):
    labels = random_labels(seed, tuple(shape), num_classes)
    dims = len(shape) - 1
    spacing = tuple(0.5 + i for i in range(dims)) if anisotropic else None
    got = svls(labels, num_classes, sigma, k, spacing)
    expected = svls_reference(one_hot_np(labels, num_classes), kernel_reference(dims, sigma, k, spacing))
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-6)
    assert bool((got >= 0).all())
    torch.testing.assert_close(got.sum(1), torch.ones(shape[0], *shape[1:]), atol=1e-6, rtol=0)


def test_multi_rater_svls_is_linear():
    raters = random_labels(3, (3, 2, 5, 6), 3)
    mean_first = svls(fuse_raters(raters, 3), 3)
    per_rater = torch.stack([svls(r, 3) for r in raters]).mean(0)
    torch.testing.assert_close(mean_first, per_rater, atol=1e-6, rtol=0)
    same = raters[:1].expand(4, -1, -1, -1)
    torch.testing.assert_close(svls(fuse_raters(same, 3), 3), svls(raters[0], 3))


def test_depth_one_volume_uses_the_depth_collapsed_kernel():
    # replicate padding copies the single slice above and below, so a depth-1 volume equals a 2D map smoothed
    # with the 3D kernel summed over depth (not the 2D SVLS kernel)
    labels = random_labels(4, (2, 5, 6), 3)
    deep = svls(labels.unsqueeze(1), 3)[:, :, 0]
    collapsed = kernel_reference(3, 1.0, 3, None).sum(0)
    expected = svls_reference(one_hot_np(labels, 3), collapsed)
    np.testing.assert_allclose(deep.double().numpy(), expected, atol=1e-6)


def test_bad_inputs_raise():
    labels = torch.tensor([[[0, 1]]])
    with pytest.raises(ValueError, match=r"`sigma` of svls must be a finite float > 0; got -1.0"):
        svls(labels, 2, sigma=-1.0)
    with pytest.raises(ValueError, match=r"`kernel_size` of svls must be an odd int >= 3; got 4"):
        svls(labels, 2, kernel_size=4)
    with pytest.raises(ValueError, match=r"`spacing` .*got \(1.0,\)"):
        svls(labels, 2, spacing=(1.0,))
    with pytest.raises(ValueError, match=r"`labels` of svls must hold class indices in \[0, 2\); got 2"):
        svls(torch.tensor([[[0, 2]]]), 2)
    with pytest.raises(ValueError, match=r"must sum to 1"):
        svls(torch.full((1, 2, 3, 3), 0.7), 2)
    with pytest.raises(ValueError, match=r"C=num_classes=3"):
        svls(torch.full((1, 2, 3, 3), 0.5), 3)
    with pytest.raises(TypeError, match=r"`labels` of svls must be a torch.Tensor"):
        svls([[0, 1]], 2)


def test_dictionary_transform():
    label = random_labels(5, (1, 4, 5, 6), 3)
    expected = svls(label, 3, sigma=0.8)[0]
    out = SVLSd("label", 3, sigma=0.8)({"label": label})
    torch.testing.assert_close(out["label"], expected)
    plain = SVLSd("label", 3, sigma=0.8, has_channel=False)({"label": label[0]})
    torch.testing.assert_close(plain["label"], expected)
    soft = SVLSd("label", 3, sigma=0.8)({"label": torch.nn.functional.one_hot(label[0], 3).movedim(-1, 0).float()})
    torch.testing.assert_close(soft["label"], expected)


def test_dictionary_transform_accepts_monai_metatensor():
    from monai.data import MetaTensor

    label = random_labels(6, (1, 3, 4, 5), 2)
    out = SVLSd("label", 2)({"label": MetaTensor(label)})
    torch.testing.assert_close(out["label"].as_tensor(), svls(label, 2)[0])


@pytest.mark.parametrize("sigma", [0.05, 1e-3, 1e-200])
def test_tiny_sigma_keeps_the_centre_half_and_gives_the_nearest_neighbours_the_rest(sigma):
    # 1 − g_centre is 0 in floats here (the reference recipe divides 0 by 0): the closed form is exact
    expected_2d = [[0, 0.125, 0], [0.125, 0.5, 0.125], [0, 0.125, 0]]  # corners: e^(−1/2σ²) of a face, ~1e-88
    np.testing.assert_allclose(svls_kernel(2, sigma).numpy(), expected_2d, atol=1e-80, rtol=1e-15)
    kernel = svls_kernel(3, sigma, 5, spacing=(2.0, 1.0, 1.0))  # the nearest neighbours are along axes 1 and 2
    expected = np.zeros((5, 5, 5))
    expected[2, 2, 2] = 0.5
    expected[2, [1, 3], 2] = expected[2, 2, [1, 3]] = 0.125
    np.testing.assert_allclose(kernel.numpy(), expected, atol=1e-80, rtol=1e-15)
    labels = torch.zeros(1, 3, 5, 5, dtype=torch.long)
    labels[0, 1, 2, 2] = 1  # an isolated voxel gets the kernel
    got = svls(labels, 2, sigma, 5, spacing=(2.0, 1.0, 1.0))
    np.testing.assert_allclose(got[0, 1, 1].numpy(), expected[2], atol=1e-7)
    torch.testing.assert_close(got.sum(1), torch.ones(1, 3, 5, 5))
