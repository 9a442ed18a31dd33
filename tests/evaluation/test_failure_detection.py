"""Failure detection: confidences against float64 NumPy/SciPy references and hand-checked values; AURC, e-AURC,
AUGRC against brute force (every tie order enumerated), AUROC against scikit-learn, Spearman against SciPy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import distance_transform_edt
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from softlabels.evaluation.failure_detection import (
    CLASSIFICATION_CONFIDENCES,
    SEGMENTATION_CONFIDENCES,
    augrc,
    aurc,
    classification_confidences,
    e_aurc,
    failure_auroc,
    failure_detection_table,
    risk_coverage_curve,
    segmentation_confidences,
    spearman,
)

FAST = settings(max_examples=50, deadline=None)
LOSS = st.floats(0.0, 1.0, allow_nan=False)


# ---------------------------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------------------------


def cumulative_losses_of_orders(conf, loss):
    """Cumulative losses S_k (k = 1..n) of every order of the cases that sorts the confidence descending."""
    conf, loss = np.asarray(conf, float), np.asarray(loss, float)
    out = []
    for order in itertools.permutations(range(conf.size)):
        if all(conf[order[i]] >= conf[order[i + 1]] for i in range(conf.size - 1)):
            out.append(np.cumsum(loss[list(order)]))
    return np.array(out)


def brute_aurc_augrc(conf, loss):
    """Mean over the valid orders (uniform tie-breaking) of the AURC and the AUGRC of each order."""
    cums = cumulative_losses_of_orders(conf, loss)
    n = cums.shape[1]
    k = np.arange(1, n + 1)
    return float(np.mean((cums / k).mean(1))), float(np.mean((cums / n).mean(1)))


def trapezoid_augrc(conf, loss):
    """AUGRC as the trapezoidal rule over (0, 0) and the tie-group boundaries (the fd-shifts convention)."""
    conf, loss = np.asarray(conf, float), np.asarray(loss, float)
    n = conf.size
    points = [(0.0, 0.0)] + [((conf >= t).sum() / n, loss[conf >= t].sum() / n) for t in np.unique(conf)[::-1]]
    cov, risk = np.array(points).T
    return float(np.sum(np.diff(cov) * (risk[1:] + risk[:-1]) / 2))


def softmax(x, axis=0):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def xlogx(p):
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def seg_reference(p, threshold=0.5, low=0.25, high=0.75, width=2.0):
    """The seven scores of one case (C, *spatial), float64 NumPy + SciPy's distance transform."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape[0] == 1:
        f = p[0]
        top, ent, fg = np.maximum(f, 1 - f), -(xlogx(f) + xlogx(1 - f)) / math.log(2), f > threshold
    else:
        f = 1 - p[0]
        top, ent, fg = p.max(0), -xlogx(p).sum(0) / math.log(p.shape[0]), p.argmax(0) != 0
    band = np.zeros(fg.shape, dtype=bool)
    if fg.any() and not fg.all():
        band = (fg & (distance_transform_edt(fg) <= width)) | (~fg & (distance_transform_edt(~fg) <= width))

    def mean_over(v, r):
        return v[r].mean() if r.any() else v.mean()

    wide, narrow = f >= low, f >= high
    total = wide.sum() + narrow.sum()
    return {
        "mean_max_prob_foreground": mean_over(top, fg),
        "mean_entropy_foreground": -mean_over(ent, fg),
        "mean_max_prob_boundary": mean_over(top, band),
        "mean_entropy_boundary": -mean_over(ent, band),
        "volume_agreement": 1 - abs(f.sum() - fg.sum()) / max(f.sum(), fg.sum(), 1.0),
        "mask_agreement": 1.0 if total == 0 else 2 * (wide & narrow).sum() / total,
        "mean_max_prob": top.mean(),
    }


def binary_entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)


# ---------------------------------------------------------------------------------------------------------------
# risk–coverage, AURC, e-AURC, AUGRC
# ---------------------------------------------------------------------------------------------------------------


