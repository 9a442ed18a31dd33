"""Dice, IoU, soft Dice, HD95 and ASSD against independent float64 NumPy references; empty structures; streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.functional.segmentation import (
    average_surface_distance,
    dice_score,
    hausdorff_distance_95,
    iou_score,
    soft_dice_score,
)
from softlabels.metrics.segmentation import (
    AverageSurfaceDistance,
    DiceScore,
    HausdorffDistance95,
    IoUScore,
    SoftDiceScore,
)


def _classes(c: int, include_background: bool) -> range:
    return range(0 if include_background else 1, max(c, 2))


def _expand(probs: np.ndarray) -> np.ndarray:
    return np.concatenate([1 - probs, probs], axis=1) if probs.shape[1] == 1 else probs


def overlap_ref(probs, target, *, kind="dice", empty="one", include_background=False, mask=None, ignore_index=None):
    """Per case and class Dice/IoU of argmax(probs) vs labels, over voxels kept by mask and ignore_index."""
    probs = _expand(probs.astype(np.float64))
    out = []
    for n in range(probs.shape[0]):
        keep = np.ones(target[n].shape, bool) if mask is None else mask[n].copy()
        if ignore_index is not None:
            keep &= target[n] != ignore_index
        pred, gt = probs[n].argmax(0)[keep], target[n][keep]
        row = []
        for c in _classes(probs.shape[1], include_background):
            p, g = pred == c, gt == c
            inter, size_p, size_g = np.sum(p & g), np.sum(p), np.sum(g)
            if size_p + size_g == 0:
                row.append(1.0 if empty == "one" else math.nan)
            elif kind == "dice":
                row.append(2.0 * inter / (size_p + size_g))
            else:
                row.append(inter / np.sum(p | g))
        out.append(row)
    return np.array(out, dtype=np.float64)


def soft_dice_ref(probs, target, *, include_background=False, mask=None):
    """2 Σ min(x, y) / (Σx + Σy) per case and class (min(x, y) = (x + y − |x − y|)/2); 1 if both sums are 0."""
    p = _expand(probs.astype(np.float64))
    if target.shape == probs.shape:
        q = _expand(target.astype(np.float64))
    else:
        q = np.moveaxis(np.eye(p.shape[1])[target], -1, 1)
    if mask is not None:
        p, q = p * mask[:, None], q * mask[:, None]
    out = np.zeros((p.shape[0], len(_classes(probs.shape[1], include_background))))
    for n in range(p.shape[0]):
        for j, c in enumerate(_classes(probs.shape[1], include_background)):
            x, y = p[n, c], q[n, c]
            den = x.sum() + y.sum()
            out[n, j] = 1.0 if den == 0 else 2.0 * np.minimum(x, y).sum() / den
    return out


def surface(m: np.ndarray) -> np.ndarray:
    """Voxels of m with a face neighbour outside m (outside the image counts as outside)."""
    padded = np.pad(m, 1, constant_values=False)
    interior = padded.copy()
    for axis in range(m.ndim):
        interior &= np.roll(padded, 1, axis) & np.roll(padded, -1, axis)
    return m & ~interior[tuple(slice(1, -1) for _ in range(m.ndim))]


def directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Distance of every surface voxel of a to the nearest surface voxel of b, brute force."""
    scale = np.asarray(spacing, dtype=np.float64)
    pa, pb = np.argwhere(surface(a)) * scale, np.argwhere(surface(b)) * scale
    return np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min(1)


