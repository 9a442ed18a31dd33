"""Risk curves: exact against a brute-force loop over the levels, monotone, chunk- and batch-invariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.conformal import case_curves, threshold_levels
from softlabels.conformal import risk_curves as rc
from softlabels.conformal.risk_curves import monotone_upper


def brute_force(probs, truth, loss, num_levels, include_background):
    """Loop over cases, raters, structures and levels; mask = p >= level, compared in float64."""
    p = probs.double().numpy()
    w = truth.double().numpy()
    if w.ndim == p.ndim:
        w = w[:, None]
    levels = np.arange(num_levels) / (num_levels - 1)
    c = p.shape[1]
    chans = [0] if c == 1 else list(range(0 if include_background else 1, c))
    n, r = p.shape[0], w.shape[1]
    out = np.zeros((n, len(chans), num_levels))
    vol = np.zeros_like(out)
    pos = np.zeros((n, len(chans)))
    for i in range(n):
        for j, ch in enumerate(chans):
            for g, level in enumerate(levels):
                mask = p[i, ch] >= level
                vol[i, j, g] = mask.sum()
                values = []
                for rr in range(r):
                    wt = w[i, rr, ch]
                    if loss == "fnr":
                        total = wt.sum()
                        values.append(0.0 if total == 0 else 1.0 - (wt * mask).sum() / total)
                    else:
                        values.append(0.0 if mask.sum() == 0 else ((1.0 - wt) * mask).sum() / mask.sum())
                out[i, j, g] = np.mean(values)
            pos[i, j] = w[i, :, ch].sum(axis=tuple(range(1, w.ndim - 2))).mean()
    return out, vol, pos


@st.composite
def volumes(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n, c = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 3]))
    spatial = draw(st.sampled_from([(5,), (4, 3), (3, 2, 4)]))
    num_levels = draw(st.sampled_from([2, 5, 11, 101]))
    shape = (n, c, *spatial)
    # probabilities on and off the grid, with 0 and 1: the masks p >= level are tested at their edges
    on_grid = rng.integers(0, num_levels, size=shape) / (num_levels - 1)
    probs = np.where(rng.random(shape) < 0.5, on_grid, rng.random(shape))
    if c > 1:
        total = probs.sum(1, keepdims=True)
        probs = np.where(total > 0, probs / np.where(total > 0, total, 1.0), probs) if draw(st.booleans()) else probs
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    raters = draw(st.sampled_from([0, 1, 3]))
    tshape = (n, raters, *shape[1:]) if raters else shape
    soft = draw(st.booleans())
    truth = rng.random(tshape) if soft else (rng.random(tshape) < 0.4).astype(np.float64)
    if draw(st.booleans()):
        truth[0] = 0.0  # an absent structure / empty reference
    return (
        torch.tensor(probs, dtype=dtype),
        torch.tensor(truth, dtype=torch.float64),
        num_levels,
        draw(st.booleans()),
        draw(st.sampled_from(["fnr", "fdr"])),
    )


@settings(max_examples=50, deadline=None)
@given(volumes())
def test_case_curves_equal_brute_force(case):
    probs, truth, num_levels, include_background, loss = case
    out = case_curves(probs, truth, loss=loss, num_levels=num_levels, include_background=include_background)
    expected, vol, pos = brute_force(probs, truth, loss, num_levels, include_background)
    np.testing.assert_allclose(out["loss"].numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out["volume"].numpy(), vol)
    np.testing.assert_allclose(out["positives"].numpy(), pos, rtol=1e-12, atol=1e-12)
    assert out["loss"].dtype == torch.float64 and out["volume"].dtype == torch.float64
    if loss == "fnr":  # exactly monotone: non-decreasing in the level, 0 at level 0 (every voxel)
        assert bool((out["loss"].diff(dim=-1) >= 0).all())
        assert bool((out["loss"][..., 0] == 0).all())
    assert bool((out["volume"].diff(dim=-1) <= 0).all())


@settings(max_examples=30, deadline=None)
@given(volumes())
def test_monotone_upper_bound(case):
    probs, truth, num_levels, include_background, _ = case
    raw = case_curves(probs, truth, loss="fdr", num_levels=num_levels, include_background=include_background)["loss"]
    upper = monotone_upper(raw, loss="fdr")
    assert bool((upper >= raw).all()) and bool((upper.diff(dim=-1) <= 0).all())
    expected = np.maximum.accumulate(raw.numpy()[..., ::-1], axis=-1)[..., ::-1]  # max over g' >= g
    np.testing.assert_array_equal(upper.numpy(), expected)
    fnr = case_curves(probs, truth, loss="fnr", num_levels=num_levels)["loss"]
    assert torch.equal(monotone_upper(fnr, loss="fnr"), fnr)


def test_hard_label_masks_bool_and_int_truth_match_float():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 6, 6, generator=g), 1)
    labels = torch.randint(0, 3, (2, 6, 6), generator=g)
    onehot = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1)
    ref = case_curves(probs, onehot.double(), num_levels=51)
    for truth in (onehot.bool(), onehot.to(torch.uint8), onehot.long()):
        out = case_curves(probs, truth, num_levels=51)
        assert all(torch.equal(out[k], ref[k]) for k in ref)
    assert ref["loss"].shape == (2, 2, 51)
    assert case_curves(probs, onehot, num_levels=51, include_background=True)["loss"].shape == (2, 3, 51)


def test_chunked_equals_unchunked_and_cases_do_not_depend_on_their_batch(monkeypatch):
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(5, 2, 7, 9, 4, generator=g)
    truth = torch.rand(5, 3, 2, 7, 9, 4, generator=g)
    whole = case_curves(probs, truth, loss="fnr", num_levels=101)
    monkeypatch.setattr(rc, "CHUNK", 13)
    chunked = case_curves(probs, truth, loss="fnr", num_levels=101)
    for key in whole:
        torch.testing.assert_close(chunked[key], whole[key], rtol=0, atol=1e-12)
    singles = [case_curves(probs[i : i + 1], truth[i : i + 1], loss="fnr", num_levels=101) for i in range(5)]
    for key in whole:
        assert torch.equal(torch.cat([s[key] for s in singles]), chunked[key])  # bitwise


def test_worked_example_fnr_fdr_and_empty_structure():
    probs = torch.tensor([[[0.9, 0.6, 0.2, 0.1]], [[0.5, 0.5, 0.5, 0.5]]])
    truth = torch.tensor([[[1.0, 1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]])
    out = case_curves(probs, truth, num_levels=11)
    # case 0: 3 positives, masks at t = 0.5 keep {0.9, 0.6}: FNR 1/3; case 1 has no positive: FNR 0 at every level
    assert out["loss"][0, 0, 5].item() == pytest.approx(1 / 3)
    assert torch.equal(out["loss"][1, 0], torch.zeros(11, dtype=torch.float64))
    fdr = case_curves(probs, truth, loss="fdr", num_levels=11)["loss"]
    assert fdr[0, 0, 0].item() == pytest.approx(0.25) and fdr[1, 0, 5].item() == 1.0 and fdr[1, 0, 6].item() == 0.0


def test_levels_and_devices():
    assert threshold_levels(3).tolist() == [0.0, 0.5, 1.0] and threshold_levels().dtype == torch.float64
    assert threshold_levels()[-1].item() == 1.0 and threshold_levels().numel() == 1001
    levels = threshold_levels(1001)
    torch.testing.assert_close(levels, torch.linspace(0, 1, 1001, dtype=torch.float64), rtol=0, atol=1e-15)
    assert levels[600].item() == 0.6 and levels[300].item() == 0.3 and bool((levels.diff() > 0).all())
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        probs = torch.rand(2, 1, 8, 8, device=device)
        out = case_curves(probs, (probs > 0.5).float(), num_levels=11)
        assert out["loss"].device.type == device


@pytest.mark.parametrize(
    ("probs", "truth", "kwargs", "match"),
    [
        (torch.full((1, 1, 3), 1.5), torch.zeros(1, 1, 3), {}, "probs"),
        (torch.full((1, 1, 3), float("nan")), torch.zeros(1, 1, 3), {}, "finite"),
        (torch.zeros(1, 1, 3), torch.full((1, 1, 3), -0.1), {}, "truth"),
        (torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), {}, "shape"),
        (torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 2, 3), {}, "floating"),
        (torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), {"loss": "fpr"}, "loss"),
        (torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), {"num_levels": 1}, "num_levels"),
    ],
)
def test_bad_inputs_raise_one_line_errors(probs, truth, kwargs, match):
    with pytest.raises(ValueError, match=match):
        case_curves(probs, truth, **kwargs)


def test_bad_types_raise():
    with pytest.raises(TypeError, match="truth"):
        case_curves(torch.zeros(1, 1, 3), [0, 0, 0])
    with pytest.raises(TypeError, match="include_background"):
        case_curves(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), include_background=1)
    with pytest.raises(ValueError, match="loss"):
        monotone_upper(torch.zeros(3), loss="x")
