"""Calibration error: functional and Metric twins against the float64 NumPy reference; edges; bad inputs; state."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.calibration import CalibrationError
from softlabels.metrics.functional.calibration import calibration_error, reliability_diagram
from tests.metrics._reference import bin_of, calibration_error_ref, forecasts, to_items

MODES = ["top_label", "classwise", "marginal"]
NORMS = ["l1", "l2", "max", "ace"]


def make_inputs(seed: int, shape=(3, 4, 9, 8), soft: bool = False, sharp: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(sharp * torch.randn(shape, generator=g), dim=1)
    if soft:
        target = torch.softmax(3 * torch.randn(shape, generator=g), dim=1)
    else:
        target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return probs, target


def calibrated_sample(n: int, c: int, seed: int):
    """Probabilities and labels drawn from them: calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2.5 * torch.randn(n, c, generator=g), dim=1)
    target = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return probs, target


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("soft", [False, True])
def test_matches_reference(mode, norm, soft):
    probs, target = make_inputs(1, soft=soft)
    got = calibration_error(probs, target, n_bins=10, norm=norm, mode=mode)
    ref = calibration_error_ref(probs.numpy(), target.numpy(), n_bins=10, norm=norm, mode=mode)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 7, 6), (2, 3, 4, 5, 6)])
@pytest.mark.parametrize("mode", MODES)
def test_shapes_2d_3d_classification(shape, mode):
    probs, target = make_inputs(2, shape=shape)
    got = calibration_error(probs, target, mode=mode)
    assert float(got) == pytest.approx(calibration_error_ref(probs.numpy(), target.numpy(), mode=mode), abs=1e-12)


@pytest.mark.parametrize("mode", ["classwise", "marginal"])
def test_include_background(mode):
    probs, target = make_inputs(3)
    got = calibration_error(probs, target, mode=mode, include_background=False)
    ref = calibration_error_ref(probs.numpy(), target.numpy(), mode=mode, include_background=False)
    assert float(got) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_mask_and_ignore_index(mode):
    probs, target = make_inputs(4)
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(target.shape, generator=g) > 0.4
    got = calibration_error(probs, target, mode=mode, mask=mask)
    ref = calibration_error_ref(probs.numpy(), target.numpy(), mode=mode, mask=mask.numpy())
    assert float(got) == pytest.approx(ref, abs=1e-12)
    ignored = torch.where(mask, target, torch.full_like(target, 255))
    assert float(calibration_error(probs, ignored, mode=mode, ignore_index=255)) == pytest.approx(ref, abs=1e-12)


def test_binary_single_channel_equals_two_class():
    g = torch.Generator().manual_seed(6)
    fg = torch.rand(4, 1, 10, 10, generator=g)
    target = (torch.rand(4, 10, 10, generator=g) < fg[:, 0]).long()
    two = torch.cat([1 - fg, fg], dim=1)
    for mode in MODES:
        assert float(calibration_error(fg, target, mode=mode)) == pytest.approx(
            float(calibration_error(two, target, mode=mode)), abs=1e-12
        )
    soft = torch.rand(4, 1, 10, 10, generator=g)
    assert float(calibration_error(fg, soft, mode="marginal")) == pytest.approx(
        float(calibration_error(two, torch.cat([1 - soft, soft], 1), mode="marginal")), abs=1e-12
    )