def distance_ref(probs, target, *, kind, include_background=False, spacing=None, ignore_index=None):
    """HD95 = max of the two directed 95th percentiles; ASSD = mean of all surface distances; NaN if a mask is empty."""
    probs = _expand(probs.astype(np.float64))
    spacing = [1.0] * (probs.ndim - 2) if spacing is None else spacing
    out = []
    for n in range(probs.shape[0]):
        keep = np.ones(target[n].shape, bool) if ignore_index is None else target[n] != ignore_index
        pred = probs[n].argmax(0)
        row = []
        for c in _classes(probs.shape[1], include_background):
            p, g = (pred == c) & keep, (target[n] == c) & keep
            if not p.any() or not g.any():
                row.append(math.nan)
                continue
            d_pg, d_gp = directed(p, g, spacing), directed(g, p, spacing)
            if kind == "hd95":
                row.append(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
            else:
                row.append((d_pg.sum() + d_gp.sum()) / (d_pg.size + d_gp.size))
        out.append(row)
    return np.array(out, dtype=np.float64)


def blobs(seed: int, shape, num_classes: int = 3, sharp: float = 4.0):
    """Smooth random probabilities (so argmax regions are blob-like) and a label map correlated with them."""
    g = torch.Generator().manual_seed(seed)
    n, spatial = shape[0], shape[1:]
    logits = torch.randn(n, num_classes, *(max(2, s // 3) for s in spatial), generator=g)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    logits = torch.nn.functional.interpolate(logits, size=spatial, mode=mode, align_corners=False)
    probs = torch.softmax(sharp * logits, 1)
    noisy = torch.softmax(sharp * (logits + 0.7 * torch.randn(logits.shape, generator=g)), 1)
    return probs, noisy.argmax(1)


def as_binary(probs: torch.Tensor) -> torch.Tensor:
    """Foreground probability of class 1 versus the rest (``C == 1``)."""
    return probs[:, 1:2]


SHAPES = [(3, 9, 11), (2, 5, 6, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("kind", ["dice", "iou"])
def test_overlap_matches_reference(shape, include_background, kind):
    probs, target = blobs(0, shape)
    mask = torch.rand(target.shape, generator=torch.Generator().manual_seed(1)) > 0.2
    target_ign = torch.where(torch.rand(target.shape) > 0.85, 255, target)
    fn = dice_score if kind == "dice" else iou_score
    for t, m, ign in ((target, None, None), (target, mask, None), (target_ign, mask, 255)):
        got = fn(probs, t, include_background=include_background, mask=m, ignore_index=ign)
        ref = overlap_ref(
            probs.numpy(), t.numpy(), kind=kind, include_background=include_background,
            mask=None if m is None else m.numpy(), ignore_index=ign,
        )  # fmt: skip
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.integers(1, 4), n=st.integers(1, 4), empty=st.sampled_from(["one", "nan"]))
def test_overlap_property_random_labels(seed, c, n, empty):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, c, 4, 5, generator=g), 1) if c > 1 else torch.rand(n, 1, 4, 5, generator=g)
    target = torch.randint(0, max(c, 2), (n, 4, 5), generator=g)
    for kind, fn in (("dice", dice_score), ("iou", iou_score)):
        got = fn(probs, target, include_background=True, empty=empty)
        ref = overlap_ref(probs.numpy(), target.numpy(), kind=kind, empty=empty, include_background=True)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    dice, iou = dice_score(probs, target, include_background=True), iou_score(probs, target, include_background=True)
    np.testing.assert_allclose(dice.numpy(), (2 * iou / (1 + iou)).numpy(), rtol=1e-12)  # Dice = 2J / (1 + J)


def test_binary_single_channel_is_the_foreground_probability():
    probs, target = blobs(3, (2, 8, 8), num_classes=2)
    binary_target = (target == 1).long()
    np.testing.assert_allclose(
        dice_score(as_binary(probs), binary_target).numpy(),
        overlap_ref(as_binary(probs).numpy(), binary_target.numpy()),
        rtol=1e-12,
    )
    assert dice_score(as_binary(probs), binary_target).shape == (2, 1)


def _empty_case():
    """Case 0 with classes: 1 both empty, 2 reference empty only, 3 prediction empty only; case 1 all present."""
    target = torch.tensor([[[0, 0, 3, 3]], [[1, 2, 3, 0]]])
    pred = torch.tensor([[[0, 2, 0, 0]], [[1, 2, 3, 0]]])
    probs = torch.nn.functional.one_hot(pred, 4).permute(0, 3, 1, 2).float()
    return probs, target


def test_overlap_empty_structure_convention_and_counters():
    probs, target = _empty_case()
    for kind, fn, cls in (("dice", dice_score, DiceScore), ("iou", iou_score, IoUScore)):
        for empty in ("one", "nan"):
            got = fn(probs, target, empty=empty)
            np.testing.assert_allclose(got.numpy(), overlap_ref(probs.numpy(), target.numpy(), kind=kind, empty=empty))
            both = 1.0 if empty == "one" else math.nan
            np.testing.assert_array_equal(got[0].numpy(), [both, 0.0, 0.0])  # docs/metrics.md, empty structures
            metric = cls(4, empty=empty)
            metric.update(probs, target)
            counts = metric.compute_counts()
            assert counts["n_empty_both"].tolist() == [1, 0, 0]
            assert counts["n_empty_target_only"].tolist() == [0, 1, 0]
            assert counts["n_empty_pred_only"].tolist() == [0, 0, 1]
            assert counts["count"].tolist() == ([2, 2, 2] if empty == "one" else [1, 2, 2])
            assert all(v.dtype == torch.int64 for v in counts.values())
            np.testing.assert_allclose(metric.compute().numpy(), np.nanmean(got.numpy(), axis=0), rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("include_background", [False, True])
def test_soft_dice_matches_reference(shape, include_background):
    probs, target = blobs(4, shape)
    soft = torch.softmax(torch.randn(probs.shape, generator=torch.Generator().manual_seed(5)), 1)
    mask = torch.rand(target.shape, generator=torch.Generator().manual_seed(6)) > 0.3
    for t in (target, soft):
        for m in (None, mask):
            got = soft_dice_score(probs, t, include_background=include_background, mask=m)
            npm = None if m is None else m.numpy()
            ref = soft_dice_ref(probs.numpy(), t.numpy(), include_background=include_background, mask=npm)
            np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.integers(1, 4))
def test_soft_dice_is_one_iff_equal_and_classic_for_binary(seed, c):
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(torch.randn(2, c, 5, 4, generator=g), 1) if c > 1 else torch.rand(2, 1, 5, 4, generator=g)
    assert torch.allclose(soft_dice_score(q, q, include_background=True), torch.ones(1, dtype=torch.float64))
    other = q.roll(1, dims=-1)
    if not torch.equal(other, q):
        assert bool((soft_dice_score(other, q, include_background=True) < 1).any())
    labels = torch.randint(0, max(c, 2), (2, 5, 4), generator=g)
    onehot = torch.nn.functional.one_hot(labels, max(c, 2)).permute(0, 3, 1, 2).double()
    onehot = onehot[:, 1:2] if c == 1 else onehot
    pred = torch.nn.functional.one_hot(torch.randint(0, max(c, 2), (2, 5, 4), generator=g), max(c, 2))
    pred = pred.permute(0, 3, 1, 2).double()
    pred = pred[:, 1:2] if c == 1 else pred
    assert torch.allclose(soft_dice_score(pred, onehot), dice_score(pred, labels))  # binary inputs: classic Dice
    assert torch.allclose(soft_dice_score(pred, labels), dice_score(pred, labels))  # hard target is one-hot encoded


def test_soft_dice_is_maximised_at_the_soft_target_not_at_overconfidence():
    target = torch.tensor([[[0.5, 0.5, 0.5]]])  # C == 1: foreground 0.5 everywhere
    at_target = soft_dice_score(torch.full((1, 1, 3), 0.5), target)
    overconfident = soft_dice_score(torch.ones(1, 1, 3), target)
    assert float(at_target) == 1.0 and float(overconfident) < 1.0


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 0.5), (0.7, 1.3)])
def test_hd95_assd_two_squares_offset_by_k(k, spacing):
    # A 2x2 square G and the same square P shifted by k >= 2 columns (no overlap). Every voxel of a 2x2 square is a
    # surface voxel. P's left column lies k − 1 columns from G's right column, P's right column k columns: the
    # directed distances are {(k−1)·sx, (k−1)·sx, k·sx, k·sx} (same rows, so dy = 0) in both directions. The 95th
    # percentile of 4 sorted values interpolates at rank 0.95·3 = 2.85, between two values equal to k·sx, so
    # HD95 = k·sx. ASSD = mean of the 8 distances = (k − 1/2)·sx.
    target = torch.zeros(1, 6, 12, dtype=torch.long)
    target[0, 2:4, 1:3] = 1
    probs = target.roll(k, dims=2).unsqueeze(1).float()
    sx = spacing[1]
    assert float(hausdorff_distance_95(probs, target, spacing=spacing)) == pytest.approx(k * sx, rel=1e-6)
    assert float(average_surface_distance(probs, target, spacing=spacing)) == pytest.approx((k - 0.5) * sx, rel=1e-6)


