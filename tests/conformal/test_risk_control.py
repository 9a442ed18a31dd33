"""CRC / LTT: index choice against brute force, the Hoeffding–Bentkus p-value against its formula, the fitted
thresholds, the streaming metric, and validity over repeated calibration/test splits with known truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from softlabels.conformal import (
    ConformalThresholds,
    SegmentationRiskControl,
    case_curves,
    crc_index,
    fit_thresholds,
    hoeffding_bentkus_pvalue,
    ltt_index,
    threshold_levels,
)
from softlabels.conformal.risk_curves import monotone_upper

# ---------------------------------------------------------------- p-value and index choice against brute force


def hb_direct(r, n, alpha):
    """The Hoeffding–Bentkus p-value of Learn then Test, written out with math and scipy."""
    a = min(r, alpha)
    h = (a * math.log(a / alpha) if a > 0 else 0.0) + (1 - a) * math.log((1 - a) / (1 - alpha))
    return min(math.exp(-n * h), math.e * binom.cdf(math.ceil(n * r - 1e-9), n, alpha))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=20),
    st.integers(1, 2000),
    st.floats(0.01, 0.5),
)
def test_hb_pvalue_matches_formula_and_is_monotone(risks, n, alpha):
    r = torch.tensor(sorted(risks), dtype=torch.float64)
    p = hoeffding_bentkus_pvalue(r, n, alpha)
    np.testing.assert_allclose(p.numpy(), [hb_direct(x, n, alpha) for x in r.tolist()], rtol=1e-12, atol=0)
    assert bool((p.diff() >= 0).all()) and bool((p >= 0).all()) and bool((p <= 1).all())


def test_hb_pvalue_known_values():
    p = hoeffding_bentkus_pvalue(torch.tensor([0.0, 0.05, 0.1], dtype=torch.float64), 100, 0.1)
    assert p[0].item() == pytest.approx(0.9**100)  # R̂ = 0: Hoeffding (1 − α)^n beats e·(1 − α)^n
    assert p[1].item() == pytest.approx(math.e * binom.cdf(5, 100, 0.1))
    assert p[2].item() == 1.0  # R̂ = α: Hoeffding gives 1, e·P(Bin ≤ 10) > 1


def brute_crc(risk, n, alpha, loss, bound=1.0):
    out = []
    for row in risk.tolist():
        ok = [g for g, r in enumerate(row) if n / (n + 1) * r + bound / (n + 1) <= alpha]
        out.append(None if not ok else (max(ok) if loss == "fnr" else min(ok)))
    return out


def brute_ltt(risk, n, alpha, delta, loss):
    out = []
    for row in risk.tolist():
        order = range(len(row)) if loss == "fnr" else range(len(row) - 1, -1, -1)
        last = None
        for g in order:
            if hb_direct(row[g], n, alpha) > delta:
                break
            last = g
        out.append(last)
    return out


@st.composite
def risk_curves(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    k, g = draw(st.integers(1, 4)), draw(st.integers(2, 60))
    steps = rng.exponential(size=(k, g)) * (rng.random((k, g)) < 0.6)  # flat stretches and jumps
    curve = np.cumsum(steps, 1)
    curve = curve / np.maximum(curve[:, -1:], 1e-12) * rng.uniform(0.05, 1.0, size=(k, 1))
    curve[:, 0] = 0.0 if draw(st.booleans()) else curve[:, 0]
    loss = draw(st.sampled_from(["fnr", "fdr"]))
    risk = torch.tensor(curve if loss == "fnr" else curve[:, ::-1].copy(), dtype=torch.float64)
    return risk, draw(st.integers(5, 500)), draw(st.sampled_from([0.05, 0.1, 0.2, 0.3])), loss


@settings(max_examples=50, deadline=None)
@given(risk_curves())
def test_crc_index_equals_brute_force(case):
    risk, n, alpha, loss = case
    expected = brute_crc(risk, n, alpha, loss)
    if None in expected:
        with pytest.raises(ValueError, match=f"structure {expected.index(None)}"):
            crc_index(risk, n, alpha, loss=loss)
    else:
        index = crc_index(risk, n, alpha, loss=loss)
        assert index.dtype == torch.int64 and index.tolist() == expected


@settings(max_examples=50, deadline=None)
@given(risk_curves(), st.sampled_from([0.05, 0.1, 0.2]))
def test_ltt_index_equals_brute_force(case, delta):
    risk, n, alpha, loss = case
    expected = brute_ltt(risk, n, alpha, delta, loss)
    if None in expected:
        with pytest.raises(ValueError, match="safest level"):
            ltt_index(risk, n, alpha, delta, loss=loss)
    else:
        assert ltt_index(risk, n, alpha, delta, loss=loss).tolist() == expected


def test_ltt_stops_at_the_first_non_rejection_from_the_safest_level():
    # level 2 is not rejected; levels 3, 4 would be, but fixed-sequence testing has stopped
    risk = torch.tensor([[0.0, 0.01, 0.5, 0.0, 0.0]], dtype=torch.float64)
    assert ltt_index(risk, 1000, 0.1, 0.1).tolist() == [1]
    assert ltt_index(risk.flip(-1), 1000, 0.1, 0.1, loss="fdr").tolist() == [3]


def test_crc_errors_name_n_alpha_and_the_structure():
    risk = torch.tensor([[0.0, 0.1], [0.5, 0.6]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"structure 1 .*`alpha`=0\.1 with `n`=100"):
        crc_index(risk, 100, 0.1)
    with pytest.raises(ValueError, match="structure 0"):  # B/(n+1) = 1/6 > α
        crc_index(torch.zeros(1, 3), 5, 0.1)
    with pytest.raises(ValueError, match=r"non-increasing .*monotone_upper"):
        crc_index(torch.tensor([[0.1, 0.3, 0.0]]), 100, 0.1, loss="fdr")
    with pytest.raises(ValueError, match="non-decreasing"):
        crc_index(torch.tensor([[0.0, 0.3, 0.1]]), 100, 0.1)
    with pytest.raises(ValueError, match="`risk`"):
        crc_index(torch.tensor([[0.0, 1.5]]), 100, 0.1)
    for bad in ({"n": 0}, {"alpha": 1.0}, {"alpha": True}):
        kwargs = {"n": 100, "alpha": 0.1} | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            crc_index(torch.zeros(1, 3), **kwargs)
    with pytest.raises(ValueError, match="delta"):
        ltt_index(torch.zeros(1, 3), 100, 0.1, 0.0)
    with pytest.raises(ValueError, match=r"safest level .* structure 0"):
        ltt_index(torch.zeros(1, 3), 10, 0.1, 0.1)  # 0.9^10 = 0.35 > δ


# ---------------------------------------------------------------- fitted thresholds


def test_fit_thresholds_fields_and_round_trip():
    risk = torch.tensor([[0.0, 0.02, 0.05, 0.2], [0.0, 0.01, 0.02, 0.03]], dtype=torch.float64)
    fitted = fit_thresholds(risk, 99, alpha=0.1, structures=("liver", "tumour"), channels=(1, 2), reference="union")
    levels = threshold_levels(4)
    idx = crc_index(risk, 99, 0.1)
    assert fitted.thresholds == tuple(levels[idx].tolist()) == (2 / 3, 1.0)
    assert fitted.calibration_risk == (0.05, 0.03) and fitted.delta is None and fitted.n_calibration == 99
    assert fitted.num_levels == 4 and fitted.procedure == "crc" and fitted.reference == "union"
    d = json.loads(json.dumps(fitted.to_dict()))
    assert d["kind"] == "segmentation_thresholds" and ConformalThresholds.from_dict(d) == fitted
    ltt = fit_thresholds(risk, 1000, alpha=0.1, procedure="ltt", delta=0.05)
    assert ltt.delta == 0.05 and ltt.structures == ("1", "2") and ltt.channels == (1, 2)
    assert ltt.thresholds == tuple(threshold_levels(4)[ltt_index(risk, 1000, 0.1, 0.05)].tolist())


def test_from_dict_and_construction_errors():
    fitted = fit_thresholds(torch.tensor([[0.0, 0.3]]), 99, alpha=0.1)
    d = fitted.to_dict()
    with pytest.raises(ValueError, match="kind"):
        ConformalThresholds.from_dict({**d, "kind": "classification_sets"})
    with pytest.raises(ValueError, match="missing keys \\['alpha'\\]"):
        ConformalThresholds.from_dict({k: v for k, v in d.items() if k != "alpha"})
    with pytest.raises(ValueError, match="unknown keys \\['extra'\\]"):
        ConformalThresholds.from_dict({**d, "extra": 1})
    with pytest.raises(ValueError, match="one entry per structure"):
        ConformalThresholds.from_dict({**d, "channels": [1, 2]})
    with pytest.raises(ValueError, match="procedure"):
        ConformalThresholds.from_dict({**d, "procedure": "rcps"})
    with pytest.raises(ValueError, match="structures"):
        fit_thresholds(torch.tensor([[0.0, 0.3]]), 99, alpha=0.1, structures=("a", "b"))


def test_masks_are_exact_against_float64_comparison():
    g = torch.Generator().manual_seed(0)
    fitted = ConformalThresholds((0.3, 0.7), ("1", "2"), (1, 2), "fnr", "crc", 0.1, None, 10, 11, (0.0, 0.0), "label")
    probs = torch.rand(4, 3, 5, 6, generator=g)
    for c, t in ((1, 0.3), (2, 0.7)):  # values at, just below and just above each threshold in float32
        t32 = torch.tensor(t, dtype=torch.float32)
        near = torch.stack([t32, torch.nextafter(t32, torch.tensor(0.0)), torch.nextafter(t32, torch.tensor(1.0))])
        probs[0, c, 0, :3] = near
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        x = probs.to(dtype)
        masks = fitted.masks(x)
        expected = torch.stack([x[:, 1].double() >= 0.3, x[:, 2].double() >= 0.7], 1)
        assert masks.dtype == torch.bool and masks.shape == (4, 2, 5, 6) and torch.equal(masks, expected)
    with pytest.raises(ValueError, match="channel 2"):
        fitted.masks(torch.rand(1, 2, 3))


def test_masks_agree_with_the_curves_the_threshold_was_fitted_on():
    g = torch.Generator().manual_seed(2)
    probs = torch.rand(6, 1, 9, 9, generator=g)
    truth = torch.bernoulli(probs, generator=g)
    curves = case_curves(probs, truth, num_levels=101)
    fitted = fit_thresholds(curves["loss"].mean(0), 6, alpha=0.3, channels=(0,))
    masks = fitted.masks(probs)[:, 0].double()
    g_hat = round(fitted.thresholds[0] * 100)
    fnr = 1 - (masks * truth[:, 0]).flatten(1).sum(1) / truth[:, 0].flatten(1).sum(1)
    torch.testing.assert_close(fnr, curves["loss"][:, 0, g_hat], rtol=0, atol=1e-12)
    torch.testing.assert_close(masks.flatten(1).sum(1), curves["volume"][:, 0, g_hat], rtol=0, atol=0)


# ---------------------------------------------------------------- the streaming metric


def _batch(seed, n=8, c=3, raters=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, c, 6, 5, 4, generator=g), 1)
    shape = (n, raters, c, 6, 5, 4) if raters else (n, c, 6, 5, 4)
    return probs, (torch.rand(shape, generator=g) < 0.3).double()


@pytest.mark.parametrize("loss", ["fnr", "fdr"])
def test_streaming_batches_equal_one_batch_exactly(loss):
    probs, truth = _batch(0, n=10, raters=2)
    one = SegmentationRiskControl(3, loss=loss, num_levels=201)
    one.update(probs, truth)
    many = SegmentationRiskControl(3, loss=loss, num_levels=201)
    for start, stop in ((0, 3), (3, 4), (4, 10)):
        many.update(probs[start:stop], truth[start:stop])
    a, b = one.compute(), many.compute()
    assert torch.equal(a["risk"], b["risk"]) and torch.equal(a["volume"], b["volume"]) and int(b["cases"]) == 10
    curves = case_curves(probs, truth, loss=loss, num_levels=201)
    torch.testing.assert_close(a["risk"], monotone_upper(curves["loss"], loss=loss).mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(a["volume"], curves["volume"].mean(0), rtol=0, atol=1e-9)
    assert one.fit(0.3) == many.fit(0.3)


def test_state_is_fixed_size_float64_int64_and_summed():
    metric = SegmentationRiskControl(3, num_levels=101)
    sizes = []
    for n in (1, 5):
        metric.update(*_batch(n, n=n))
        sizes.append({k: (v.shape, v.dtype) for k, v in metric.metric_state.items()})
    assert sizes[0] == sizes[1]
    assert sizes[0] == {
        "loss_sum": ((2, 101), torch.float64),
        "volume_sum": ((2, 101), torch.float64),
        "cases": ((), torch.int64),
    }
    assert all(fn.__name__ == "dim_zero_sum" for fn in metric._reductions.values())


def test_merge_and_distributed_sync_sum_the_states():
    probs, truth = _batch(3, n=8)
    whole, left, right = (SegmentationRiskControl(3, num_levels=51) for _ in range(3))
    whole.update(probs, truth)
    left.update(probs[:5], truth[:5])
    right.update(probs[5:], truth[5:])
    left.merge_state(right)
    torch.testing.assert_close(left.compute()["risk"], whole.compute()["risk"], rtol=0, atol=1e-12)
    # two processes holding the same state: the synced state is the sum, the mean risk is unchanged
    single = SegmentationRiskControl(3, num_levels=51)
    single.update(probs, truth)
    expected = single.compute()
    single._computed = None
    single.sync(dist_sync_fn=lambda x, group=None: [x, x.clone()], distributed_available=lambda: True)
    assert int(single.cases) == 16
    torch.testing.assert_close(single.loss_sum / 16, expected["risk"], rtol=0, atol=1e-12)
    single.unsync()
    assert int(single.cases) == 8


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_fit_and_errors():
    probs, truth = _batch(4, n=40, c=2)
    metric = SegmentationRiskControl(2, num_levels=101)
    metric.update(probs, truth)
    fitted = metric.fit(0.2, structures=("lesion",), reference="majority")
    direct = fit_thresholds(
        case_curves(probs, truth, num_levels=101)["loss"].mean(0), 40, alpha=0.2, channels=(1,), structures=("lesion",)
    )
    assert fitted.thresholds == direct.thresholds and fitted.channels == (1,) and fitted.reference == "majority"
    with pytest.raises(ValueError, match="2 channel"):
        metric.update(torch.rand(1, 3, 4), torch.rand(1, 3, 4))
    with pytest.raises(ValueError, match="at least one"):
        SegmentationRiskControl(2).compute()
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationRiskControl(0)
    with pytest.raises(ValueError, match="loss"):
        SegmentationRiskControl(2, loss="dice")
    assert SegmentationRiskControl(1).channels == (0,) and SegmentationRiskControl(
        3, include_background=True
    ).channels == (0, 1, 2)


# ---------------------------------------------------------------- validity with known truth


def _population(seed=0, cases=400, voxels=256):
    """Cases with foreground probabilities p* (case-dependent level) and truth drawn from p*; three models."""
    g = torch.Generator().manual_seed(seed)
    logit = 2.0 * torch.randn(cases, 1, voxels, generator=g) - 1.5 + 0.5 * torch.randn(cases, 1, 1, generator=g)
    truth = torch.bernoulli(torch.sigmoid(logit), generator=g)
    temperature = torch.where(torch.rand(cases, 1, 1, generator=g) < 0.5, 3.0, 1.0 / 3.0)
    models = {
        "calibrated": torch.sigmoid(logit),
        "logits_x3": torch.sigmoid(3.0 * logit),  # one monotone map for every voxel of every case
        "case_temperature": torch.sigmoid(logit * temperature),  # over- or under-confident, case by case
    }
    return truth, {name: case_curves(p.double(), truth, num_levels=1001) for name, p in models.items()}


def _split_weights(g, splits, cases, n, *, replace):
    """(splits, cases) averaging weights: calibration (n cases) and, without replacement, the test rest."""
    if replace:
        draw = torch.randint(0, cases, (splits, n), generator=g)
        cal = torch.zeros(splits, cases, dtype=torch.float64).scatter_add_(
            1, draw, torch.full((splits, n), 1.0 / n, dtype=torch.float64)
        )
        return cal, None
    perm = torch.argsort(torch.rand(splits, cases, generator=g), 1)
    cal = torch.zeros(splits, cases, dtype=torch.float64).scatter_(1, perm[:, :n], 1.0 / n)
    test = torch.zeros(splits, cases, dtype=torch.float64).scatter_(1, perm[:, n:], 1.0 / (cases - n))
    return cal, test


def test_validity_over_repeated_splits_with_known_truth():
    alpha, delta, n, splits = 0.1, 0.1, 200, 600
    _, curves = _population()
    g = torch.Generator().manual_seed(1)
    volume = {}
    for name, out in curves.items():
        loss, vol = out["loss"][:, 0], out["volume"][:, 0]
        cal, test = _split_weights(g, splits, loss.shape[0], n, replace=False)
        index = crc_index(cal @ loss, n, alpha)  # one row per split
        realized = (test @ loss).gather(1, index[:, None]).squeeze(1)
        assert alpha - 0.02 <= realized.mean().item() <= alpha, name  # CRC: E[FNR] ≤ α and tight
        volume[name] = (test @ vol).gather(1, index[:, None]).mean().item()
        # LTT: calibration drawn with replacement from the pool, whose own mean risk is the population risk
        cal, _ = _split_weights(g, splits, loss.shape[0], n, replace=True)
        chosen = ltt_index(cal @ loss, n, alpha, delta)
        violations = (loss.mean(0)[chosen] > alpha).double().mean().item()
        assert violations <= delta + 2 * math.sqrt(delta * (1 - delta) / splits), name
    # one monotone mis-calibration of all voxels keeps the family of masks {p >= t}: the same masks up to the grid;
    # a case-dependent mis-calibration changes which voxels a single threshold keeps: larger masks for the guarantee
    assert volume["logits_x3"] == pytest.approx(volume["calibrated"], rel=0.03)
    assert volume["case_temperature"] > 1.15 * volume["calibrated"]
