"""Adaptive ECE from the fine histogram stays within its reported bound of the exact equal-mass value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.calibration import AdaptiveCalibrationError
from softlabels.metrics.functional.adaptive_calibration import adaptive_calibration_error
from tests.metrics._reference import adaptive_ece_exact, forecasts, to_items


def exact(probs, target, n_bins, mode="top_label", include_background=True):
    cases = to_items(probs.numpy(), target.numpy())
    p = np.concatenate([c[0] for c in cases])
    t = np.concatenate([c[1] for c in cases])
    rows = forecasts(p, t, mode, include_background)
    return float(np.mean([adaptive_ece_exact(c, o, n_bins) for c, o in rows]))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 300),
    n_bins=st.integers(1, 15),
    n_fine=st.sampled_from([15, 50, 1000, 10_000]),
    mode=st.sampled_from(["top_label", "classwise"]),
    quantize=st.booleans(),
)
def test_value_within_bound_of_exact(seed, n, n_bins, n_fine, mode, quantize):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, 3, generator=g), dim=1)
    if quantize:  # many ties, as saturated confidences produce
        probs = torch.round(probs * 4) / 4
        probs = probs / probs.sum(1, keepdim=True)
    target = torch.randint(0, 3, (n,), generator=g)
    n_fine = max(n_fine, n_bins)
    result = adaptive_calibration_error(probs, target, n_bins=n_bins, n_fine_bins=n_fine, mode=mode)
    ref = exact(probs, target, n_bins, mode)
    assert abs(float(result.value) - ref) <= float(result.error_bound) + 1e-12
    assert 0.0 <= float(result.value) <= 1.0


def test_bound_is_zero_and_value_exact_when_fine_bins_separate_samples():
    g = torch.Generator().manual_seed(3)
    conf = torch.linspace(0.51, 0.99, 200)[torch.randperm(200, generator=g)]
    probs = torch.stack([conf, 1 - conf], 1)
    target = (torch.rand(200, generator=g) > conf).long()
    result = adaptive_calibration_error(probs, target, n_bins=10, n_fine_bins=100_000)
    assert float(result.error_bound) == 0.0
    assert float(result.value) == pytest.approx(exact(probs, target, 10), abs=1e-12)


def test_metric_streams_like_functional():
    g = torch.Generator().manual_seed(4)
    probs = torch.softmax(2 * torch.randn(6, 4, 8, 8, generator=g), dim=1)
    target = torch.randint(0, 4, (6, 8, 8), generator=g)
    metric = AdaptiveCalibrationError(4, n_bins=10, mode="classwise", include_background=False)
    for i in range(0, 6, 2):
        metric.update(probs[i : i + 2], target[i : i + 2])
    got = metric.compute()
    want = adaptive_calibration_error(probs, target, n_bins=10, mode="classwise", include_background=False)
    assert torch.allclose(got.value, want.value, atol=1e-12) and torch.equal(got.error_bound, want.error_bound)
    ref = exact(probs, target, 10, "classwise", include_background=False)
    assert abs(float(got.value) - ref) <= float(got.error_bound) + 1e-12