@FAST
@given(
    st.lists(st.tuples(st.floats(-10, 10, allow_nan=False), LOSS), min_size=1, max_size=30, unique_by=lambda t: t[0])
)
def test_aurc_augrc_equal_brute_force_without_ties(cases):
    conf, loss = map(np.array, zip(*cases, strict=True))
    order = np.argsort(-conf)
    cum = np.cumsum(loss[order])
    k = np.arange(1, conf.size + 1)
    coverage, risk = risk_coverage_curve(conf, loss)
    np.testing.assert_allclose(coverage, k / conf.size, rtol=0, atol=0)
    np.testing.assert_allclose(risk, cum / k, rtol=1e-12, atol=1e-15)
    assert aurc(conf, loss) == pytest.approx(np.mean(cum / k), rel=1e-12, abs=1e-15)
    assert augrc(conf, loss) == pytest.approx(np.mean(k / conf.size * cum / k), rel=1e-12, abs=1e-15)


@FAST
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0]), LOSS), min_size=1, max_size=6))
def test_ties_are_the_expectation_over_random_tie_orders(cases):
    conf, loss = map(np.array, zip(*cases, strict=True))
    expected_aurc, expected_augrc = brute_aurc_augrc(conf, loss)
    assert aurc(conf, loss) == pytest.approx(expected_aurc, rel=1e-12, abs=1e-14)
    assert augrc(conf, loss) == pytest.approx(expected_augrc, rel=1e-12, abs=1e-14)
    # the curve itself: the mean over the tie orders of S_k / k
    cums = cumulative_losses_of_orders(conf, loss)
    np.testing.assert_allclose(risk_coverage_curve(conf, loss)[1], (cums / np.arange(1, conf.size + 1)).mean(0))


@FAST
@given(st.lists(st.tuples(st.integers(0, 3), LOSS), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_permuting_cases_changes_nothing_bit_for_bit(cases, rnd):
    conf, loss = map(np.array, zip(*cases, strict=True))
    perm = list(range(conf.size))
    rnd.shuffle(perm)
    for fn in (aurc, augrc, e_aurc):
        assert fn(conf, loss) == fn(conf[perm], loss[perm])
    np.testing.assert_array_equal(risk_coverage_curve(conf, loss)[1], risk_coverage_curve(conf[perm], loss[perm])[1])


@FAST
@given(st.lists(st.tuples(st.integers(0, 4), LOSS), min_size=1, max_size=40))
def test_augrc_is_the_trapezoidal_area_plus_half_a_step(cases):
    # the generalized risk is linear between tie-group boundaries, so the mean over k exceeds the trapezoidal rule
    # through (0, 0) and the boundaries (Traub et al.'s code) by exactly mean(loss) / (2n)
    conf, loss = map(np.array, zip(*cases, strict=True))
    expected = trapezoid_augrc(conf, loss) + loss.mean() / (2 * loss.size)
    assert augrc(conf, loss) == pytest.approx(expected, rel=1e-12, abs=1e-14)


@FAST
@given(st.lists(st.tuples(st.integers(0, 5), LOSS), min_size=1, max_size=40))
def test_e_aurc_is_non_negative_and_zero_for_the_oracle(cases):
    conf, loss = map(np.array, zip(*cases, strict=True))
    assert e_aurc(conf, loss) >= -1e-12
    assert e_aurc(-loss, loss) == 0.0
    assert e_aurc(1.0 - loss, loss) >= -1e-12
    quality = 1.0 - loss  # a perfect confidence: the quality itself, through the table
    (row,) = failure_detection_table({"oracle": quality}, quality)
    assert row["e_aurc"] == 0.0
    assert row["aurc"] == pytest.approx(aurc(-(1.0 - quality), 1.0 - quality), abs=0)


def test_hand_computed_values():
    # sorted: (0.9, 0), (0.5, 0 | 1) tied, (0.1, 1); S = 0, 0.5, 1, 2 (the tie's expected loss at k = 2)
    conf, loss = [0.5, 0.9, 0.1, 0.5], [1.0, 0.0, 1.0, 0.0]
    coverage, risk = risk_coverage_curve(conf, loss)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.25, 1 / 3, 0.5])
    assert aurc(conf, loss) == pytest.approx((0 + 0.25 + 1 / 3 + 0.5) / 4)
    assert augrc(conf, loss) == pytest.approx((0 + 0.5 + 1 + 2) / 16)
    # oracle: losses 0, 0, 1, 1 → risks 0, 0, 1/3, 1/2
    assert e_aurc(conf, loss) == pytest.approx(0.25 / 4)
    # one constant confidence: every risk is the mean loss
    assert aurc([1.0] * 4, loss) == pytest.approx(0.5)
    assert augrc([1.0] * 4, loss) == pytest.approx(np.mean([0.5, 1.0, 1.5, 2.0]) / 4)