def test_bin_edges_zero_one_and_exact_edges():
    # confidence 0 (possible in classwise mode), exactly 1, and an exact edge 0.5 with 10 bins
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    target = torch.tensor([0, 1, 0])
    d = reliability_diagram(probs, target, n_bins=10, mode="classwise")
    # class 0: p = 1.0 (last bin), 0.5 (bin 4: 0.4 < r <= 0.5), 0.0 (first bin)
    assert d.counts[0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert d.counts.sum().item() == 6
    top = reliability_diagram(probs, target, n_bins=10)
    assert top.counts[0, 9].item() == 2 and top.counts[0, 4].item() == 1
    # the NumPy reference uses the same convention
    assert bin_of(np.array([0.0, 0.5, 1.0]), 10).tolist() == [0, 4, 9]


def test_reliability_diagram_matches_reference():
    probs, target = make_inputs(7)
    d = reliability_diagram(probs, target, n_bins=8)
    (p, t), *_ = to_items(probs.numpy(), target.numpy())
    cases = to_items(probs.numpy(), target.numpy())
    p = np.concatenate([c[0] for c in cases])
    t = np.concatenate([c[1] for c in cases])
    conf, out = forecasts(p, t, "top_label")[0]
    b = bin_of(conf, 8)
    for m in range(8):
        sel = b == m
        assert d.counts[0, m].item() == sel.sum()
        if sel.any():
            assert d.confidence[0, m].item() == pytest.approx(conf[sel].mean(), abs=1e-12)
            assert d.outcome[0, m].item() == pytest.approx(out[sel].mean(), abs=1e-12)
        else:
            assert math.isnan(d.confidence[0, m].item())
    assert d.bin_edges.shape == (9,) and d.mode == "top_label"


def test_perfectly_calibrated_sampler_converges_to_zero():
    values = [float(calibration_error(*calibrated_sample(n, 4, seed=n))) for n in (1_000, 30_000, 1_000_000)]
    assert values[2] < values[0]
    assert values[2] < 3e-3
    cw = float(calibration_error(*calibrated_sample(1_000_000, 4, seed=9), mode="classwise"))
    assert cw < 3e-3


def test_precision_at_scale_matches_float64_reference():
    probs, target = calibrated_sample(4_000_000, 4, seed=11)
    got = calibration_error(probs, target)
    ref = calibration_error_ref(probs[:, :, None].numpy(), target[:, None].numpy())
    assert abs(float(got) - ref) <= 1e-9


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("mode", MODES)
def test_metric_equals_functional_and_per_case(norm, mode):
    probs, target = make_inputs(12, shape=(5, 3, 6, 7))
    metric = CalibrationError(3, n_bins=10, norm=norm, mode=mode, per_case=True)
    metric.update(probs[:2], target[:2])
    metric.update(probs[2:], target[2:])
    out = metric.compute()
    assert torch.equal(out["pooled"], calibration_error(probs, target, n_bins=10, norm=norm, mode=mode))
    per_case = torch.stack(
        [calibration_error(probs[i : i + 1], target[i : i + 1], n_bins=10, norm=norm, mode=mode) for i in range(5)]
    )
    assert torch.allclose(out["per_case"], per_case, atol=1e-12, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 40),
    c=st.integers(1, 5),
    n_bins=st.integers(1, 20),
    mode=st.sampled_from(MODES),
    norm=st.sampled_from(NORMS),
    soft=st.booleans(),
    cuts=st.lists(st.integers(0, 40), max_size=4),
)
def test_properties_range_and_batch_invariance(seed, n, c, n_bins, mode, norm, soft, cuts):
    probs, target = make_inputs(seed, shape=(n, c, 3), soft=soft, sharp=3.0)
    if c == 1:
        probs = torch.rand((n, 1, 3), generator=torch.Generator().manual_seed(seed))
        target = torch.rand_like(probs) if soft else (probs[:, 0] > 0.5).long()
    value = calibration_error(probs, target, n_bins=n_bins, norm=norm, mode=mode)
    assert 0.0 <= float(value) <= 1.0
    metric = CalibrationError(c, n_bins=n_bins, norm=norm, mode=mode)
    bounds = sorted({0, n, *[min(x, n) for x in cuts]})
    for lo, hi in itertools.pairwise(bounds):
        metric.update(probs[lo:hi], target[lo:hi])
    assert float(metric.compute()) == pytest.approx(float(value), abs=1e-12)