def test_hd95_two_cubes_3d():
    # 2x2x2 cubes offset by k = 3 along W with spacing sx = 0.5: same argument as in 2D, per (depth, row) pair.
    target = torch.zeros(1, 5, 5, 9, dtype=torch.long)
    target[0, 1:3, 1:3, 1:3] = 1
    probs = target.roll(3, dims=3).unsqueeze(1).float()
    assert float(hausdorff_distance_95(probs, target, spacing=(1.0, 1.0, 0.5))) == pytest.approx(1.5, rel=1e-6)
    assert float(average_surface_distance(probs, target, spacing=(1.0, 1.0, 0.5))) == pytest.approx(1.25, rel=1e-6)


@pytest.mark.parametrize(
    "shape,spacing", [((3, 10, 12), (0.8, 1.5)), ((2, 6, 7, 8), (2.0, 1.0, 0.6)), ((2, 9, 9), None)]
)
@pytest.mark.parametrize("include_background", [False, True])
def test_distances_match_reference(shape, spacing, include_background):
    probs, target = blobs(7, shape)
    target = torch.where(torch.rand(target.shape, generator=torch.Generator().manual_seed(8)) > 0.9, 9, target)
    for ign in (None, 9):
        t = target if ign is not None else target.clamp_max(2)
        for kind, fn in (("hd95", hausdorff_distance_95), ("assd", average_surface_distance)):
            got = fn(probs, t, include_background=include_background, spacing=spacing, ignore_index=ign)
            ref = distance_ref(
                probs.numpy(), t.numpy(), kind=kind, include_background=include_background, spacing=spacing,
                ignore_index=ign,
            )  # fmt: skip
            assert got.dtype == torch.float64
            np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_distance_empty_structures_are_nan_and_counted():
    probs, target = _empty_case()
    probs, target = probs.expand(-1, -1, 3, -1), target.expand(-1, 3, -1)  # 2D images (N, 3, 4)
    for fn, cls in ((hausdorff_distance_95, HausdorffDistance95), (average_surface_distance, AverageSurfaceDistance)):
        got = fn(probs, target)
        assert bool(got[0].isnan().all()) and not bool(got[1].isnan().any())
        metric = cls(4)
        metric.update(probs, target)
        counts = metric.compute_counts()
        assert counts["n_empty_both"].tolist() == [1, 0, 0]
        assert counts["n_empty_target_only"].tolist() == [0, 1, 0]
        assert counts["n_empty_pred_only"].tolist() == [0, 0, 1]
        assert counts["count"].tolist() == [1, 1, 1]
        np.testing.assert_allclose(metric.compute().numpy(), got[1].numpy(), rtol=1e-12)