def test_tensors_lists_and_arrays_give_the_same_values():
    rng = np.random.default_rng(0)
    conf, loss = rng.random(20), rng.random(20)
    for fn in (aurc, augrc, e_aurc, spearman):
        value = fn(conf, loss)
        assert fn(torch.tensor(conf, dtype=torch.float64), torch.tensor(loss)) == value
        assert fn(conf.tolist(), loss.tolist()) == value
    assert failure_auroc(torch.tensor(conf), torch.tensor(loss > 0.5)) == failure_auroc(conf, loss > 0.5)


@pytest.mark.parametrize("fn", [risk_coverage_curve, aurc, augrc, e_aurc, spearman, failure_auroc])
def test_bad_vectors_raise_naming_the_argument(fn):
    with pytest.raises(ValueError, match="same length; got 2, 3"):
        fn([0.1, 0.2], [0, 1, 0])
    with pytest.raises(ValueError, match=r"`confidence` .* 1-D .* got shape \(1, 2\)"):
        fn([[0.1, 0.2]], [[0, 1]])
    with pytest.raises(ValueError, match=r"at least one value; got shape \(0,\)"):
        fn([], [])
    with pytest.raises(ValueError, match=r"`confidence` .* finite; got 1 NaN"):
        fn([0.1, math.nan], [0, 1])
    with pytest.raises(TypeError, match=r"`confidence` .* numeric array or tensor; got str"):
        fn("ab", [0, 1])


# ---------------------------------------------------------------------------------------------------------------
# AUROC and Spearman
# ---------------------------------------------------------------------------------------------------------------


@FAST
@given(st.lists(st.tuples(st.integers(-3, 3) | st.floats(-5, 5), st.booleans()), min_size=1, max_size=40))
def test_failure_auroc_equals_sklearn(cases):
    conf, failed = map(np.array, zip(*cases, strict=True))
    value = failure_auroc(conf, failed)
    if failed.all() or not failed.any():
        assert math.isnan(value)
    else:
        assert value == pytest.approx(roc_auc_score(failed, -conf), abs=1e-12)
        assert failure_auroc(conf, failed.astype(int)) == value


def test_failure_auroc_rejects_non_binary_labels():
    with pytest.raises(ValueError, match=r"`failed` .* bool or 0/1; got values \[0.0, 0.5\]"):
        failure_auroc([0.1, 0.2], [0.0, 0.5])


