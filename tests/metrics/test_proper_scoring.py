"""Brier score and NLL against the float64 NumPy reference; hard, soft and binary targets; streaming."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.functional.proper_scoring import brier_score, negative_log_likelihood
from softlabels.metrics.proper_scoring import BrierScore, NegativeLogLikelihood
from tests.metrics._reference import brier_ref, nll_ref


def inputs(seed, shape=(3, 4, 5, 6), soft=False):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(shape, generator=g), 1)
    if soft:
        return probs, torch.softmax(torch.randn(shape, generator=g), 1)
    return probs, torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("shape", [(7, 4), (3, 4, 5, 6), (2, 3, 3, 4, 5), (3, 1, 5, 5)])
def test_match_reference(soft, shape):
    probs, target = inputs(1, shape, soft)
    if shape[1] == 1:
        probs = torch.rand(shape, generator=torch.Generator().manual_seed(2))
        target = torch.rand(shape) if soft else (torch.rand(shape[:1] + shape[2:]) > 0.5).long()
    mask = torch.rand(target.shape if not soft else shape[:1] + shape[2:]) > 0.3
    for m in (None, mask):
        npm = None if m is None else m.numpy()
        assert float(brier_score(probs, target, mask=m)) == pytest.approx(
            brier_ref(probs.numpy(), target.numpy(), npm), rel=1e-9
        )
        assert float(negative_log_likelihood(probs, target, mask=m)) == pytest.approx(
            nll_ref(probs.numpy(), target.numpy(), npm), rel=1e-9
        )


def test_nll_clamps_zero_probability_at_eps():
    probs = torch.tensor([[1.0, 0.0]])
    assert float(negative_log_likelihood(probs, torch.tensor([1]))) == pytest.approx(-math.log(1e-12))
    assert float(negative_log_likelihood(probs, torch.tensor([1]), eps=1e-6)) == pytest.approx(-math.log(1e-6))


def test_perfect_prediction_scores_zero():
    target = torch.tensor([0, 2, 1])
    probs = torch.nn.functional.one_hot(target, 3).float()
    assert float(brier_score(probs, target)) == 0.0
    assert float(negative_log_likelihood(probs, target)) == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12), soft=st.booleans(), cut=st.integers(0, 12))
def test_metric_equals_functional_over_batches(seed, n, soft, cut):
    probs, target = inputs(seed, (n, 3, 4), soft)
    cut = min(cut, n)
    for cls, fn in ((BrierScore, brier_score), (NegativeLogLikelihood, negative_log_likelihood)):
        metric = cls(3, per_case=True)
        for lo, hi in ((0, cut), (cut, n)):
            if hi > lo:
                metric.update(probs[lo:hi], target[lo:hi])
        out = metric.compute()
        assert float(out["pooled"]) == pytest.approx(float(fn(probs, target)), rel=1e-12)
        per_case = torch.stack([fn(probs[i : i + 1], target[i : i + 1]) for i in range(n)])
        assert torch.allclose(out["per_case"], per_case, rtol=1e-12)