def _stream(cls, probs, target, cut, **kw):
    metric = cls(probs.shape[1], **kw)
    for lo, hi in ((0, cut), (cut, probs.shape[0])):
        if hi > lo:
            metric.update(probs[lo:hi], target[lo:hi])
    return metric


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), cut=st.integers(0, 6), three_d=st.booleans())
def test_metric_over_batches_equals_functional(seed, n, cut, three_d):
    probs, target = blobs(seed, (n, 4, 5, 6) if three_d else (n, 7, 8))
    cut = min(cut, n)
    pairs = [(DiceScore, dice_score, {"empty": "nan"}), (IoUScore, iou_score, {}), (SoftDiceScore, soft_dice_score, {})]
    pairs += [
        (HausdorffDistance95, hausdorff_distance_95, {"spacing": 0.5}),
        (AverageSurfaceDistance, average_surface_distance, {}),
    ]
    for cls, fn, kw in pairs:
        metric = _stream(cls, probs, target, cut, include_background=True, **kw)
        whole = fn(probs, target, include_background=True, **kw).numpy()
        with np.errstate(all="ignore"):  # a class without any counted case gives 0/0 = NaN, like the metric
            expected = np.nansum(whole, 0) / (~np.isnan(whole)).sum(0)
        np.testing.assert_allclose(metric.compute().reshape(-1).numpy(), expected, rtol=1e-12, equal_nan=True)
        assert metric.total.dtype == torch.float64 and metric.count.dtype == torch.int64


