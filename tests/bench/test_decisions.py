"""The bench's decision arrays and repeated splits: validity with known truth on the synthetic segmentation suite."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from softlabels.bench.decisions import (
    ALPHA,
    BENCH_LEVELS,
    DELTA,
    case_quality,
    decision_arrays,
    failure_rows,
    mean_risk_coverage,
    prediction_set_splits,
    risk_control_splits,
)
from softlabels.conformal import case_curves
from softlabels.evaluation.references import References

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def synthetic_suite_curves() -> dict[str, dict[str, np.ndarray]]:
    """Per-case FNR curves of the default synthetic-segmentation suite's 100 test cases (48×48, 5 raters) against
    each rater, for the three models of ``benchmarks/conformal_validity.py`` (the same construction, imported from
    the script): p* (calibrated), p*'s logits × 3 (over-confident everywhere alike), and p* with each case's
    foreground logit shifted by its own random offset in [−2, 2] (mis-calibrated differently from case to case)."""
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("conformal_validity", BENCHMARKS / "conformal_validity.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        curves = module.model_curves()
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert set(curves) == {"calibrated", "overconfident", "case_miscalibrated"}
    assert all(len(c["fnr_curve"]) == 100 for c in curves.values())
    return curves


def test_decision_arrays_are_the_conformal_curves_against_each_rater():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 2, 10, 10, generator=g), 1)
    raters = torch.randint(0, 2, (3, 4, 10, 10), generator=g)
    refs = References(raters[:, 0], raters=raters)
    arrays = decision_arrays(probs, refs, segmentation=True)
    truth = torch.nn.functional.one_hot(raters, 2).movedim(-1, 2).float()  # (N, R, C, H, W)
    expected = case_curves(probs, truth, loss="fnr", num_levels=BENCH_LEVELS)
    np.testing.assert_allclose(arrays["fnr_curve"], expected["loss"].numpy(), atol=1e-6)
    np.testing.assert_allclose(arrays["mask_fraction"][:, 0, 0], 1.0)  # every voxel has p >= 0
    assert arrays["fnr_curve"].shape == (3, 1, BENCH_LEVELS) and np.all(arrays["fnr_curve"][:, :, 0] == 0)
    confidences = [k for k in arrays if k.startswith("conf_")]
    assert confidences and all(arrays[k].shape == (3,) for k in confidences)


def test_classification_decision_arrays_keep_probabilities_labels_and_confidences():
    probs = torch.softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)), 1)
    arrays = decision_arrays(probs, References(torch.tensor([0, 1, 2, 3, 0])), segmentation=False)
    assert arrays["probs"].shape == (5, 4) and arrays["label"].tolist() == [0, 1, 2, 3, 0]
    np.testing.assert_allclose(arrays["conf_max_prob"], probs.max(1).values.numpy(), atol=1e-6)


@pytest.mark.parametrize("model", ["calibrated", "overconfident", "case_miscalibrated"])
def test_crc_and_ltt_are_valid_on_the_synthetic_suite_over_500_splits(synthetic_suite_curves, model):
    arrays = synthetic_suite_curves[model]
    out = risk_control_splits(arrays["fnr_curve"], arrays["mask_fraction"], n_splits=500, seed=0)
    crc, ltt = out["crc"][0], out["ltt"][0]
    assert out["n_calibration"] == 50 and out["n_splits"] == 500
    mean, se = crc["risk"][0], crc["risk_se"]
    assert ALPHA - 0.02 <= mean <= ALPHA + 2 * se, (model, mean, se)  # CRC: E[FNR] <= α, and tight
    assert ltt["violations"] <= DELTA + 2 * math.sqrt(DELTA * (1 - DELTA) / 500), (model, ltt["violations"])


def test_miscalibration_keeps_the_guarantee_and_costs_mask_size_unless_it_is_the_same_everywhere(
    synthetic_suite_curves,
):
    out = {
        model: risk_control_splits(arrays["fnr_curve"], arrays["mask_fraction"], n_splits=500, seed=0)["crc"][0]
        for model, arrays in synthetic_suite_curves.items()
    }
    sizes = {model: values["fraction"][0] for model, values in out.items()}
    # the same monotone distortion in every case keeps the family of masks {p >= t}: the threshold moves, the masks
    # (and their size at the guarantee) do not
    t = out["calibrated"]["threshold"][0]
    moved = 1 / (1 + math.exp(-3 * math.log(t / (1 - t))))
    assert out["overconfident"]["threshold"][0] == pytest.approx(moved, abs=0.01)  # t → σ(3 logit t)
    assert sizes["overconfident"] == pytest.approx(sizes["calibrated"], rel=0.01)
    # a distortion that differs between cases breaks the ranking across cases: the guarantee costs larger masks
    assert sizes["case_miscalibrated"] > sizes["calibrated"] * 1.02, sizes


def test_risk_control_splits_needs_enough_cases_and_tests_on_the_shifted_cases():
    rng = np.random.default_rng(0)
    loss = np.sort(rng.random((24, 1, 21)), axis=2) * np.linspace(0, 1, 21)
    assert risk_control_splits(loss[:8], 1 - loss[:8], n_splits=10) is None  # halves of 4 < 1/α − 1
    worse = np.minimum(loss * 3, 1.0)
    clean = risk_control_splits(loss, 1 - loss, n_splits=50)
    shifted = risk_control_splits(loss, 1 - loss, n_splits=50, test_loss=worse, test_fraction=1 - worse)
    assert clean["crc"][0]["threshold"] == shifted["crc"][0]["threshold"]  # calibrated on the same clean cases
    assert shifted["crc"][0]["risk"][0] > clean["crc"][0]["risk"][0]
    crc_only = risk_control_splits(loss, 1 - loss, n_splits=50, test_loss=worse, test_fraction=1 - worse, ltt=False)
    assert crc_only["crc"] == shifted["crc"] and crc_only["ltt"] == []


def test_prediction_sets_cover_at_one_minus_alpha_with_known_truth():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(6, 0.7), size=600)
    labels = np.array([rng.choice(6, p=row) for row in probs])
    out = prediction_set_splits(probs, labels, n_splits=100, seed=0)
    for name, values in out.items():
        mean, se = values["coverage"][0], values["coverage_se"]
        assert 1 - ALPHA - 3 * se - 0.005 <= mean <= 1 - ALPHA + 1 / 301 + 3 * se, (name, mean)
        assert 1.0 <= values["size"][0] < 6
    assert out["raps"]["size"][0] <= out["aps"]["size"][0] + 1e-9  # the rank penalty shrinks the sets
    assert out["aps_mondrian"]["min_class_coverage"] >= 1 - ALPHA - 0.03  # every class covered (on average)


def test_case_quality_failure_rows_and_mean_risk_coverage():
    dice = np.array([[0.9], [0.2], [np.nan], [0.6]])
    assert case_quality({"dice": dice}, segmentation=True)[[0, 1, 3]].tolist() == [0.9, 0.2, 0.6]
    assert case_quality({"top1": np.array([1.0, 0.0])}, segmentation=False).tolist() == [1.0, 0.0]
    arrays = {"dice": dice, "conf_good": np.array([0.9, 0.2, 0.5, 0.6]), "conf_bad": np.array([0.1, 0.9, 0.5, 0.3])}
    rows = {r["confidence"]: r for r in failure_rows(arrays, segmentation=True, failure_below=0.5)}
    assert rows["good"]["e_aurc"] == pytest.approx(0.0, abs=1e-12) and rows["bad"]["e_aurc"] > 0
    assert rows["good"]["auroc"] == 1.0 and rows["bad"]["auroc"] == 0.0
    losses = np.array([0.0, 1.0])
    cover, risk = mean_risk_coverage([(np.array([0.9, 0.1]), losses), (np.array([0.1, 0.9]), losses)])
    assert cover.tolist() == [0.5, 1.0] and risk.tolist() == [0.5, 0.5]


def test_too_few_cases_for_halves_calibrate_on_all_but_one():
    from softlabels.bench.decisions import calibration_size

    assert [calibration_size(n, 0.1) for n in (9, 10, 11, 17, 18, 100)] == [None, 9, 10, 16, 9, 50]
    assert calibration_size(40, 0.05) == 20 and calibration_size(20, 0.05) == 19
    rng = np.random.default_rng(1)
    loss = np.sort(rng.random((11, 1, 21)), axis=2) * np.linspace(0, 1, 21)
    out = risk_control_splits(loss, 1 - loss, n_splits=200)
    assert out["n_calibration"] == 10 and out["crc"][0]["risk"][0] <= ALPHA + 3 * out["crc"][0]["risk_se"]
