"""Multi-rater metrics (QUBIQ thresholded Dice, GED, leave-one-rater-out) against float64 NumPy references."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.functional.multirater import (
    dice_per_threshold,
    generalized_energy_distance,
    leave_one_rater_out,
    thresholded_dice,
)
from softlabels.metrics.multirater import GeneralizedEnergyDistance, ThresholdedDice

TAUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# ---------------------------------------------------------------- NumPy references (written from the definitions)
def nanmean(x: np.ndarray, axis) -> np.ndarray:
    """np.nanmean without the all-NaN RuntimeWarning (all NaN → NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def class_maps_ref(x: np.ndarray, include_background: bool) -> np.ndarray:
    """(N, C, *S) → (N, C', V) in the input dtype; C == 1 → [1 − p, p]."""
    x = x.reshape(x.shape[0], x.shape[1], -1)
    if x.shape[1] == 1:
        x = np.concatenate([1 - x, x], axis=1)
    return x if include_background else x[:, 1:]


def per_threshold_ref(probs, ref, taus=TAUS, include_background=False, empty="one"):
    p, q = class_maps_ref(probs, include_background), class_maps_ref(ref, include_background)
    out = np.zeros((p.shape[0], len(taus), p.shape[1]))
    for n, (t, c) in itertools.product(range(p.shape[0]), itertools.product(range(len(taus)), range(p.shape[1]))):
        a = p[n, c] > p.dtype.type(taus[t])  # strict, compared in the map's dtype
        b = q[n, c] > q.dtype.type(taus[t])
        denom = float(a.sum()) + float(b.sum())
        out[n, t, c] = (1.0 if empty == "one" else math.nan) if denom == 0 else 2.0 * float((a & b).sum()) / denom
    return out


def rater_maps_ref(raters: np.ndarray, c: int, dtype=np.float32) -> np.ndarray:
    """(R, N, *S) → (R, N, C, *S)."""
    if c == 1:
        return (raters == 1)[:, :, None].astype(dtype)
    return np.moveaxis(np.eye(c, dtype=dtype)[raters], -1, 2)


def ged_ref(samples, raters, num_classes, include_background, pairs):
    keep = range(0 if include_background else 1, num_classes)

    def d(a, b):
        ious = []
        for c in keep:
            x, y = a == c, b == c
            union = (x | y).sum()
            ious.append(1.0 if union == 0 else (x & y).sum() / union)
        return 1.0 - float(np.mean(ious))

    out = []
    for n in range(samples.shape[1]):
        s, y = samples[:, n], raters[:, n]
        sy = np.mean([d(a, b) for a in s for b in y])

        def within(z):
            k = len(z)
            vals = [d(z[i], z[j]) for i in range(k) for j in range(k) if pairs == "all" or i != j]
            return float(np.mean(vals)) if vals else 0.0

        out.append(2 * sy - within(s) - within(y))
    return np.array(out)


def soft_dice_ref(x, y, include_background, empty):
    x, y = class_maps_ref(x, include_background).astype(np.float64), class_maps_ref(y, include_background)
    y = y.astype(np.float64)
    total = x.sum(-1) + y.sum(-1)
    with np.errstate(all="ignore"):
        dice = (total - np.abs(x - y).sum(-1)) / total
    return np.where(total == 0, 1.0 if empty == "one" else np.nan, dice)


def loro_ref(probs, raters, score, include_background=False, empty="one"):
    maps = rater_maps_ref(raters, probs.shape[1], probs.dtype)
    r_count = maps.shape[0]
    counts = maps.sum(0)

    def s(x, ref):
        if score == "soft_dice":
            v = soft_dice_ref(x, ref, include_background, empty)
        else:
            v = nanmean(per_threshold_ref(x, ref, include_background=include_background, empty=empty), 1)
        return nanmean(v, 1)

    model, rater_scores = [], []
    for r in range(r_count):
        ref = (counts - maps[r]) / probs.dtype.type(r_count - 1)
        model.append(s(probs, ref))
        rater_scores.append(s(maps[r], ref))
    return np.mean(model, 0), np.stack(rater_scores)


# ---------------------------------------------------------------- inputs
def make(seed, n=3, c=3, spatial=(6, 5), r=4):
    g = torch.Generator().manual_seed(seed)
    if c == 1:
        probs = torch.rand((n, 1, *spatial), generator=g)
    else:
        probs = torch.softmax(2 * torch.randn((n, c, *spatial), generator=g), 1)
    raters = torch.randint(0, max(c, 2), (r, n, *spatial), generator=g)
    soft = torch.from_numpy(rater_maps_ref(raters.numpy(), c).sum(0) / np.float32(r))
    return probs, raters, soft


# ---------------------------------------------------------------- thresholded Dice
@pytest.mark.parametrize("c,spatial", [(1, (7, 6)), (3, (6, 5)), (4, (3, 4, 5))])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("empty", ["one", "nan"])
def test_thresholded_dice_matches_reference(c, spatial, include_background, empty):
    probs, _, soft = make(1, c=c, spatial=spatial, r=5)
    kw = {"include_background": include_background, "empty": empty}
    got = dice_per_threshold(probs, soft, **kw).numpy()
    np.testing.assert_allclose(got, per_threshold_ref(probs.numpy(), soft.numpy(), **kw), rtol=1e-12)
    np.testing.assert_allclose(thresholded_dice(probs, soft, **kw).numpy(), nanmean(got, 1), rtol=1e-12, equal_nan=True)


def test_label_map_target_is_its_one_hot():
    probs, raters, _ = make(2, c=3)
    hard = torch.from_numpy(rater_maps_ref(raters[:1].numpy(), 3)[0])
    assert torch.equal(thresholded_dice(probs, raters[0]), thresholded_dice(probs, hard))


def test_binarisation_is_strict():
    # 3 of 10 raters at τ = 0.3 is not in the mask; a prediction equal to τ neither
    p = torch.tensor([[[0.3, 0.31]]])
    q = torch.tensor([[[0.3, 0.0]]])
    d = dice_per_threshold(p, q, thresholds=(0.3,), empty="nan")
    assert d.item() == 0.0  # prediction {1}, reference {} → 0
    assert dice_per_threshold(p[..., :1], q[..., :1], thresholds=(0.3,), empty="nan").isnan().all()


def test_empty_both_gives_one_or_nan_and_is_counted():
    p, q = torch.full((2, 1, 4), 0.05), torch.zeros(2, 1, 4)
    assert thresholded_dice(p, q).tolist() == [[1.0], [1.0]]
    assert thresholded_dice(p, q, empty="nan").isnan().all()
    metric = ThresholdedDice(1, empty="nan")
    metric.update(p, q)
    assert metric.compute().isnan().all() and int(metric.n_both_empty.sum()) == 2 * 9


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.sampled_from([1, 2, 3]), r=st.integers(1, 6))
def test_soft_map_with_itself_scores_one(seed, c, r):
    _, _, soft = make(seed, n=2, c=c, r=r)
    probs, _, _ = make(seed + 1, n=2, c=c, r=r)
    assert torch.equal(thresholded_dice(soft, soft), torch.ones(2, max(c, 2) - 1, dtype=torch.float64))
    other = thresholded_dice(probs, soft)
    assert ((other >= 0) & (other <= 1)).all()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8), cut=st.integers(0, 8), empty=st.sampled_from(["one", "nan"])
)
def test_thresholded_dice_metric_equals_functional_over_batches(seed, n, cut, empty):
    probs, _, soft = make(seed, n=n, c=3, r=3)
    probs[:, 0] += probs[:, 1]  # some cases with an empty class 1, to exercise the both-empty path
    probs[:, 1] = 0
    metric = ThresholdedDice(3, empty=empty, include_background=True)
    for lo, hi in ((0, min(cut, n)), (min(cut, n), n)):
        if hi > lo:
            metric.update(probs[lo:hi], soft[lo:hi])
    per_thr = per_threshold_ref(probs.numpy(), soft.numpy(), include_background=True, empty=empty)
    per_case = nanmean(per_thr, 1)
    np.testing.assert_allclose(metric.compute().numpy(), nanmean(per_case, 0), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(metric.compute_curve().numpy(), nanmean(per_thr, 0), rtol=1e-12, equal_nan=True)
    stats_empty = (dice_per_threshold(probs, soft, include_background=True, empty="nan").isnan()).sum(0)
    assert torch.equal(metric.n_both_empty, stats_empty)


# ---------------------------------------------------------------- generalized energy distance
@pytest.mark.parametrize("m,r", [(1, 2), (3, 4), (5, 3)])
@pytest.mark.parametrize("num_classes,include_background", [(2, False), (3, False), (3, True)])
@pytest.mark.parametrize("pairs", ["distinct", "all"])
def test_ged_matches_reference(m, r, num_classes, include_background, pairs):
    g = torch.Generator().manual_seed(m * 10 + r)
    samples = torch.randint(0, num_classes, (m, 3, 5, 4), generator=g)
    raters = torch.randint(0, num_classes, (r, 3, 5, 4), generator=g)
    raters[:, 0] = 0  # a case whose raters are all empty (IoU of two empty masks is 1)
    kw = {"num_classes": num_classes, "include_background": include_background, "pairs": pairs}
    got = generalized_energy_distance(samples, raters, **kw)
    want = ged_ref(samples.numpy(), raters.numpy(), num_classes, include_background, pairs)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 4), r=st.integers(2, 4), num_classes=st.integers(2, 4))
