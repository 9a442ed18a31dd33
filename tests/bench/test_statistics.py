import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.bench.statistics import PairedComparison, mean_std, paired_bootstrap, rank_methods


def nested_draws(sizes, n_resamples, seed):
    """Seed multiplicities, then each seed's case multiplicities, in the implementation's RNG order."""
    rng = np.random.default_rng(seed)
    s = len(sizes)
    seeds = rng.multinomial(s, np.full(s, 1 / s), size=n_resamples)
    cases = [rng.multinomial(k, np.full(k, 1 / k), size=n_resamples) for k in sizes]
    return seeds, cases


def brute_force_means(diffs, n_resamples, seed):
    """The definition: draw seeds, then cases within each drawn seed, with replacement; mean of per-seed means."""
    seeds, cases = nested_draws([len(d) for d in diffs], n_resamples, seed)
    out = []
    for r in range(n_resamples):
        rows = np.repeat(np.arange(len(diffs)), seeds[r])
        out.append(np.mean([diffs[s][np.repeat(np.arange(len(diffs[s])), cases[s][r])].mean() for s in rows]))
    return np.array(out)


def test_interval_is_the_percentile_interval_of_resampled_grid_means():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.8, 0.05, (3, 20)), rng.normal(0.78, 0.05, (3, 20))
    result = paired_bootstrap(a, b, n_resamples=500, seed=7)
    means = brute_force_means(list(a - b), 500, 7)
    assert result.low == pytest.approx(np.quantile(means, 0.025), abs=1e-12)
    assert result.high == pytest.approx(np.quantile(means, 0.975), abs=1e-12)
    assert result.difference == pytest.approx((a - b).mean())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.floats(-0.5, 0.5), st.integers(0, 10_000))
def test_a_constant_shift_gives_a_point_interval(n_seeds, n_cases, shift, seed):
    base = np.random.default_rng(seed).random((n_seeds, n_cases))
    result = paired_bootstrap(base + shift, base, n_resamples=200, seed=seed)
    assert result.low == pytest.approx(shift, abs=1e-9) and result.high == pytest.approx(shift, abs=1e-9)
    if abs(shift) > 1e-9:
        assert result.significant


def test_identical_methods_are_not_significantly_different():
    base = np.random.default_rng(0).random((3, 40))
    result = paired_bootstrap(base, base)
    assert (result.difference, result.low, result.high, result.significant) == (0.0, 0.0, 0.0, False)


def test_coverage_of_the_95_percent_interval_is_close_to_95_percent():
    rng = np.random.default_rng(3)
    covered = 0
    for trial in range(200):
        seed_effect = rng.normal(0, 0.01, (3, 1))  # seeds vary, cases vary: both in the interval
        diff = 0.02 + seed_effect + rng.normal(0, 0.05, (3, 60))
        result = paired_bootstrap(diff, np.zeros_like(diff), n_resamples=1000, seed=trial)
        covered += result.low <= 0.02 <= result.high
    assert 0.85 <= covered / 200 <= 0.99  # percentile intervals with 3 seeds are a little narrow


def test_mean_std_over_seeds():
    assert mean_std([0.5]) == (0.5, 0.0)
    mean, std = mean_std([[0.8, 0.6], [0.9, 0.7]])  # per-seed means 0.7 and 0.8
    assert mean == pytest.approx(0.75) and std == pytest.approx(np.std([0.7, 0.8], ddof=1))