@FAST
@given(st.lists(st.tuples(st.integers(0, 4) | st.floats(-5, 5), st.integers(0, 3) | LOSS), min_size=1, max_size=40))
def test_spearman_equals_scipy(cases):
    conf, quality = map(np.array, zip(*cases, strict=True))
    value = spearman(conf, quality)
    if np.ptp(conf) == 0 or np.ptp(quality) == 0:
        assert math.isnan(value)
    else:
        assert value == pytest.approx(spearmanr(conf, quality).statistic, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------------------------


def test_table_drops_cases_without_quality_and_matches_the_functions():
    rng = np.random.default_rng(1)
    quality = rng.random(30)
    quality[[3, 7]] = np.nan
    scores = {"a": rng.random(30), "b": torch.tensor(quality + rng.normal(0, 0.2, 30))}
    scores["a"][3] = np.nan  # a dropped case may have no confidence either
    rows = failure_detection_table(scores, torch.tensor(quality), failure_below=0.4)
    keep = ~np.isnan(quality)
    assert [r["confidence"] for r in rows] == ["a", "b"]
    assert list(rows[0]) == ["confidence", "aurc", "e_aurc", "augrc", "auroc", "spearman"]
    for row, conf in zip(rows, [scores["a"], scores["b"].numpy()], strict=True):
        c, q = conf[keep], quality[keep]
        assert row["aurc"] == aurc(c, 1 - q) and row["augrc"] == augrc(c, 1 - q) and row["e_aurc"] == e_aurc(c, 1 - q)
        assert row["auroc"] == failure_auroc(c, q < 0.4) and row["spearman"] == spearman(c, q)
    assert rows[1]["spearman"] > rows[0]["spearman"] and rows[1]["e_aurc"] < rows[0]["e_aurc"]


def test_table_with_correctness_and_without_any_quality():
    correct = np.array([1.0, 1.0, 0.0, 1.0, 0.0])
    (row,) = failure_detection_table({"p": [0.9, 0.8, 0.3, 0.7, 0.6]}, correct)
    assert row["auroc"] == 1.0 and row["e_aurc"] == 0.0
    (row,) = failure_detection_table({"p": [0.9, 0.8]}, [math.nan, math.nan])
    assert row["confidence"] == "p" and all(math.isnan(row[k]) for k in ("aurc", "e_aurc", "augrc", "auroc"))


def test_table_bad_inputs():
    with pytest.raises(ValueError, match=r"`quality` .* \[0, 1\] .* max 1.5"):
        failure_detection_table({"a": [1, 2]}, [0.5, 1.5])
    with pytest.raises(ValueError, match=r"`confidences\['a'\]` .* 2 values; got 3"):
        failure_detection_table({"a": [1, 2, 3]}, [0.5, 0.4])
    with pytest.raises(ValueError, match=r"`confidences\['a'\]` .* finite where"):
        failure_detection_table({"a": [1, math.nan]}, [0.5, 0.4])
    with pytest.raises(ValueError, match=r"`failure_below` .* finite number; got True"):
        failure_detection_table({"a": [1, 2]}, [0.5, 0.4], failure_below=True)
    with pytest.raises(TypeError, match=r"`confidences` .* mapping .* got list"):
        failure_detection_table([[1, 2]], [0.5, 0.4])


# ---------------------------------------------------------------------------------------------------------------
# segmentation and classification confidences
# ---------------------------------------------------------------------------------------------------------------


def test_binary_2d_hand_checked():
    # F = the first three voxels (p > 0.5); with width 1 the band is voxels 2 and 3 (one on each side)
    p = [0.9, 0.8, 0.7, 0.4, 0.2, 0.1]
    scores = segmentation_confidences(torch.tensor([[[p]]], dtype=torch.float64), boundary_width=1)
    top = [0.9, 0.8, 0.7, 0.6, 0.8, 0.9]
    ent = [binary_entropy(x) for x in p]
    expected = {
        "mean_max_prob_foreground": 0.8,
        "mean_entropy_foreground": -np.mean(ent[:3]),
        "mean_max_prob_boundary": 0.65,
        "mean_entropy_boundary": -np.mean(ent[2:4]),
        "volume_agreement": 1 - 0.1 / 3.1,  # expected volume 3.1, thresholded 3
        "mask_agreement": 2 * 2 / (4 + 2),  # {p ≥ 0.25} has 4 voxels, {p ≥ 0.75} 2, both 2
        "mean_max_prob": np.mean(top),
    }
    assert list(scores) == list(SEGMENTATION_CONFIDENCES)
    for name, value in expected.items():
        assert scores[name].dtype == torch.float64 and scores[name].shape == (1,)
        assert scores[name].item() == pytest.approx(value, abs=1e-12), name


def test_binary_3d_hand_checked():
    # one predicted voxel in the corner of a 2×2×2 cube: with width 1 the band is it and its 3 face neighbours
    p = torch.full((1, 1, 2, 2, 2), 0.2, dtype=torch.float64)
    p[0, 0, 0, 0, 0] = 0.9
    p[0, 0, 1, 1, 1] = 0.1  # the far corner, outside the band
    scores = segmentation_confidences(p, boundary_width=1)
    assert scores["mean_max_prob_foreground"].item() == pytest.approx(0.9)
    assert scores["mean_max_prob_boundary"].item() == pytest.approx((0.9 + 3 * 0.8) / 4)
    assert scores["mean_entropy_boundary"].item() == pytest.approx(-(binary_entropy(0.9) + 3 * binary_entropy(0.2)) / 4)
    expected_volume = 0.9 + 6 * 0.2 + 0.1
    assert scores["volume_agreement"].item() == pytest.approx(1 - (expected_volume - 1) / expected_volume)
    assert scores["mask_agreement"].item() == pytest.approx(2 * 1 / (1 + 1))  # {p ≥ 0.25} = {p ≥ 0.75} = the corner
    assert scores["mean_max_prob"].item() == pytest.approx((0.9 + 6 * 0.8 + 0.9) / 8)


def test_three_classes_hand_checked():
    # voxels (columns): background, class 1, class 2, a background/class-1 tie (→ background, as argmax)
    cols = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.45, 0.45, 0.1]]
    p = torch.tensor(cols, dtype=torch.float64).T.reshape(1, 3, 1, 4)
    scores = segmentation_confidences(p, boundary_width=1)
    entropy = [-sum(x * math.log(x) for x in col) / math.log(3) for col in cols]
    assert scores["mean_max_prob_foreground"].item() == pytest.approx(0.55)
    assert scores["mean_entropy_foreground"].item() == pytest.approx(-(entropy[1] + entropy[2]) / 2)
    # F = voxels 1, 2: with width 1 the band is all four voxels
    assert scores["mean_max_prob_boundary"].item() == pytest.approx(np.mean([0.7, 0.5, 0.6, 0.45]))
    assert scores["mean_entropy_boundary"].item() == pytest.approx(-np.mean(entropy))
    # f = 1 − p_0 = 0.3, 0.8, 0.9, 0.55: expected volume 2.55 against 2; {f ≥ 0.25}: 4 voxels, {f ≥ 0.75}: 2
    assert scores["volume_agreement"].item() == pytest.approx(1 - 0.55 / 2.55)
    assert scores["mask_agreement"].item() == pytest.approx(4 / 6)
    assert scores["mean_max_prob"].item() == pytest.approx(np.mean([0.7, 0.5, 0.6, 0.45]))


