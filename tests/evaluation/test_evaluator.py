import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.evaluation.evaluator import Evaluator, case_values, ece_from_histogram, per_class, summarize
from softlabels.evaluation.references import References, batch_references
from softlabels.metrics import BrierScore, CalibrationError, DiceScore, HausdorffDistance95, NegativeLogLikelihood
from softlabels.metrics.functional import (
    brier_score,
    calibration_error,
    dice_score,
    hausdorff_distance_95,
    negative_log_likelihood,
    soft_dice_score,
    thresholded_dice,
)
from softlabels.metrics.functional.regions import boundary_band, foreground_mask


def _batch(n=3, c=2, size=12, raters=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    true = torch.softmax(torch.randn(n, c, size, size, generator=g) * 3, 1)
    return {
        "label": torch.randint(0, c, (n, 1, size, size), generator=g),
        "raters": torch.randint(0, c, (n, raters, size, size), generator=g),
        "true_probs": true,
    }


def _probs(n, c, size, seed):
    return torch.softmax(2 * torch.randn(n, c, size, size, generator=torch.Generator().manual_seed(seed)), 1)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), st.integers(2, 4), st.integers(0, 1000))
def test_pooled_values_equal_the_metrics_on_the_whole_split(n, c, seed):
    batch = _batch(n, c, seed=seed)
    probs = _probs(n, c, 12, seed + 1)
    refs = batch_references(batch, c, 2)
    ev = Evaluator("segmentation", c, spatial_dims=2)
    arrays = ev.step(probs, refs)
    soft, labels = refs.soft, refs.soft_argmax
    values = ev.compute()
    assert values["ece"] == pytest.approx(float(calibration_error(probs, soft)), abs=1e-9)
    assert values["ece_classwise"] == pytest.approx(float(calibration_error(probs, soft, mode="classwise")), abs=1e-9)
    band = boundary_band(labels, width=2.0)
    if band.any():
        assert values["ece_boundary"] == pytest.approx(float(calibration_error(probs, soft, mask=band)), abs=1e-9)
    fg = foreground_mask(labels)
    if fg.any():
        assert values["ece_foreground"] == pytest.approx(float(calibration_error(probs, soft, mask=fg)), abs=1e-9)
    assert values["mce"] == pytest.approx(float(calibration_error(probs, soft, norm="max")), abs=1e-9)
    assert values["brier"] == pytest.approx(float(brier_score(probs, soft)), abs=1e-9)
    assert values["nll"] == pytest.approx(float(negative_log_likelihood(probs, soft)), abs=1e-9)
    np.testing.assert_allclose(arrays["dice"], dice_score(probs, labels, num_classes=c).numpy())
    np.testing.assert_allclose(arrays["hd95"], hausdorff_distance_95(probs, labels).numpy())
    np.testing.assert_allclose(arrays["thresholded_dice"], thresholded_dice(probs, soft).numpy())
    np.testing.assert_allclose(arrays["soft_dice"], soft_dice_score(probs, soft).numpy())
    summary = summarize(arrays)
    assert summary.keys() == values.keys()
    for name, value in values.items():
        assert summary[name] == pytest.approx(value, abs=1e-12, nan_ok=True), name


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 5), st.integers(0, 1000))
def test_case_by_case_streaming_equals_one_batch_and_the_torchmetrics_classes(n, seed):
    c = 3
    batch, probs = _batch(n, c, size=10, seed=seed), _probs(n, c, 10, seed + 7)
    refs = batch_references(batch, c, 2)
    whole, streamed = Evaluator("segmentation", c), Evaluator("segmentation", c)
    whole.step(probs, refs)
    for i in range(n):
        streamed.step(probs[i : i + 1], References(refs.hard[i : i + 1], refs.soft[i : i + 1], refs.raters[i : i + 1]))
    a, b = whole.compute(), streamed.compute()
    for name in a:
        assert b[name] == pytest.approx(a[name], abs=1e-12, nan_ok=True), name
    tm = {
        "ece": CalibrationError(c), "brier": BrierScore(c), "nll": NegativeLogLikelihood(c),
        "dice": DiceScore(c, include_background=False), "hd95": HausdorffDistance95(c, include_background=False),
    }  # fmt: skip
    for name, metric in tm.items():
        target = refs.soft_argmax if name in ("dice", "hd95") else refs.soft
        metric.update(probs, target)
        expected = metric.compute().double()
        if name in ("dice", "hd95"):  # per class over cases; the evaluator keeps the same per class
            np.testing.assert_allclose(whole.compute_per_class()[name], expected.numpy(), rtol=1e-9, atol=1e-12)
        else:
            assert a[name] == pytest.approx(float(expected), abs=1e-9), name