def test_ranks_with_ties_and_direction():
    assert rank_methods({"a": 0.9, "b": 0.7, "c": 0.9}, higher_is_better=True) == {"a": 1.5, "b": 3.0, "c": 1.5}
    assert rank_methods({"a": 0.1, "b": 0.3}, higher_is_better=False) == {"a": 1.0, "b": 2.0}


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="must be paired"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        paired_bootstrap([[np.nan, 1.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap([[1.0]], [[0.0]], n_resamples=10)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([[1.0]], [[0.0]], confidence=1.0)
    with pytest.raises(ValueError, match=r"\(seeds, cases\)"):
        paired_bootstrap(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"\['b'\]"):
        rank_methods({"a": 1.0, "b": float("nan")}, higher_is_better=True)
    assert PairedComparison(0.0, -0.1, 0.1, 0.95, 100).significant is False


def _hist(rng, n_seeds, n_cases, n_bins=5):
    counts = rng.integers(1, 20, (n_seeds, n_cases, 1, n_bins)).astype(float)
    conf = counts * rng.random((n_seeds, n_cases, 1, n_bins))
    outcome = counts * rng.random((n_seeds, n_cases, 1, n_bins))
    return np.stack([counts, conf, outcome], axis=-1)


def test_pooled_bootstrap_of_identical_methods_is_zero_and_not_significant():
    from softlabels.bench.statistics import paired_bootstrap_pooled
    from softlabels.evaluation.evaluator import ece_from_histogram

    h = _hist(np.random.default_rng(0), 3, 12)
    result = paired_bootstrap_pooled(h, h.copy(), ece_from_histogram, n_resamples=300)
    assert result.difference == 0.0 and result.low == 0.0 and result.high == 0.0 and not result.significant


def test_pooled_bootstrap_matches_brute_force_resampling_of_the_pooled_ece():
    from softlabels.bench.statistics import paired_bootstrap_pooled
    from softlabels.evaluation.evaluator import ece_from_histogram

    rng = np.random.default_rng(3)
    a, b = _hist(rng, 2, 9), _hist(rng, 2, 9)
    result = paired_bootstrap_pooled(a, b, ece_from_histogram, n_resamples=200, seed=5)
    seeds, cases = nested_draws([9, 9], 200, 5)
    means = []
    for r in range(200):
        rows = np.repeat(np.arange(2), seeds[r])
        cols = {s: np.repeat(np.arange(9), cases[s][r]) for s in range(2)}
        per_seed = [ece_from_histogram(a[s, cols[s]].sum(0)) - ece_from_histogram(b[s, cols[s]].sum(0)) for s in rows]
        means.append(np.mean(per_seed))
    assert result.low == pytest.approx(np.quantile(means, 0.025), abs=1e-12)
    assert result.high == pytest.approx(np.quantile(means, 0.975), abs=1e-12)
    point = np.mean([ece_from_histogram(a[s].sum(0)) - ece_from_histogram(b[s].sum(0)) for s in range(2)])
    assert result.difference == pytest.approx(point)


def test_pooled_bootstrap_bad_inputs_raise():
    from softlabels.bench.statistics import paired_bootstrap_pooled

    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap_pooled(np.ones((2, 3, 1)), np.ones((2, 4, 1)), lambda x: x[..., 0])
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap_pooled(np.full((2, 3, 1), np.nan), np.ones((2, 3, 1)), lambda x: x[..., 0])


def test_seeds_with_different_numbers_of_cases_are_resampled_within_each_seed():
    rng = np.random.default_rng(4)
    a = [rng.normal(0.8, 0.05, 12), rng.normal(0.8, 0.05, 7), rng.normal(0.8, 0.05, 20)]
    b = [x - rng.normal(0.01, 0.02, len(x)) for x in a]
    result = paired_bootstrap(a, b, n_resamples=400, seed=2)
    means = brute_force_means([x - y for x, y in zip(a, b, strict=True)], 400, 2)
    assert result.low == pytest.approx(np.quantile(means, 0.025), abs=1e-12)
    assert result.high == pytest.approx(np.quantile(means, 0.975), abs=1e-12)
    assert result.difference == pytest.approx(np.mean([(x - y).mean() for x, y in zip(a, b, strict=True)]))
    assert mean_std(a)[0] == pytest.approx(np.mean([x.mean() for x in a]))
