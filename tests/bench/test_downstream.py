import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score

from softlabels.bench.downstream import (
    AREA_THRESHOLDS,
    TARGETS,
    CaseTargets,
    TargetSpec,
    case_targets,
    cross_validated_predictions,
    downstream_outcomes,
    outcome_caption,
    outcome_numbers,
    outcome_rows,
    outcome_sentence,
    structure_features,
    weighted_auroc,
    weighted_balanced_accuracy,
    weighted_r2,
)


def random_probs(rng, n=3, c=3, shape=(6, 5)):
    logits = rng.normal(0, 2, (n, c, *shape))
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------ features
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 4), st.sampled_from([(7,), (5, 6), (3, 4, 5)]))
def test_area_features_fall_with_the_level_and_count_the_voxels_at_or_above_it(seed, c, shape):
    probs = random_probs(np.random.default_rng(seed), n=2, c=c, shape=shape)
    out = structure_features(probs)
    area, soft = out["area_fraction"], out["soft_fraction"]
    assert area.shape == (2, c - 1, len(AREA_THRESHOLDS)) and soft.shape == (2, c - 1)
    assert np.all(np.diff(area, axis=2) <= 0) and area.min() >= 0 and area.max() <= 1
    for k, t in enumerate(AREA_THRESHOLDS):  # the definition, voxel by voxel
        expected = (probs[:, 1:] >= np.float32(t)).reshape(2, c - 1, -1).sum(2) / np.prod(shape)
        np.testing.assert_allclose(area[:, :, k], expected)
    np.testing.assert_allclose(soft, probs[:, 1:].reshape(2, c - 1, -1).astype(np.float64).mean(2), rtol=1e-6)


def test_features_of_a_tensor_equal_those_of_its_array():
    probs = random_probs(np.random.default_rng(0))
    a, b = structure_features(torch.from_numpy(probs)), structure_features(probs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("probs", "thresholds", "match"),
    [
        (np.zeros((2, 1, 4, 4)), AREA_THRESHOLDS, "C >= 2"),
        (np.zeros((2, 2)), AREA_THRESHOLDS, "C >= 2"),
        (np.zeros((2, 2, 4)), (0.5, 0.3), "increase"),
        (np.zeros((2, 2, 4)), (0.0, 0.5), "increase"),
    ],
)
def test_bad_features_input_is_named(probs, thresholds, match):
    with pytest.raises(ValueError, match=match):
        structure_features(probs, thresholds)


# ------------------------------------------------------------------ metrics
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 40))
def test_weighted_metrics_with_unit_weights_are_sklearns(seed, n):
    rng = np.random.default_rng(seed)
    y, pred = rng.normal(size=n), rng.normal(size=n)
    assert weighted_r2(y, pred)[0] == pytest.approx(r2_score(y, pred))
    labels, guess = rng.integers(0, 3, n), rng.integers(0, 3, n)
    assert weighted_balanced_accuracy(labels, guess)[0] == pytest.approx(balanced_accuracy_score(labels, guess))
    binary, score = np.r_[0, 1, rng.integers(0, 2, n - 2)], np.round(rng.random(n), 1)  # ties included
    assert weighted_auroc(binary, score)[0] == pytest.approx(roc_auc_score(binary, score))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 25))
def test_integer_weights_are_repeated_cases(seed, n):
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 4, n)
    w[:2] = 1
    y, pred = rng.normal(size=n), rng.normal(size=n)
    binary, score = np.r_[0, 1, rng.integers(0, 2, n - 2)], rng.random(n)
    labels, guess = rng.integers(0, 3, n), rng.integers(0, 3, n)
    rep = np.repeat(np.arange(n), w)
    assert weighted_r2(y, pred, w)[0] == pytest.approx(r2_score(y[rep], pred[rep]))
    assert weighted_auroc(binary, score, w)[0] == pytest.approx(roc_auc_score(binary[rep], score[rep]))
    expected = balanced_accuracy_score(labels[rep], guess[rep])
    assert weighted_balanced_accuracy(labels, guess, np.stack([w, w]))[1] == pytest.approx(expected)