def test_ddp_merge_of_two_evaluators_equals_one():
    c, batch, probs = 3, _batch(4, 3, size=10, seed=3), _probs(4, 3, 10, 9)
    refs = batch_references(batch, c, 2)
    one, left, right = Evaluator("segmentation", c), Evaluator("segmentation", c), Evaluator("segmentation", c)
    one.step(probs, refs)
    left.step(probs[:2], References(refs.hard[:2], refs.soft[:2], refs.raters[:2]))
    right.step(probs[2:], References(refs.hard[2:], refs.soft[2:], refs.raters[2:]))
    left.merge_state(right)
    for name, value in one.compute().items():
        assert left.compute()[name] == pytest.approx(value, abs=1e-12, nan_ok=True), name
    for name in ("hist_ece", "voxels", "dice_sum"):
        assert getattr(left, name).dtype == (torch.int64 if name == "voxels" else torch.float64)


def test_dice_uses_the_argmax_of_the_soft_reference_and_ged_the_raters():
    batch = _batch()
    raters_mean = batch_references(batch, 2, 2).soft
    arrays = Evaluator("segmentation", 2, curves=True).step(raters_mean, batch_references(batch, 2, 2))
    assert np.all(arrays["dice"] == 1.0) and arrays["ged"].shape == (3,)
    np.testing.assert_allclose(arrays["ref_fraction"][:, 0], raters_mean[:, 1].flatten(1).mean(1).numpy(), rtol=1e-6)
    assert arrays["dice_curve"].shape == (3, 19, 1)  # case, threshold, class


def test_the_oracle_against_itself_has_zero_calibration_error_and_brier():
    batch = _batch()
    refs = batch_references(batch, 2, 2, reference="true_probs")
    summary = summarize(Evaluator("segmentation", 2).step(batch["true_probs"], refs))
    assert summary["ece"] == pytest.approx(0.0, abs=1e-12) and summary["brier"] == pytest.approx(0.0, abs=1e-12)
    assert summary["nll"] > 0  # the entropy of p*


def test_classification_values_per_item_and_compactness():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    ev = Evaluator("classification", 3, num_features=4)
    arrays = ev.step(probs, References(torch.tensor([0, 1])), features=torch.randn(2, 4))
    assert arrays["top1"].tolist() == [1.0, 0.0] and arrays["top5"].tolist() == [1.0, 1.0]
    assert arrays["nll"].tolist() == pytest.approx([-math.log(0.7), -math.log(0.3)])
    values = ev.compute()
    assert values["ece"] == pytest.approx(float(calibration_error(probs, torch.tensor([0, 1]))))
    assert "compactness" in values and "compactness" not in Evaluator("classification", 3).compute()


def test_per_case_values_skip_nan_classes():
    assert math.isnan(case_values({"hd95": np.array([[np.nan, np.nan]])}, "hd95")[0])
    assert case_values({"dice": np.array([[0.5, np.nan]])}, "dice").tolist() == [0.5]
    assert per_class({"dice": np.array([[0.5, np.nan], [1.0, 0.2]])}, "dice") == [0.75, 0.2]


def test_ece_from_histogram_skips_empty_rows_and_rejects_unknown_norms():
    h = np.zeros((2, 3, 3))
    h[0, 0] = [2.0, 1.8, 1.0]
    assert float(ece_from_histogram(h)) == pytest.approx(0.4)
    assert math.isnan(float(ece_from_histogram(np.zeros((1, 3, 3)))))
    with pytest.raises(ValueError, match="`norm` of ece_from_histogram"):
        ece_from_histogram(h, norm="l2")


