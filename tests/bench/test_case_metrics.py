import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.bench.case_metrics import (
    case_metrics,
    ece_from_histogram,
    observed_reference,
    per_case_values,
    segmentation_case_metrics,
    summarize_case_metrics,
)
from softlabels.metrics.functional import calibration_error, dice_score


def _batch(n=3, c=2, size=12, raters=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    true = torch.softmax(torch.randn(n, c, size, size, generator=g) * 3, 1)
    return {
        "label": torch.randint(0, c, (n, 1, size, size), generator=g),
        "raters": torch.randint(0, c, (n, raters, size, size), generator=g),
        "true_probs": true,
    }


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(2, 4), st.integers(0, 1000))
def test_pooled_ece_of_the_case_histograms_is_the_dataset_ece(n, c, seed):
    batch = _batch(n, c, seed=seed)
    probs = torch.softmax(torch.randn(n, c, 12, 12, generator=torch.Generator().manual_seed(seed + 1)), 1)
    arrays = segmentation_case_metrics(probs, batch, num_classes=c, spatial_dims=2)
    pooled = ece_from_histogram(arrays["hist_ece"].sum(0))
    assert pooled == pytest.approx(float(calibration_error(probs, batch["true_probs"], n_bins=15)), abs=1e-9)
    classwise = ece_from_histogram(arrays["hist_cece"].sum(0))
    expected = float(calibration_error(probs, batch["true_probs"], n_bins=15, mode="classwise"))
    assert classwise == pytest.approx(expected, abs=1e-9)


def test_dice_uses_the_argmax_of_the_soft_reference_and_ged_the_raters():
    batch = _batch()
    probs = batch["true_probs"]
    arrays = segmentation_case_metrics(probs, batch, num_classes=2, spatial_dims=2)
    expected = dice_score(probs, probs.argmax(1), num_classes=2).numpy()
    np.testing.assert_allclose(arrays["dice"], expected)
    assert np.all(arrays["dice"] == 1.0) and arrays["ged"].shape == (3,)
    np.testing.assert_allclose(arrays["ref_fraction"][:, 0], probs[:, 1].flatten(1).mean(1).numpy(), rtol=1e-6)


def test_the_oracle_has_zero_calibration_error_and_brier():
    batch = _batch()
    summary = summarize_case_metrics(
        segmentation_case_metrics(batch["true_probs"], batch, num_classes=2, spatial_dims=2)
    )
    assert summary["ece"] == pytest.approx(0.0, abs=1e-12) and summary["brier"] == pytest.approx(0.0, abs=1e-12)
    assert summary["nll"] > 0  # the entropy of p*


def test_classification_values_per_item():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    arrays = case_metrics(
        [(probs, {"label": torch.tensor([0, 1])})], task="classification", num_classes=3, spatial_dims=0
    )
    assert arrays["top1"].tolist() == [1.0, 0.0] and arrays["top5"].tolist() == [1.0, 1.0]
    assert arrays["nll"].tolist() == pytest.approx([-math.log(0.7), -math.log(0.3)])
    assert summarize_case_metrics(arrays)["ece"] == pytest.approx(float(calibration_error(probs, torch.tensor([0, 1]))))


def test_observed_reference_never_uses_the_true_probabilities():
    batch = _batch()
    ref = observed_reference(batch, 2, 2)
    onehot = torch.nn.functional.one_hot(batch["raters"], 2).float().mean(1).movedim(-1, 1)
    assert torch.equal(ref, onehot)
    no_raters = {k: v for k, v in batch.items() if k != "raters"}
    assert torch.equal(observed_reference(no_raters, 2, 2), batch["label"][:, 0])


def test_per_case_values_skip_nan_classes():
    assert per_case_values({"hd95": np.array([[np.nan, np.nan]])}, "hd95").tolist()[0] != 0.0
    assert math.isnan(per_case_values({"hd95": np.array([[np.nan, np.nan]])}, "hd95")[0])


def test_empty_split_raises():
    with pytest.raises(ValueError, match="no batch"):
        case_metrics([], task="segmentation", num_classes=2, spatial_dims=2)
