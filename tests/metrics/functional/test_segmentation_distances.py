"""HD95 and ASSD computed on the crop around each structure equal MONAI on the full volume (blobs, borders, spacing)."""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

from softlabels.metrics.functional import average_surface_distance, hausdorff_distance_95

seg = importlib.import_module("softlabels.metrics.functional.segmentation")


def blob_map(rng: np.random.Generator, shape: tuple[int, ...], c: int, n_blobs: int) -> np.ndarray:
    """A label map of random balls and boxes (some touching or crossing the image border), plus scattered voxels."""
    labels = np.zeros(shape, dtype=np.int64)
    grid = np.indices(shape).astype(np.float64)
    for _ in range(n_blobs):
        k = int(rng.integers(1, c)) if c > 1 else 1
        center = rng.uniform(-2, np.array(shape) + 1)  # may lie outside: the blob is cut by the border
        radius = rng.uniform(0.5, max(shape) / 2.5, size=len(shape))
        if rng.random() < 0.5:
            inside = (
                ((grid - center.reshape(-1, *[1] * len(shape))) / radius.reshape(-1, *[1] * len(shape))) ** 2
            ).sum(0) <= 1
        else:
            inside = (
                np.abs(grid - center.reshape(-1, *[1] * len(shape))) <= radius.reshape(-1, *[1] * len(shape))
            ).all(0)
        labels[inside] = k
    noise = rng.random(shape) < 0.02
    labels[noise] = rng.integers(0, max(c, 2), size=int(noise.sum()))
    return labels


def monai_full(pred: np.ndarray, gt: np.ndarray, c: int, kind: str, spacing, include_background: bool) -> np.ndarray:
    """MONAI on the full one-hot volumes, ``(N, C')`` float64 (NaN/inf for empty masks, as MONAI gives them)."""
    n_labels = max(c, 2)
    oh_p = torch.nn.functional.one_hot(torch.as_tensor(pred), n_labels).movedim(-1, 1)
    oh_g = torch.nn.functional.one_hot(torch.as_tensor(gt), n_labels).movedim(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "hd95":
            out = compute_hausdorff_distance(
                oh_p, oh_g, include_background=include_background, percentile=95.0, spacing=spacing
            )
        else:
            out = compute_average_surface_distance(
                oh_p, oh_g, include_background=include_background, symmetric=True, spacing=spacing
            )
    return out.double().numpy()


def as_probs(labels: np.ndarray, c: int) -> torch.Tensor:
    """Probabilities whose argmax is ``labels``: the one-hot map (``C == 1``: the foreground indicator)."""
    t = torch.as_tensor(labels)
    if c == 1:
        return (t == 1).float().unsqueeze(1)
    return torch.nn.functional.one_hot(t, c).movedim(-1, 1).float()


SPACING = st.one_of(
    st.none(),
    st.floats(0.2, 3.0),
    st.lists(st.floats(0.2, 3.0), min_size=3, max_size=3),
)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dims=st.sampled_from([2, 3]),
    c=st.sampled_from([1, 2, 4]),
    n=st.integers(1, 2),
    n_blobs=st.integers(0, 5),
    spacing=SPACING,
    include_background=st.booleans(),
    kind=st.sampled_from(["hd95", "assd"]),
)
def test_equal_to_monai_on_the_full_volume(seed, dims, c, n, n_blobs, spacing, include_background, kind):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(3, 28 if dims == 2 else 13, size=dims))
    gt = np.stack([blob_map(rng, shape, c, n_blobs) for _ in range(n)])
    pred = np.stack([blob_map(rng, shape, c, n_blobs) for _ in range(n)])
    if rng.random() < 0.5:  # a prediction close to the reference: small, nearby structures
        pred = np.where(rng.random(gt.shape) < 0.9, gt, pred)
    if isinstance(spacing, list):
        spacing = spacing[:dims]
    fn = hausdorff_distance_95 if kind == "hd95" else average_surface_distance
    ours = fn(as_probs(pred, c), torch.as_tensor(gt), include_background=include_background, spacing=spacing)
    ref = monai_full(pred, gt, c, kind, spacing, include_background)
    labels = range(0 if include_background else 1, max(c, 2))
    for i in range(n):
        for j, k in enumerate(labels):
            if (pred[i] == k).any() and (gt[i] == k).any():
                assert abs(float(ours[i, j]) - ref[i, j]) <= 1e-9, (i, k, float(ours[i, j]), ref[i, j])
            else:  # either mask empty: NaN (the softlabels convention; MONAI gives inf or nan)
                assert math.isnan(float(ours[i, j]))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dims=st.sampled_from([2, 3]),
    spacing=SPACING,
    percentile=st.sampled_from([None, 0.0, 50.0, 95.0, 100.0]),
    directed=st.booleans(),
    margin=st.integers(1, 3),
)
def test_crop_is_invisible_to_monai(seed, dims, spacing, percentile, directed, margin):
    """The crop argument holds for every MONAI option, not only the symmetric HD95 and ASSD we call."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(2, 26 if dims == 2 else 12, size=dims))
    pred = torch.as_tensor(blob_map(rng, shape, 2, int(rng.integers(1, 4))) == 1)
    gt = torch.as_tensor(blob_map(rng, shape, 2, int(rng.integers(1, 4))) == 1)
    if not (pred.any() and gt.any()):
        return
    if isinstance(spacing, list):
        spacing = spacing[:dims]
    cp, ct = seg._crop_to_union(pred, gt, margin)
    assert cp.numel() <= pred.numel() and (cp | ct).sum() == (pred | gt).sum()  # nothing of either mask is cut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, b in ((pred, gt), (cp, ct)):
            hd = compute_hausdorff_distance(
                a[None, None], b[None, None], True, percentile=percentile, directed=directed, spacing=spacing
            )
            asd = compute_average_surface_distance(a[None, None], b[None, None], True, not directed, spacing=spacing)
            if a is pred:
                full = (hd, asd)
        assert torch.equal(hd, full[0]) and torch.equal(asd, full[1])  # bit for bit


@pytest.mark.parametrize(
    ("where", "expected"),
    [((0, 0, 0), (2, 2, 2)), ((5, 5, 5), (3, 3, 3)), ((9, 0, 5), (2, 2, 3)), ((9, 9, 9), (2, 2, 2))],
)
def test_crop_is_the_union_box_grown_by_one_voxel_within_the_image(where, expected):
    pred = torch.zeros(10, 10, 10, dtype=torch.bool)
    pred[where] = True
    cp, ct = seg._crop_to_union(pred, torch.zeros_like(pred))
    assert tuple(cp.shape) == expected and bool(cp.any()) and not bool(ct.any())
    two = torch.zeros(10, 12, dtype=torch.bool)
    two[2, 3] = True
    other = torch.zeros_like(two)
    other[6, 11] = True
    assert tuple(seg._crop_to_union(two, other)[0].shape) == (7, 10)  # rows 1..7, columns 2..11 (border)


def test_crop_of_empty_masks_is_the_input():
    empty = torch.zeros(4, 5, dtype=torch.bool)
    cp, ct = seg._crop_to_union(empty, empty)
    assert cp is empty and ct is empty