def test_a_metric_subset_skips_the_others_and_bad_names_are_refused():
    ev = Evaluator("segmentation", 2, metrics=("dice", "ece"))
    batch = _batch()
    arrays = ev.step(_probs(3, 2, 12, 1), batch_references(batch, 2, 2))
    assert "hd95" not in arrays and sorted(ev.compute()) == ["dice", "ece"]
    with pytest.raises(ValueError, match=r"`metric` of Evaluator \(segmentation\).*'top1'"):
        Evaluator("segmentation", 2, metrics=("top1",))
    with pytest.raises(ValueError, match="num_features"):
        Evaluator("classification", 2, metrics=("compactness",))
    with pytest.raises(ValueError, match="`n_bins` of Evaluator"):
        Evaluator("segmentation", 2, n_bins=0)
    with pytest.raises(ValueError, match="needs `probs` and `refs`"):
        Evaluator("segmentation", 2).update()


def test_an_empty_evaluator_reports_nothing_and_reset_clears():
    ev = Evaluator("segmentation", 2)
    assert ev.compute() == {}
    batch = _batch()
    ev.step(_probs(3, 2, 12, 1), batch_references(batch, 2, 2))
    ev.reset()
    assert ev.compute() == {}


def _soft_dice_reference(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``(N, C - 1)`` Dice semimetric 2 Σ min(p, q) / (Σ p + Σ q) over the voxels, in float64 NumPy."""
    p, q = p.astype(np.float64).reshape(*p.shape[:2], -1)[:, 1:], q.astype(np.float64).reshape(*q.shape[:2], -1)[:, 1:]
    return 2 * np.minimum(p, q).sum(-1) / (p.sum(-1) + q.sum(-1))


def test_soft_dice_against_the_soft_reference_per_case_per_class_and_pooled():
    c, probs = 3, _probs(4, 3, 10, 5)
    refs = batch_references(_batch(4, c, size=10, seed=2), c, 2)  # soft: the raters' mean
    ev = Evaluator("segmentation", c)
    arrays = ev.step(probs, refs)
    expected = _soft_dice_reference(probs.numpy(), refs.soft.numpy())
    np.testing.assert_allclose(arrays["soft_dice"], expected, rtol=1e-12)
    assert ev.compute()["soft_dice"] == pytest.approx(expected.mean(1).mean(), abs=1e-12)
    np.testing.assert_allclose(ev.compute_per_class()["soft_dice"], expected.mean(0), rtol=1e-12)
    assert summarize(arrays)["soft_dice"] == pytest.approx(ev.compute()["soft_dice"], abs=1e-12)
    same = Evaluator("segmentation", c).step(refs.soft, refs)["soft_dice"]
    np.testing.assert_allclose(same, 1.0, rtol=1e-12)  # 1 exactly when the prediction is the soft reference


def test_soft_dice_against_a_hard_reference_is_the_classic_soft_dice_and_drops_ignored_voxels():
    c, probs = 3, _probs(2, 3, 10, 8)
    labels = torch.randint(0, c, (2, 10, 10), generator=torch.Generator().manual_seed(4))
    onehot = torch.nn.functional.one_hot(labels, c).movedim(-1, 1).double().numpy()
    p = probs.double().numpy()
    classic = 2 * (p * onehot).sum((2, 3)) / (p.sum((2, 3)) + onehot.sum((2, 3)))  # 2 Σ p q / (Σ p + Σ q)
    np.testing.assert_allclose(Evaluator("segmentation", c).step(probs, References(labels))["soft_dice"],
                               classic[:, 1:], rtol=1e-12)  # fmt: skip
    ignored = labels.clone()
    ignored[:, :3] = 255
    got = Evaluator("segmentation", c, ignore_index=255).step(probs, References(ignored))["soft_dice"]
    kept = (slice(None), slice(None), slice(3, None))
    np.testing.assert_allclose(got, _soft_dice_reference(p[kept], onehot[kept]), rtol=1e-12)