def test_ged_properties(seed, m, r, num_classes):
    g = torch.Generator().manual_seed(seed)
    samples = torch.randint(0, num_classes, (m, 2, 3, 3), generator=g)
    raters = torch.randint(0, num_classes, (r, 2, 3, 3), generator=g)
    kw = {"num_classes": num_classes}
    assert (generalized_energy_distance(samples, raters, pairs="all", **kw) >= -1e-12).all()  # V-statistic
    assert torch.equal(
        generalized_energy_distance(raters, raters, pairs="all", **kw), torch.zeros(2, dtype=torch.float64)
    )
    if m >= 2:  # symmetric in the two sets
        torch.testing.assert_close(
            generalized_energy_distance(samples, raters, **kw), generalized_energy_distance(raters, samples, **kw)
        )
    metric = GeneralizedEnergyDistance(num_classes)
    metric.update(samples[:, :1], raters[:, :1])
    metric.update(samples[:, 1:], raters[:, 1:])
    torch.testing.assert_close(metric.compute(), generalized_energy_distance(samples, raters, **kw).mean())


# ---------------------------------------------------------------- leave one rater out
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("score", ["thresholded_dice", "soft_dice"])
@pytest.mark.parametrize("include_background", [False, True])
def test_leave_one_rater_out_matches_reference(c, score, include_background):
    probs, raters, _ = make(3, n=3, c=c, r=4)
    out = leave_one_rater_out(probs, raters, score=score, include_background=include_background)
    model, rater_scores = loro_ref(probs.numpy(), raters.numpy(), score, include_background)
    np.testing.assert_allclose(out.model.numpy(), model, rtol=1e-12)
    np.testing.assert_allclose(out.raters.numpy(), rater_scores, rtol=1e-12)
    assert out.raters.shape == (4, 3) and out.model.dtype == torch.float64


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), score=st.sampled_from(["thresholded_dice", "soft_dice"]))
def test_identical_raters_agree_perfectly(seed, score):
    probs, raters, _ = make(seed, n=2, c=3, r=1)
    out = leave_one_rater_out(probs, raters.expand(3, -1, -1, -1), score=score)
    assert torch.equal(out.raters, torch.ones(3, 2, dtype=torch.float64))
    assert ((out.model >= 0) & (out.model <= 1)).all()


