"""Prediction sets: construction properties (hypothesis), the quantile against exact arithmetic, coverage with
known probabilities over repeated splits (marginal and Mondrian), files-ready dicts and input errors."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.conformal import (
    ConformalSets,
    class_coverage,
    class_scores,
    conformal_quantile,
    coverage,
    fit_prediction_sets,
    set_sizes,
)


@st.composite
def probabilities(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    n, c = draw(st.integers(1, 30)), draw(st.integers(2, 8))
    p = rng.dirichlet(np.full(c, draw(st.sampled_from([0.2, 1.0, 5.0]))), size=n)
    if draw(st.booleans()):  # ties: probabilities on a coarse grid
        p = np.round(p * 8) + 1e-3
        p = p / p.sum(1, keepdims=True)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return torch.tensor(p, dtype=dtype), rng


@settings(max_examples=50, deadline=None)
@given(probabilities(), st.floats(0.0, 1.5), st.sampled_from(["lac", "aps", "raps"]))
def test_set_construction(data, q, method):
    probs, rng = data
    kwargs = {"lambda_reg": 0.2, "k_reg": 2} if method == "raps" else {}
    sets = ConformalSets(
        method, 0.1, (q,), False, False, kwargs.get("k_reg", 1), kwargs.get("lambda_reg", 0.0), 10, None
    )
    predicted = sets.predict(probs)
    scores = class_scores(probs, method=method, **kwargs)
    labels = torch.tensor(rng.integers(0, probs.shape[1], probs.shape[0]))
    # the true label is in the set iff its score <= q̂
    assert torch.equal(
        predicted.gather(1, labels[:, None]).squeeze(1), scores.gather(1, labels[:, None]).squeeze(1) <= q
    )
    if method == "lac":
        assert torch.equal(predicted, 1 - probs.double() <= q)
        boundary = (probs.double() - (1 - q)).abs() < 1e-12  # π ≥ 1 − q̂ and 1 − π ≤ q̂ can differ by rounding only
        assert torch.equal(predicted[~boundary], (probs.double() >= 1 - q)[~boundary])
    else:  # non-randomized APS/RAPS: prefixes of the descending order (ties: lower class index first)
        order = torch.sort(probs.double(), dim=1, descending=True, stable=True).indices
        in_order = predicted.gather(1, order).int()
        assert bool((in_order.diff(dim=1) <= 0).all())
        ranked = scores.gather(1, order)
        assert bool((ranked.diff(dim=1) >= 0).all())
        top = probs.double().gather(1, order[:, :1]).squeeze(1)  # the top class's score is its own mass
        assert torch.equal(ranked[:, 0], top)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 300), st.sampled_from(["0.01", "0.05", "0.1", "0.2", "0.25", "0.3", "0.5"]), st.integers(0, 99))
def test_conformal_quantile_rank_in_exact_arithmetic(n, alpha, seed):
    scores = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rank = math.ceil((n + 1) * (1 - Fraction(alpha)))
    q = conformal_quantile(scores, float(alpha))
    assert q == (math.inf if rank > n else sorted(scores.tolist())[rank - 1])


def test_aps_raps_scores_and_randomization():
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]], dtype=torch.float64)
    aps = class_scores(probs, method="aps")
    torch.testing.assert_close(aps, torch.tensor([[1.0, 0.6, 0.9], [0.75, 1.0, 0.5]], dtype=torch.float64))
    raps = class_scores(probs, method="raps", k_reg=1, lambda_reg=0.5)
    torch.testing.assert_close(raps - aps, torch.tensor([[1.0, 0.0, 0.5], [0.5, 1.0, 0.0]], dtype=torch.float64))
    rand = class_scores(probs, method="aps", randomized=True, generator=torch.Generator().manual_seed(0))
    u = (rand - (aps - probs)) / probs  # one u per sample, the same for all its classes
    torch.testing.assert_close(u, u[:, :1].expand_as(u))
    assert bool(((u > 0) & (u < 1)).all())
    again = class_scores(probs, method="aps", randomized=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rand, again)


def test_mondrian_quantiles_use_each_class_only():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(60, 3, generator=g), 1)
    labels = torch.tensor([0] * 30 + [1] * 29 + [2])
    sets = fit_prediction_sets(probs, labels, method="lac", alpha=0.2, mondrian=True)
    true = 1 - probs.double().gather(1, labels[:, None]).squeeze(1)
    assert sets.quantiles[:2] == (conformal_quantile(true[:30], 0.2), conformal_quantile(true[30:59], 0.2))
    assert sets.quantiles[2] == math.inf  # one sample: rank ⌈2 · 0.8⌉ = 2 > 1, the class is always in the set
    assert bool(sets.predict(probs)[:, 2].all())
    predicted = sets.predict(probs)
    scores = class_scores(probs, method="lac")
    assert torch.equal(predicted, scores <= torch.tensor(sets.quantiles, dtype=torch.float64))


def _coverage_over_splits(probs, labels, n, splits, seed, **kwargs):
    g = torch.Generator().manual_seed(seed)
    marginal, per_class = [], []
    for _ in range(splits):
        perm = torch.randperm(labels.shape[0], generator=g)
        cal, test = perm[:n], perm[n:]
        fitted = fit_prediction_sets(probs[cal], labels[cal], generator=g, **kwargs)
        sets = fitted.predict(probs[test], generator=g)
        marginal.append(coverage(sets, labels[test]))
        per_class.append(class_coverage(sets, labels[test]))
    return np.array(marginal), torch.stack(per_class).numpy()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "lac"},
        {"method": "aps"},
        {"method": "aps", "randomized": True},
        {"method": "raps", "k_reg": 1, "lambda_reg": 0.05},
    ],
    ids=["lac", "aps", "aps-randomized", "raps"],
)
def test_marginal_coverage_with_known_probabilities(kwargs):
    alpha, n, splits = 0.1, 199, 400  # (n + 1)(1 − α) = 180 is an integer: E[coverage] = 1 − α exactly
    rng = np.random.default_rng(0)
    p_star = rng.dirichlet(np.full(5, 0.5), size=800)
    labels = torch.tensor([rng.choice(5, p=row) for row in p_star])
    marginal, _ = _coverage_over_splits(torch.tensor(p_star), labels, n, splits, 2, alpha=alpha, **kwargs)
    se = marginal.std(ddof=1) / math.sqrt(splits)
    assert abs(marginal.mean() - (1 - alpha)) <= 3 * se
    assert marginal.mean() <= 1 - alpha + 1 / (n + 1) + 3 * se


def test_mondrian_class_coverage_with_known_probabilities():
    alpha, n, splits = 0.1, 300, 300
    rng = np.random.default_rng(1)
    p_star = rng.dirichlet(np.full(4, 0.5), size=900)
    labels = torch.tensor([rng.choice(4, p=row) for row in p_star])
    _, per_class = _coverage_over_splits(
        torch.tensor(p_star), labels, n, splits, 3, alpha=alpha, method="aps", mondrian=True
    )
    se = per_class.std(0, ddof=1) / math.sqrt(splits)
    assert np.all(per_class.mean(0) >= 1 - alpha - 3 * se)
    counts = np.bincount(labels.numpy(), minlength=4)
    upper = 1 - alpha + 1 / (counts * n / 900 - 3 * np.sqrt(counts * n / 900) + 1)  # 1/(n_c + 1), n_c's low end
    assert np.all(per_class.mean(0) <= upper + 3 * se)


def test_sizes_coverage_and_class_coverage():
    sets = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    labels = torch.tensor([2, 0, 1])
    assert set_sizes(sets).tolist() == [2, 0, 3]
    assert coverage(sets, labels) == pytest.approx(2 / 3)
    cc = class_coverage(sets, labels)
    assert cc[0].item() == 0.0 and cc[1].item() == 1.0 and cc[2].item() == 1.0 and cc.dtype == torch.float64
    assert math.isnan(class_coverage(sets, torch.tensor([0, 0, 1]))[2].item())
    assert math.isnan(coverage(torch.zeros(0, 3, dtype=torch.bool), torch.zeros(0, dtype=torch.long)))


def test_dict_round_trip_with_infinite_quantile_is_strict_json():
    sets = ConformalSets("raps", 0.1, (0.5, math.inf, 0.7), True, True, 2, 0.01, 50, ("a", "b", "c"))
    text = json.dumps(sets.to_dict(), allow_nan=False)
    back = ConformalSets.from_dict(json.loads(text))
    assert back == sets and back.quantiles[1] == math.inf
    with pytest.raises(ValueError, match="kind"):
        ConformalSets.from_dict({**sets.to_dict(), "kind": "segmentation_thresholds"})
    with pytest.raises(ValueError, match="missing keys \\['method'\\]"):
        ConformalSets.from_dict({k: v for k, v in sets.to_dict().items() if k != "method"})


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: class_scores(torch.tensor([[0.5, 0.6]])), "sum to 1"),
        (lambda: class_scores(torch.tensor([0.5, 0.5])), r"\(N, C\)"),
        (lambda: class_scores(torch.tensor([[0.5, 0.5]]), method="lac", randomized=True), "randomized"),
        (lambda: class_scores(torch.tensor([[0.5, 0.5]]), method="aps", lambda_reg=0.1), "lambda_reg"),
        (lambda: class_scores(torch.tensor([[0.5, 0.5]]), method="raps", k_reg=-1), "k_reg"),
        (lambda: class_scores(torch.tensor([[0.5, 0.5]]), method="apss"), "did you mean 'aps'"),
        (lambda: conformal_quantile(torch.zeros(3), 0.0), "alpha"),
        (lambda: conformal_quantile(torch.tensor([float("nan")]), 0.1), "finite"),
        (lambda: fit_prediction_sets(torch.tensor([[0.5, 0.5]]), torch.tensor([2])), "labels"),
        (lambda: fit_prediction_sets(torch.tensor([[0.5, 0.5]]), torch.tensor([0.0])), "labels"),
        (lambda: fit_prediction_sets(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), class_names=("a",)), "class_names"),
        (lambda: ConformalSets("lac", 0.1, (0.1, 0.2), False, False, 1, 0.0, 5, None), "quantiles"),
        (
            lambda: ConformalSets("lac", 0.1, (0.1, 0.2), True, False, 1, 0.0, 5, None).predict(torch.ones(1, 3) / 3),
            "2 classes",
        ),
        (lambda: set_sizes(torch.ones(2, 3)), "bool"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_a_class_ranked_last_stays_in_a_set_whose_quantile_is_its_rounded_cumulative_sum():
    from softlabels.conformal import ConformalSets

    probs = torch.tensor([[0.1, 0.2, 0.7]], dtype=torch.float64)
    score = class_scores(probs, method="aps")[0, 0]  # ranked last: the whole mass, 1 up to rounding
    for q in (float(score) - 2e-16, float(score), 1.0 - 1e-16):
        sets = ConformalSets("aps", 0.05, (q,), False, False, 1, 0.0, 100, None).predict(probs)
        assert sets.all(), q
