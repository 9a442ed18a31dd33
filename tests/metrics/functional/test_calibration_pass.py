"""The fused calibration pass against the per-metric functions it replaces, case by case; bad inputs."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.functional import (
    brier_score,
    calibration_error,
    calibration_pass,
    negative_log_likelihood,
)
from softlabels.metrics.functional.calibration import _calibration_histogram_update
from tests.metrics._reference import calibration_error_ref

# the module (the package exports a function of the same name)
cp_module = importlib.import_module("softlabels.metrics.functional.calibration_pass")


def histogram(probs, target, n_bins, mode, mask=None, ignore_index=None):
    """The per-case histogram of the existing update, stacked as (N, rows, n_bins, 3) [count, confidence, outcome]."""
    h = _calibration_histogram_update(
        probs, target, n_bins=n_bins, mode=mode, mask=mask, ignore_index=ignore_index, per_case=True
    )
    return torch.stack([h.counts.double(), h.confidence, h.outcome], dim=-1)


def assert_same_histogram(got, expected):
    assert got.dtype == torch.float64 and got.shape == expected.shape
    assert torch.equal(got[..., 0], expected[..., 0])  # counts identical
    assert torch.allclose(got[..., 1:], expected[..., 1:], rtol=0, atol=1e-9)


def assert_same_score(total, voxels, expected):
    """``total / voxels`` of one case against the functional value (both NaN without kept voxels)."""
    value = float(total) / int(voxels) if int(voxels) > 0 else math.nan
    if math.isnan(float(expected)):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(float(expected), rel=1e-9, abs=1e-12)


def quantized_probs(g, shape, levels):
    """Probabilities ``k / levels``: many exact bin edges (m / M), zeros, ones and ties for the maximum."""
    c = shape[1]
    cuts = torch.randint(0, levels + 1, (shape[0], c - 1, *shape[2:]), generator=g).sort(1).values
    edges = torch.cat([torch.zeros_like(cuts[:, :1]), cuts, torch.full_like(cuts[:, :1], levels)], 1)
    return (edges[:, 1:] - edges[:, :-1]).float() / levels


def make_case(seed, n, c, spatial, soft, quantized, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shape = (n, c, *spatial)
    if c == 1:
        probs = (torch.randint(0, 11, shape, generator=g) / 10.0) if quantized else torch.rand(shape, generator=g)
        target = torch.rand(shape, generator=g) if soft else torch.randint(0, 2, (n, *spatial), generator=g)
        return probs.to(dtype), target
    if quantized:
        probs = quantized_probs(g, shape, int(torch.randint(2, 31, (1,), generator=g)))
    else:
        probs = torch.softmax(3.0 * torch.randn(shape, generator=g), dim=1)
    if soft:
        target = quantized_probs(g, shape, 4) if quantized else torch.softmax(torch.randn(shape, generator=g), 1)
    else:
        target = torch.randint(0, c, (n, *spatial), generator=g)
    return probs.to(dtype), target


def check_against_functions(probs, target, n_bins, masks, ignore_index):
    out = calibration_pass(probs, target, n_bins=n_bins, masks=masks, ignore_index=ignore_index)
    assert_same_histogram(out.top_label, histogram(probs, target, n_bins, "top_label", None, ignore_index))
    assert_same_histogram(out.classwise, histogram(probs, target, n_bins, "classwise", None, ignore_index))
    assert set(out.masked) == set(masks)
    for name, mask in masks.items():
        assert_same_histogram(out.masked[name], histogram(probs, target, n_bins, "top_label", mask, ignore_index))
    assert out.voxels.dtype == torch.int64 and out.nll_sum.dtype == out.brier_sum.dtype == torch.float64
    for i in range(probs.shape[0]):
        p, t = probs[i : i + 1], target[i : i + 1]
        nll = negative_log_likelihood(p, t, ignore_index=ignore_index)
        brier = brier_score(p, t, ignore_index=ignore_index)
        assert_same_score(out.nll_sum[i], out.voxels[i], nll)
        assert_same_score(out.brier_sum[i], out.voxels[i], brier)
        assert int(out.voxels[i]) == int(out.top_label[i, ..., 0].sum())


SPATIAL = st.sampled_from([(), (7,), (5, 6), (3, 4, 5), (2, 9, 1, 3)])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 3),
    c=st.sampled_from([1, 2, 4]),
    spatial=SPATIAL,
    soft=st.booleans(),
    quantized=st.booleans(),
    n_bins=st.integers(1, 20),
    n_masks=st.integers(0, 2),
    use_ignore=st.booleans(),
    chunk=st.sampled_from([5, 64, 1 << 19]),
)
def test_equals_the_per_metric_functions(seed, n, c, spatial, soft, quantized, n_bins, n_masks, use_ignore, chunk):
    probs, target = make_case(seed, n, c, spatial, soft, quantized)
    g = torch.Generator().manual_seed(seed + 1)
    masks = {f"m{k}": torch.rand(target.shape[:1] + probs.shape[2:], generator=g) > 0.4 for k in range(n_masks)}
    ignore_index = None
    if use_ignore and not soft:
        ignore_index = int(torch.randint(0, max(c, 2) + 1, (1,), generator=g))  # a used label, or an unused one
    old = cp_module._CHUNK_ELEMENTS, cp_module._CHUNK_VOXELS
    cp_module._CHUNK_ELEMENTS, cp_module._CHUNK_VOXELS = chunk, max(1, chunk // 3)  # several blocks and chunks
    try:
        check_against_functions(probs, target, n_bins, masks, ignore_index)
    finally:
        cp_module._CHUNK_ELEMENTS, cp_module._CHUNK_VOXELS = old


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)])
def test_float64_and_float16_inputs(soft, spatial):
    for dtype in (torch.float64, torch.float16):
        probs, target = make_case(3, 2, 4, spatial, soft, quantized=False, dtype=dtype)
        mask = torch.ones(target.shape[:1] + probs.shape[2:], dtype=torch.bool)
        mask[:, 0] = False
        check_against_functions(probs, target, 15, {"band": mask}, None)


@pytest.mark.parametrize("mode", ["top_label", "classwise"])
def test_pooled_histograms_give_the_calibration_error_and_the_numpy_reference(mode):
    probs, target = make_case(5, 3, 4, (6, 5, 4), soft=False, quantized=False)
    mask = torch.rand(target.shape, generator=torch.Generator().manual_seed(9)) > 0.5
    out = calibration_pass(probs, target, n_bins=10, masks={"m": mask})
    for hist, m in ((out.top_label if mode == "top_label" else out.classwise, None), (out.masked["m"], mask)):
        if m is not None and mode == "classwise":
            continue
        h = hist.sum(0)  # (rows, n_bins, 3) pooled over the cases
        ece = ((h[..., 1] - h[..., 2]).abs().sum(-1) / h[..., 0].sum(-1)).mean()
        assert float(ece) == pytest.approx(float(calibration_error(probs, target, n_bins=10, mode=mode, mask=m)))
        ref = calibration_error_ref(
            probs.numpy(), target.numpy(), n_bins=10, mode=mode, mask=None if m is None else m.numpy()
        )
        assert float(ece) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_binary_brier_is_halved_and_nll_clamped():
    probs = torch.tensor([[[1.0, 0.0, 0.25]]])  # (N=1, C=1, V=3): foreground probabilities
    target = torch.tensor([[0, 1, 1]])
    out = calibration_pass(probs, target)
    expected_brier = np.mean([(1.0 - 0) ** 2, (0.0 - 1) ** 2, (0.25 - 1) ** 2])
    assert float(out.brier_sum[0] / out.voxels[0]) == pytest.approx(expected_brier)
    expected_nll = np.mean([-math.log(1e-12), -math.log(1e-12), -math.log(0.25)])
    assert float(out.nll_sum[0] / out.voxels[0]) == pytest.approx(expected_nll)


def test_inputs_without_voxels():
    out = calibration_pass(torch.zeros(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long), n_bins=5)
    assert out.top_label.shape == (0, 1, 5, 3) and out.classwise.shape == (0, 3, 5, 3) and out.voxels.shape == (0,)
    out = calibration_pass(torch.zeros(2, 3, 0, 4), torch.zeros(2, 0, 4, dtype=torch.long), n_bins=5)
    assert out.top_label.shape == (2, 1, 5, 3) and float(out.top_label.abs().sum()) == 0.0
    assert out.voxels.tolist() == [0, 0] and out.nll_sum.tolist() == [0.0, 0.0]


def test_everything_ignored_gives_empty_histograms():
    probs, target = make_case(1, 2, 3, (4, 4), soft=False, quantized=False)
    target = torch.full_like(target, 7)
    out = calibration_pass(probs, target, ignore_index=7, masks={"all": torch.ones_like(target, dtype=torch.bool)})
    assert out.voxels.tolist() == [0, 0]
    assert float(out.top_label.abs().sum() + out.classwise.abs().sum() + out.masked["all"].abs().sum()) == 0.0


def good_inputs():
    probs, target = make_case(0, 2, 3, (4, 5), soft=False, quantized=False)
    return probs, target, torch.ones(2, 4, 5, dtype=torch.bool)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_bins": 0}, ValueError, "`n_bins` of calibration_pass must be an int >= 1; got 0"),
        ({"n_bins": 2.5}, ValueError, "`n_bins` of calibration_pass"),
        ({"eps": 0.0}, ValueError, "`eps` of calibration_pass"),
        ({"ignore_index": 1.5}, ValueError, "`ignore_index` of calibration_pass must be an int or None; got 1.5"),
        ({"masks": ["band"]}, TypeError, "`masks` of calibration_pass must be a mapping"),
        ({"masks": {1: "x"}}, TypeError, "`masks` of calibration_pass must be a mapping"),
        ({"masks": {"band": torch.ones(2, 4, 5)}}, TypeError, r"`mask` of calibration_pass \(masks\['band'\]\)"),
        ({"masks": {"band": torch.ones(2, 5, 4, dtype=torch.bool)}}, ValueError, r"must have shape \(2, 4, 5\)"),
    ],
)
def test_bad_options(kwargs, error, match):
    probs, target, _ = good_inputs()
    with pytest.raises(error, match=match):
        calibration_pass(probs, target, **kwargs)


def test_bad_tensors():
    probs, target, mask = good_inputs()
    with pytest.raises(ValueError, match="`probs` of calibration_pass must sum to 1"):
        calibration_pass(probs * 0.5, target)
    calibration_pass(probs * 0.5, target, validate_args=False)  # values unchecked on request; shapes always checked
    with pytest.raises(ValueError, match=r"`target` of calibration_pass must hold labels in \[0, 2\]"):
        calibration_pass(probs, target + 3)
    with pytest.raises(ValueError, match="`target` of calibration_pass must have shape"):
        calibration_pass(probs, target[:, :2])
    with pytest.raises(TypeError, match=r"`target` of calibration_pass .* must have an integer dtype"):
        calibration_pass(probs, target.float())
    with pytest.raises(ValueError, match="`ignore_index` of calibration_pass applies to label maps only"):
        calibration_pass(probs, probs, ignore_index=0, masks={"m": mask})
    with pytest.raises(TypeError, match="`probs` of calibration_pass must have a floating dtype"):
        calibration_pass(target.unsqueeze(1), target)