# ---------------------------------------------------------------- bad inputs
def test_bad_options_name_argument_and_function():
    probs, raters, soft = make(0)
    with pytest.raises(ValueError, match=r"`thresholds` of thresholded_dice .*got \(0.5, 0.2\)"):
        thresholded_dice(probs, soft, thresholds=(0.5, 0.2))
    with pytest.raises(ValueError, match=r"`thresholds` of dice_per_threshold .*got \(1.0,\)"):
        dice_per_threshold(probs, soft, thresholds=(1.0,))
    with pytest.raises(ValueError, match=r"`empty` of thresholded_dice must be one of 'nan', 'one'; got 'zero'"):
        thresholded_dice(probs, soft, empty="zero")
    with pytest.raises(ValueError, match=r"`include_background` of ThresholdedDice must be a bool; got 1"):
        ThresholdedDice(3, include_background=1)
    with pytest.raises(ValueError, match=r"`num_classes` of ThresholdedDice must be an int >= 1; got 0"):
        ThresholdedDice(0)
    with pytest.raises(ValueError, match=r"`score` of leave_one_rater_out .*got 'dice'"):
        leave_one_rater_out(probs, raters, score="dice")
    with pytest.raises(ValueError, match=r"`pairs` of generalized_energy_distance .*got 'pairwise'"):
        generalized_energy_distance(raters, raters, pairs="pairwise")
    with pytest.raises(ValueError, match=r"`num_classes` of GeneralizedEnergyDistance must be an int >= 2; got 1"):
        GeneralizedEnergyDistance(1)


def test_bad_tensors_raise_clear_errors():
    probs, raters, soft = make(0)
    with pytest.raises(ValueError, match=r"`target` of thresholded_dice must sum to 1"):
        thresholded_dice(probs, soft * 0.5)
    with pytest.raises(ValueError, match=r"num_classes=2 channels; got 3"):
        ThresholdedDice(2).update(probs, soft)
    with pytest.raises(
        ValueError, match=r"`raters` of generalized_energy_distance must be \(K, N, \*spatial\) with K >= 2"
    ):
        generalized_energy_distance(raters, raters[:1], num_classes=3, pairs="distinct")
    with pytest.raises(TypeError, match=r"`samples` of generalized_energy_distance must be an integer label tensor"):
        generalized_energy_distance(raters.float(), raters, num_classes=3)
    with pytest.raises(
        ValueError, match=r"`samples` of generalized_energy_distance must hold labels in \[0, 1\]; got min 0, max 2"
    ):
        generalized_energy_distance(raters, raters % 2)
    with pytest.raises(ValueError, match=r"`samples`, `raters` of GeneralizedEnergyDistance must share"):
        GeneralizedEnergyDistance(3).update(raters[:, :2], raters)
    with pytest.raises(ValueError, match=r"`raters\[r\]` of leave_one_rater_out must have shape \(3, 6, 5\)"):
        leave_one_rater_out(probs, raters[:, :, :3])
    with pytest.raises(ValueError, match=r"`raters(\[r\])?` of leave_one_rater_out must hold labels in \[0, 1\]"):
        leave_one_rater_out(probs[:, 1:2], raters)
    with pytest.raises(ValueError, match=r"`probs` of leave_one_rater_out must sum to 1"):
        leave_one_rater_out(probs * 0.5, raters)
