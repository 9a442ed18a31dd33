"""Every bad input to the probabilistic metrics raises a clear error naming the problem (and nothing is clipped)."""

from __future__ import annotations

import pytest
import torch

from softlabels.metrics.calibration import AdaptiveCalibrationError, CalibrationError
from softlabels.metrics.functional.adaptive_calibration import adaptive_calibration_error
from softlabels.metrics.functional.calibration import calibration_error, reliability_diagram
from softlabels.metrics.functional.proper_scoring import brier_score, negative_log_likelihood
from softlabels.metrics.proper_scoring import BrierScore, NegativeLogLikelihood


def _metric_update(cls):
    def run(probs, target, **kw):
        metric = cls(probs.shape[1] if probs.ndim > 1 else 2, **{k: v for k, v in kw.items() if k != "mask"})
        metric.update(probs, target, mask=kw.get("mask"))
        return metric.compute()

    return run


CALLABLES = {
    "calibration_error": calibration_error,
    "reliability_diagram": reliability_diagram,
    "adaptive_calibration_error": adaptive_calibration_error,
    "brier_score": brier_score,
    "negative_log_likelihood": negative_log_likelihood,
    "CalibrationError": _metric_update(CalibrationError),
    "AdaptiveCalibrationError": _metric_update(AdaptiveCalibrationError),
    "BrierScore": _metric_update(BrierScore),
    "NegativeLogLikelihood": _metric_update(NegativeLogLikelihood),
}


def good():
    probs = torch.softmax(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    target = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    return probs, target


def _nan(p, t):
    p = p.clone()
    p[0, 0, 0, 0] = float("nan")
    return p, t


def _inf(p, t):
    p = p.clone()
    p[0, 0, 0, 0] = float("inf")
    return p, t


def _negative(p, t):
    p = p.clone()
    p[0, :, 0, 0] = torch.tensor([-0.1, 0.6, 0.5])
    return p, t


def _above_one(p, t):
    p = p.clone()
    p[0, :, 0, 0] = torch.tensor([1.2, -0.1, -0.1])
    return p, t


CASES = {
    "nan": (_nan, ValueError, r"`probs`.*finite.*1 NaN/inf"),
    "inf": (_inf, ValueError, r"`probs`.*finite"),
    "negative": (_negative, ValueError, r"`probs`.*\[0, 1\].*min -0\.1"),
    "above one": (_above_one, ValueError, r"`probs`.*\[0, 1\].*max 1\.2"),
    "not summing to one": (lambda p, t: (p * 0.9, t), ValueError, r"`probs`.*sum to 1.*deviation of 0\.1"),
    "logits": (lambda p, t: (torch.log(p) * 0 + 0.5, t), ValueError, r"sum to 1"),
    "label too large": (lambda p, t: (p, torch.where(t == 0, 7, t)), ValueError, r"`target`.*\[0, 2\].*max 7"),
    "negative label": (lambda p, t: (p, torch.where(t == 0, -1, t)), ValueError, r"`target`.*min -1"),
    "float label map": (lambda p, t: (p, t.float()), TypeError, r"`target`.*integer dtype.*float32"),
    "integer probs": (lambda p, t: (p.long(), t), TypeError, r"`probs`.*floating dtype"),
    "shape mismatch": (lambda p, t: (p, t[:, :3]), ValueError, r"`target`.*shape \(2, 4, 4\).*got \(2, 3, 4\)"),
    "batch mismatch": (lambda p, t: (p, t[:1]), ValueError, r"`target`.*got \(1, 4, 4\)"),
    "soft target not summing": (lambda p, t: (p, p * 0.5), ValueError, r"`target`.*sum to 1"),
    "soft target NaN": (lambda p, t: (p, _nan(p, t)[0]), ValueError, r"`target`.*finite"),
    "soft target int": (lambda p, t: (p, (p > 0.5).long()), TypeError, r"soft `target`.*floating"),
    "1-d probs": (lambda p, t: (p[0, 0, 0], t[0, 0]), ValueError, r"`probs`.*\(N, C, \*spatial\)"),
    "not a tensor": (lambda p, t: (p.numpy(), t), TypeError, r"torch.Tensor"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(CALLABLES))
def test_bad_input_raises_clear_error(name, case):
    make, exc, pattern = CASES[case]
    probs, target = make(*good())
    with pytest.raises(exc, match=pattern) as info:
        CALLABLES[name](probs, target)
    if not name[0].isupper():
        assert name in str(info.value)


@pytest.mark.parametrize("name", list(CALLABLES))
def test_bad_mask_raises(name):
    probs, target = good()
    with pytest.raises(TypeError, match=r"`mask`.*bool"):
        CALLABLES[name](probs, target, mask=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"`mask`.*shape \(2, 4, 4\)"):
        CALLABLES[name](probs, target, mask=torch.ones(2, 4, 5, dtype=torch.bool))


def test_ignore_index_with_soft_target_raises():
    probs, _ = good()
    with pytest.raises(ValueError, match=r"ignore_index.*mask="):
        calibration_error(probs, probs, ignore_index=255)


def test_bad_options_name_the_argument_and_suggest():
    probs, target = good()
    with pytest.raises(ValueError, match=r"`n_bins` of calibration_error must be an int >= 1; got 0"):
        calibration_error(probs, target, n_bins=0)
    with pytest.raises(ValueError, match=r"`norm`.*got 'L1'.*did you mean 'l1'"):
        calibration_error(probs, target, norm="L1")
    with pytest.raises(ValueError, match=r"`mode`.*got 'toplabel'.*did you mean 'top_label'"):
        CalibrationError(3, mode="toplabel")
    with pytest.raises(ValueError, match=r"`num_classes` of CalibrationError.*got 0"):
        CalibrationError(0)
    with pytest.raises(ValueError, match=r"num_classes=4 channels; got 3"):
        CalibrationError(4).update(probs, target)
    with pytest.raises(ValueError, match=r"`n_fine_bins`.*got 10"):
        adaptive_calibration_error(probs, target, n_bins=15, n_fine_bins=10)
    with pytest.raises(ValueError, match=r"`mode` of adaptive_calibration_error.*'marginal'"):
        adaptive_calibration_error(probs, target, mode="marginal")
    with pytest.raises(ValueError, match=r"`eps` of negative_log_likelihood.*got 0"):
        negative_log_likelihood(probs, target, eps=0)
    with pytest.raises(ValueError, match=r"num_classes=5 channels; got 3"):
        BrierScore(5).update(probs, target)


def test_validate_args_false_skips_value_scan_but_not_shapes():
    probs, target = good()
    assert torch.isfinite(calibration_error(probs * 0.999, target, validate_args=False))
    with pytest.raises(ValueError, match="shape"):
        calibration_error(probs, target[:, :3], validate_args=False)


def test_ignore_index_label_outside_range_is_allowed():
    probs, target = good()
    target[0, 0, 0] = 255
    assert torch.isfinite(calibration_error(probs, target, ignore_index=255))
    assert torch.isfinite(negative_log_likelihood(probs, target, ignore_index=255))