def test_boundary_band_of_a_longer_row():
    # width 1 on a row of 8 with F = voxels 1..5 of class 1 or 2: the band is voxels 0, 1, 5, 6 only
    labels = [0, 1, 2, 1, 2, 1, 0, 0]
    p = softmax(np.eye(3)[labels].T * 2.0 + np.linspace(0, 0.3, 8), 0)
    scores = segmentation_confidences(torch.tensor(p).reshape(1, 3, 1, 8), boundary_width=1)
    top = p.max(0)
    assert scores["mean_max_prob_boundary"].item() == pytest.approx(top[[0, 1, 5, 6]].mean())


def test_empty_predicted_foreground_falls_back_to_the_whole_image():
    p = torch.tensor([[[[0.1, 0.2], [0.05, 0.3]]]], dtype=torch.float64)
    scores = segmentation_confidences(p)
    whole = scores["mean_max_prob"].item()
    assert whole == pytest.approx(np.mean([0.9, 0.8, 0.95, 0.7]))
    assert scores["mean_max_prob_foreground"].item() == whole == scores["mean_max_prob_boundary"].item()
    assert scores["mean_entropy_foreground"].item() == scores["mean_entropy_boundary"].item()
    assert scores["volume_agreement"].item() == pytest.approx(1 - 0.65)  # |0.65 − 0| / max(0.65, 0, 1)
    assert scores["mask_agreement"].item() == pytest.approx(0.0)  # {f ≥ 0.25} = {0.3}, {f ≥ 0.75} empty
    quiet = segmentation_confidences(p * 0.5)  # every f < 0.25: both masks empty
    assert quiet["mask_agreement"].item() == 1.0
    three = segmentation_confidences(torch.tensor([[0.8, 0.6], [0.1, 0.3], [0.1, 0.1]]).reshape(1, 3, 1, 2))
    assert three["mean_max_prob_foreground"].item() == pytest.approx(0.7)  # argmax is background everywhere


@pytest.mark.parametrize("num_channels", [1, 3])
@pytest.mark.parametrize("spatial", [(9, 11), (5, 7, 6)])
def test_against_numpy_reference(num_channels, spatial):
    rng = np.random.default_rng(2)
    if num_channels == 1:
        probs = rng.beta(0.6, 0.6, (3, 1, *spatial))
    else:
        probs = softmax(rng.normal(0, 2, (3, num_channels, *spatial)), 1)
    background = [0.1] if num_channels == 1 else [0.8, 0.1, 0.1]  # case 2: no predicted foreground
    probs[2] = np.array(background).reshape(-1, *[1] * len(spatial))
    kwargs = {"threshold": 0.4, "low": 0.3, "high": 0.6, "boundary_width": 1.5}
    scores = segmentation_confidences(torch.tensor(probs, dtype=torch.float32), **kwargs)
    from_numpy = segmentation_confidences(probs, **kwargs)
    width = kwargs.pop("boundary_width")
    for i in range(3):
        ref32 = seg_reference(torch.tensor(probs[i], dtype=torch.float32).double().numpy(), width=width, **kwargs)
        ref = seg_reference(probs[i], width=width, **kwargs)
        for name in SEGMENTATION_CONFIDENCES:
            assert scores[name][i].item() == pytest.approx(ref32[name], abs=1e-12), (i, name)
            assert from_numpy[name][i].item() == pytest.approx(ref[name], abs=1e-12), (i, name)