def test_auroc_of_a_perfect_score_is_one_and_undefined_metrics_are_nan():
    y = np.array([0, 0, 1, 0, 1, 1])
    assert weighted_auroc(y, y + 0.1 * np.arange(6))[0] == 1.0
    assert weighted_auroc(y, -y.astype(float))[0] == 0.0
    assert math.isnan(weighted_auroc(np.ones(4), np.arange(4.0))[0])
    assert math.isnan(weighted_r2(np.ones(4), np.arange(4.0))[0])


# ------------------------------------------------------------------ targets
def fractions(k, seed=0):
    """Plausible true fractions: a soft area and areas falling with the level."""
    rng = np.random.default_rng(seed)
    area = np.sort(rng.uniform(0, 0.4, (k, 1, len(AREA_THRESHOLDS))), axis=2)[:, :, ::-1].copy()
    return area.mean(2), area


def test_targets_are_the_documented_functions_of_the_fractions():
    soft, area = fractions(500)
    spec = TargetSpec(value_noise=0.0, change_noise=0.0)
    t = case_targets(soft, area, seed=3, spec=spec)
    z_s = (soft[:, 0] - soft[:, 0].mean()) / soft[:, 0].std()
    rim = area[:, 0, 0] - area[:, 0, -1]
    z_r = (rim - rim.mean()) / rim.std()
    np.testing.assert_allclose(t.value, z_s)
    np.testing.assert_array_equal(t.change, (z_r >= -0.5).astype(int) + (z_r >= 0.5))
    np.testing.assert_allclose(t.risk, 1 / (1 + np.exp(-(z_s + z_r))))
    assert abs(t.outcome.mean() - t.risk.mean()) < 0.07  # Bernoulli draws of the risk


def test_target_noise_is_fixed_by_the_seed_and_has_the_documented_level():
    soft, area = fractions(4000)
    a, b, c = (case_targets(soft, area, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.value, b.value) and np.array_equal(a.outcome, b.outcome)
    assert not np.array_equal(a.value, c.value)
    assert np.std(a.value - a.value_mean) == pytest.approx(TARGETS.value_noise, rel=0.05)
    assert weighted_r2(a.value, a.value_mean)[0] == pytest.approx(TARGETS.r2_ceiling, abs=0.02)


def test_bad_target_input_is_named():
    with pytest.raises(ValueError, match="case_targets"):
        case_targets(np.zeros((4, 1)), np.zeros((5, 1, 9)), seed=0)


# ------------------------------------------------------------------ cross-validation
def targets_from(value, change=None, outcome=None):
    n = len(value)
    change = np.arange(n) % 3 if change is None else change
    outcome = np.arange(n) % 2 if outcome is None else outcome
    return CaseTargets(value, change, outcome, value, change, outcome.astype(float))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_cv_recovers_a_noiseless_linear_target(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 5))
    value = x @ rng.normal(size=5)
    pred = cross_validated_predictions(x, targets_from(value), seed=seed)
    assert weighted_r2(value, pred["value"])[0] > 0.99


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_cv_on_pure_noise_has_no_skill(seed):
    rng = np.random.default_rng(seed)
    x, value = rng.normal(size=(80, 9)), rng.normal(size=80)
    pred = cross_validated_predictions(x, targets_from(value, outcome=rng.integers(0, 2, 80)), seed=seed)
    assert weighted_r2(value, pred["value"])[0] < 0.1


def test_cv_classifies_separable_classes_and_uses_the_same_folds_for_every_target():
    x = np.linspace(-3, 3, 60)[:, None]
    change, outcome = np.digitize(x[:, 0], (-1, 1)), (x[:, 0] > 0).astype(int)
    pred = cross_validated_predictions(x, targets_from(x[:, 0], change, outcome), seed=0)
    assert weighted_balanced_accuracy(change, pred["change"])[0] > 0.9
    assert weighted_auroc(outcome, pred["outcome"])[0] > 0.99  # pooled over folds: each fold's model scales its own
    again = cross_validated_predictions(x, targets_from(x[:, 0], change, outcome), seed=0)
    assert all(np.array_equal(pred[k], again[k]) for k in pred)


def test_cv_of_too_few_cases_is_nan_and_a_one_class_fold_predicts_that_class():
    tiny = cross_validated_predictions(np.zeros((3, 2)), targets_from(np.arange(3.0)), seed=0)
    assert np.isnan(tiny["value"]).all()
    x = np.random.default_rng(0).normal(size=(10, 2))
    pred = cross_validated_predictions(x, targets_from(x[:, 0], np.zeros(10, int), np.zeros(10, int)), seed=0)
    assert np.array_equal(pred["change"], np.zeros(10)) and np.array_equal(pred["outcome"], np.zeros(10))