def test_states_are_summable_fixed_size_and_lazy_soft_dice():
    for cls in (DiceScore, IoUScore, SoftDiceScore, HausdorffDistance95, AverageSurfaceDistance):
        metric = cls(3)
        assert not metric.is_differentiable and not metric.full_state_update
        for name, reduce in metric._reductions.items():
            assert reduce.__name__ in {"dim_zero_sum"}, (cls, name)
            assert getattr(metric, name).shape == (2,)
    probs, target = blobs(9, (3, 6, 6))
    sized = SoftDiceScore(3, include_background=True)
    sized.update(probs, target)
    assert torch.equal(sized.compute(), soft_dice_score(probs, target, include_background=True).mean(0))
    forward = DiceScore(3)(probs, target)  # forward = this batch only
    np.testing.assert_allclose(forward.numpy(), dice_score(probs, target).mean(0).numpy(), rtol=1e-12)


def _good():
    probs, target = blobs(10, (2, 6, 6))
    return probs, target


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p, t: dice_score(p, t, empty="zero"), r"`empty` of dice_score.*'zero'"),
        (lambda p, t: iou_score(p, t, include_background="yes"), r"`include_background` of iou_score.*'yes'"),
        (lambda p, t: dice_score(p, t, num_classes=0), r"`num_classes` of dice_score.*0"),
        (lambda p, t: dice_score(p, t, num_classes=4), r"num_classes=4"),
        (lambda p, t: dice_score(p, t, ignore_index=1.5), r"`ignore_index` of dice_score.*1.5"),
        (lambda p, t: dice_score(p, p), r"`target` of dice_score.*soft_dice_score"),
        (lambda p, t: hausdorff_distance_95(p, p), r"`target` of hausdorff_distance_95.*soft"),
        (lambda p, t: hausdorff_distance_95(p, t, spacing=(1.0, -1.0)), r"`spacing` of hausdorff_distance_95"),
        (lambda p, t: average_surface_distance(p, t, spacing=(1.0, 1.0, 1.0)), r"`spacing` of average_surface_dist"),
        (lambda p, t: average_surface_distance(p[..., 0], t[..., 0]), r"`probs` of average_surface_distance"),
        (lambda p, t: soft_dice_score(p * 2, t), r"`probs` of soft_dice_score"),
        (lambda p, t: dice_score(p, t + 5), r"`target` of dice_score"),
        (lambda p, t: DiceScore(3, empty="NaN"), r"`empty` of DiceScore.*'NaN'.*did you mean 'nan'"),
        (lambda p, t: HausdorffDistance95(3, spacing="1mm"), r"`spacing` of HausdorffDistance95.*'1mm'"),
        (lambda p, t: SoftDiceScore(num_classes=True), r"`num_classes` of SoftDiceScore"),
        (lambda p, t: DiceScore(4).update(p, t), r"`probs` of DiceScore must have num_classes=4"),
        (lambda p, t: AverageSurfaceDistance(3).update(p, t, spacing=[0.0, 1.0]), r"`spacing` of AverageSurface"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, match):
    probs, target = _good()
    with pytest.raises(ValueError, match=match):
        call(probs, target)


def test_bad_types_raise_type_error():
    probs, target = _good()
    with pytest.raises(TypeError, match="`target` of dice_score"):
        dice_score(probs, target.float())
    with pytest.raises(TypeError, match="`mask` of soft_dice_score"):
        soft_dice_score(probs, target, mask=torch.ones(target.shape))