def test_state_is_fixed_size_small_and_summed():
    metric = CalibrationError(4, n_bins=15, mode="classwise")
    for name, reduce in metric._reductions.items():
        assert reduce is not None and getattr(reduce, "__name__", "") == "dim_zero_sum", name

    def nbytes(m):
        return sum(t.numel() * t.element_size() for t in m.metric_state.values())

    metric.update(*calibrated_sample(10_000, 4, seed=1))
    small = nbytes(metric)
    for seed in range(10):
        metric.update(*calibrated_sample(100_000, 4, seed=seed))
    assert nbytes(metric) == small <= 1 << 20
    assert metric.counts.dtype == torch.int64 and metric.confidence_sum.dtype == torch.float64
    assert int(metric.counts.sum()) == 4 * 1_010_000


def test_empty_selection_is_nan():
    probs, target = make_inputs(13)
    mask = torch.zeros(target.shape, dtype=torch.bool)
    assert math.isnan(float(calibration_error(probs, target, mask=mask)))


def test_fp16_and_float64_inputs():
    probs, target = make_inputs(14)
    ref = calibration_error_ref(probs.double().numpy(), target.numpy())
    assert float(calibration_error(probs.double(), target)) == pytest.approx(ref, abs=1e-12)
    half = probs.half()
    got = calibration_error(half, target)
    assert float(got) == pytest.approx(calibration_error_ref(half.float().numpy(), target.numpy()), abs=1e-12)


def test_metric_reset_and_device_agnostic_creation():
    metric = CalibrationError(4)
    metric.update(*make_inputs(15))
    metric.reset()
    assert int(metric.counts.sum()) == 0
    assert math.isnan(float(metric.compute()))


def test_reliability_diagram_from_metric():
    probs, target = make_inputs(16)
    metric = CalibrationError(4, n_bins=12, mode="classwise", include_background=False)
    metric.update(probs, target)
    d = metric.reliability_diagram()
    direct = reliability_diagram(probs, target, n_bins=12, mode="classwise", include_background=False)
    assert torch.equal(d.counts, direct.counts) and d.classes == (1, 2, 3)
    assert torch.allclose(d.outcome, direct.outcome, equal_nan=True)


def test_ties_for_the_maximum_follow_argmax():
    # the first maximal class is the prediction, as argmax: exact ties decide correctness (dyadic values are exact)
    probs = torch.tensor(
        [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.375, 0.375, 0.25], [0.25, 0.375, 0.375], [0.25, 0.375, 0.375]]
    )
    target = torch.tensor([1, 0, 1, 1, 2])
    correct = [False, True, False, True, False]  # argmax: 0, 0, 0, 1, 1
    d = reliability_diagram(probs, target, n_bins=1)
    assert d.outcome[0, 0].item() == pytest.approx(sum(correct) / len(correct))
    big = probs.T.reshape(1, 3, 5).repeat(2, 1, 40)  # the same forecasts as a (N, C, V) map, through the chunks
    d_big = reliability_diagram(big, target.repeat(2, 40), n_bins=1)
    assert d_big.outcome[0, 0].item() == pytest.approx(sum(correct) / len(correct))
    ref = calibration_error_ref(probs.numpy(), target.numpy(), n_bins=10)
    assert float(calibration_error(probs, target, n_bins=10)) == pytest.approx(ref, abs=1e-12)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    c=st.integers(2, 6),
    n_bins=st.integers(5, 20),
    mode=st.sampled_from(MODES),
)
def test_property_calibrated_sampler_converges_to_zero(seed, c, n_bins, mode):
    # labels drawn from the forecast probabilities: the binned error is sampling noise of order sqrt(n_bins / n)
    n = 500_000
    probs, target = calibrated_sample(n, c, seed)
    bound = 4.0 * math.sqrt(n_bins / n)
    assert float(calibration_error(probs, target, n_bins=n_bins, mode=mode)) <= bound
    # the same labels scored against over-confident forecasts are clearly outside the bound
    sharp = torch.softmax(3.0 * torch.log(probs), dim=1)
    assert float(calibration_error(sharp, target, n_bins=n_bins, mode=mode)) > bound