@pytest.mark.parametrize("num_channels", [1, 3])
@pytest.mark.parametrize("spatial", [(16, 16), (10, 10, 10)])
def test_a_sharper_map_scores_higher_on_every_confidence(num_channels, spatial):
    grid = np.stack(np.meshgrid(*[np.arange(s) + 0.5 for s in spatial], indexing="ij"))
    dist = np.sqrt(((grid - np.array([s / 2 for s in spatial]).reshape(-1, *[1] * len(spatial))) ** 2).sum(0))
    if num_channels == 1:
        logits = (3.7 - dist)[None]  # a ball of radius 3.7, never exactly at the level

        def probs(t):
            return torch.tensor(1 / (1 + np.exp(-t * logits)))
    else:
        logits = np.stack([dist - 4.3, 4.3 - dist, 2.2 - np.abs(grid[0] - spatial[0] / 2) - 0.5 * dist])

        def probs(t):
            return torch.tensor(softmax(t * logits, 0))

    soft = segmentation_confidences(probs(0.7)[None])
    sharp = segmentation_confidences(probs(3.0)[None])
    for name in SEGMENTATION_CONFIDENCES:
        assert sharp[name].item() > soft[name].item(), name


def test_cases_are_scored_independently():
    rng = np.random.default_rng(3)
    probs = torch.tensor(softmax(rng.normal(0, 2, (4, 3, 6, 6, 5)), 1))
    binary = probs[:, 1:2].clone()
    before, binary_before = probs.clone(), binary.clone()
    together = segmentation_confidences(probs)
    segmentation_confidences(binary)
    assert torch.equal(probs, before) and torch.equal(binary, binary_before)  # float64 input: never written to
    for i in range(4):
        alone = segmentation_confidences(probs[i : i + 1])
        for name in SEGMENTATION_CONFIDENCES:
            assert alone[name].item() == together[name][i].item()
    empty = segmentation_confidences(probs[:0])
    assert all(v.shape == (0,) and v.dtype == torch.float64 for v in empty.values())


def test_segmentation_bad_inputs():
    ok = torch.full((1, 1, 3, 3), 0.5)
    with pytest.raises(ValueError, match=r"`probs` .* \(N, C, H, W\) or \(N, C, D, H, W\); got \(1, 3, 3\)"):
        segmentation_confidences(ok[0])
    with pytest.raises(TypeError, match=r"`probs` .* floating .* got a torch.int64 tensor"):
        segmentation_confidences(ok.long())
    with pytest.raises(ValueError, match=r"`probs` .* sum to 1"):
        segmentation_confidences(torch.full((1, 2, 3, 3), 0.7))
    with pytest.raises(ValueError, match=r"`probs` .* probabilities in"):
        segmentation_confidences(ok + 1.0)
    with pytest.raises(ValueError, match=r"`low` .* below `high`; got low=0.8, high=0.6"):
        segmentation_confidences(ok, low=0.8, high=0.6)
    with pytest.raises(ValueError, match=r"`threshold` .* number in \[0, 1\]; got 1.5"):
        segmentation_confidences(ok, threshold=1.5)
    with pytest.raises(ValueError, match=r"`boundary_width` .* positive number; got 0"):
        segmentation_confidences(ok, boundary_width=0)


def test_classification_confidences_against_numpy():
    rng = np.random.default_rng(4)
    p = softmax(rng.normal(0, 2, (50, 5)), 1)
    p[0] = [1.0, 0, 0, 0, 0]
    scores = classification_confidences(torch.tensor(p, dtype=torch.float32))
    assert list(scores) == list(CLASSIFICATION_CONFIDENCES)
    srt = np.sort(torch.tensor(p, dtype=torch.float32).double().numpy(), 1)
    np.testing.assert_allclose(scores["max_prob"], srt[:, -1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(scores["margin"], srt[:, -1] - srt[:, -2], rtol=0, atol=1e-15)
    np.testing.assert_allclose(scores["negative_entropy"], xlogx(srt).sum(1), rtol=0, atol=1e-12)
    assert scores["negative_entropy"][0].item() == 0.0 and scores["margin"][0].item() == 1.0
    assert all(v.dtype == torch.float64 and v.shape == (50,) for v in scores.values())
    with pytest.raises(ValueError, match=r"C ≥ 2 classes .* got \(3, 1\)"):
        classification_confidences(torch.full((3, 1), 1.0))
    with pytest.raises(ValueError, match=r"`probs` .* \(N, C\); got \(3,\)"):
        classification_confidences(torch.full((3,), 1.0))