# ------------------------------------------------------------------ the section
def runs_with(methods, seeds=(0, 1), k=60):
    """Per label, per seed arrays: p* fractions in ``oracle``, each method's features in ``raw``."""
    out = {label: [] for label in methods}
    for s in seeds:
        soft, area = fractions(k, seed=s)
        oracle = {"area_fraction": area, "soft_fraction": soft}
        for label, make in methods.items():
            features = make(area, np.random.default_rng(100 + s))
            out[label].append({"oracle": oracle, "raw": {"area_fraction": features, "soft_fraction": soft}})
    return out


def test_oracle_features_reach_the_ceiling_and_noise_features_do_not():
    methods = {
        "oracle_like": lambda area, rng: area,
        "noise": lambda area, rng: rng.random(area.shape),
        "ct_0.5": lambda area, rng: area[:, :, 4:5].repeat(9, axis=2),
        "ct_0.6": lambda area, rng: area[:, :, 4:5].repeat(9, axis=2),
    }
    out = downstream_outcomes(runs_with(methods), [0, 1], n_resamples=200)
    assert out is not None and out.n_splits == 5 and out.n_cases == [60, 60]
    assert out.methods["oracle_like"] == out.ceiling
    for key in ("value", "change", "outcome"):
        assert out.methods["noise"][key].mean < out.ceiling[key].mean - 0.1
        e = out.methods["oracle_like"][key]
        assert e.low <= e.mean <= e.high
    assert out.ceiling["value"].mean == pytest.approx(TARGETS.r2_ceiling, abs=0.1)
    assert out.truth["value"].mean == pytest.approx(TARGETS.r2_ceiling, abs=0.1)
    assert all(c.difference == 0 and c.low == 0 == c.high for c in out.tau.values())  # identical cells
    assert "**does not hold" in outcome_sentence(out)


def test_sections_without_p_star_have_no_outcomes_and_rows_render():
    runs = runs_with({"hard": lambda area, rng: area})
    assert downstream_outcomes({"hard": [{"raw": r["raw"]} for r in runs["hard"]]}, [0, 1]) is None
    out = downstream_outcomes(runs, [0, 1], n_resamples=200, evaluations=("raw", "ts"))
    assert out is not None and out.tau is None and "not tested" in outcome_sentence(out)
    assert out.extra == {"ts": {}}  # no cell has ts features here
    header, rows = outcome_rows(out)
    assert len(header) == 4 and rows[0][0] == "`hard`" and len(rows) == 4
    assert "5-fold" in outcome_caption(out)
    numbers = json.loads(json.dumps(outcome_numbers(out)))
    assert numbers["methods"]["hard"]["value"]["mean"] == pytest.approx(out.methods["hard"]["value"].mean)


def test_the_tiny_bench_records_features_and_reports_the_outcome_table(tiny_bench):
    from softlabels.bench.results import load_suite
    from softlabels.bench.suite_sections import suite_section

    suites, root = tiny_bench
    seg, cls = suites
    cells = load_suite(seg, root)
    for cell in cells.values():
        for arrays in cell.arrays:
            for evaluation in ("raw", "ts", "oracle"):
                area = arrays[evaluation]["area_fraction"]
                assert area.shape == (len(arrays["raw"]["nll"]), 1, len(AREA_THRESHOLDS))
                assert np.all(np.diff(area, axis=2) <= 0)
    section = suite_section(seg, root, n_resamples=200)
    assert section.outcomes is not None and set(section.outcomes.methods) == {c.label for c in seg.cells}
    assert set(section.outcomes.extra["ts"]) == set(section.outcomes.methods)
    assert suite_section(cls, root, n_resamples=200).outcomes is None
    report = json.loads((root / "report.json").read_text())
    assert report["suites"]["tiny_seg"]["outcomes"]["n_cases"] == section.outcomes.n_cases
    assert report["suites"]["tiny_cls"]["outcomes"] is None
    assert "### Downstream outcomes predicted from the masks" in (root / "report.md").read_text()
