"""Streaming temperature scaling: recovery of a known T, streaming == concatenation, save/load, bad inputs."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from softlabels.calibration import TemperatureScaledModel, TemperatureScaler


def np_nll(logits: np.ndarray, target: np.ndarray, temperature: float, ignore_index: int | None = None) -> float:
    """Float64 NumPy mean NLL of softmax(logits / T) over kept voxels; hard (N, *S) or soft (N, C, *S) target."""
    c = logits.shape[1]
    z = np.moveaxis(logits.astype(np.float64), 1, -1).reshape(-1, c) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    if target.shape == logits.shape:
        q = np.moveaxis(target.astype(np.float64), 1, -1).reshape(-1, c)
        return float(-(q * logp).sum() / len(q))
    y = target.reshape(-1)
    keep = np.ones_like(y, dtype=bool) if ignore_index is None else y != ignore_index
    return float(-logp[keep, y[keep]].mean())


def np_best_temperature(logits: np.ndarray, target: np.ndarray, ignore_index: int | None = None) -> float:
    res = minimize_scalar(
        lambda t: np_nll(logits, target, math.exp(t), ignore_index),
        bounds=(math.log(0.05), math.log(20.0)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return math.exp(res.x)


def sample(shape: tuple[int, ...], t_true: float, seed: int, scale: float = 2.5) -> tuple[torch.Tensor, torch.Tensor]:
    """True logits z ~ scale·N(0,1), labels ~ softmax(z); observed logits z·T_true (mis-calibrated by T_true)."""
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(shape, generator=g)
    probs = torch.softmax(z, dim=1).movedim(1, -1).reshape(-1, shape[1])
    labels = torch.multinomial(probs, 1, generator=g).reshape((shape[0], *shape[2:]))
    return z * t_true, labels


def batches_3d(t_true: float, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    logits, labels = sample((12, 3, 16, 16, 16), t_true, seed)
    return [(logits[i : i + 2], labels[i : i + 2]) for i in range(0, 12, 2)]


@pytest.mark.parametrize("t_true", [0.5, 2.0])
def test_recovers_temperature_classification(t_true):
    logits, labels = sample((30000, 5), t_true, seed=1)
    batches = [(logits[i : i + 5000], labels[i : i + 5000]) for i in range(0, 30000, 5000)]
    scaler = TemperatureScaler().fit(batches)
    assert scaler.converged_
    assert abs(scaler.temperature_ / t_true - 1) < 0.02
    # independent float64 NumPy minimiser on the same data
    best = np_best_temperature(logits.numpy(), labels.numpy())
    assert scaler.temperature_ == pytest.approx(best, rel=1e-5)
    assert scaler.nll_ == pytest.approx(np_nll(logits.numpy(), labels.numpy(), best), rel=1e-9)


@pytest.mark.parametrize("t_true", [0.5, 2.0])
def test_recovers_temperature_3d_segmentation_stream(t_true):
    batches = batches_3d(t_true)
    scaler = TemperatureScaler().fit(batches)
    assert scaler.converged_ and scaler.n_passes_ < 20
    assert abs(scaler.temperature_ / t_true - 1) < 0.02
    logits = torch.cat([b[0] for b in batches]).numpy()
    labels = torch.cat([b[1] for b in batches]).numpy()
    assert np_nll(logits, labels, scaler.temperature_) <= np_nll(logits, labels, 1.0)
    for x, _ in batches:
        assert torch.equal(scaler(x).argmax(1), x.argmax(1))


def test_gradient_is_tight_at_the_fit():
    batches = batches_3d(2.0, seed=3)
    scaler = TemperatureScaler().fit(batches, tol=1e-10)
    t = scaler.log_temperature.detach().double().requires_grad_(True)
    total = sum(torch.nn.functional.cross_entropy(x.double() / t.exp(), y, reduction="sum") for x, y in batches)
    (grad,) = torch.autograd.grad(total / sum(y.numel() for _, y in batches), t)
    assert abs(float(grad)) < 1e-6  # float32 storage of log T limits this, not the search


def test_streaming_equals_concatenation():
    batches = batches_3d(0.5, seed=4)
    streamed = TemperatureScaler().fit(batches).temperature_
    whole = TemperatureScaler().fit([(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))])
    assert streamed == pytest.approx(whole.temperature_, abs=1e-6)


def test_dataloader_input():
    logits, labels = sample((4000, 4), 2.0, seed=5)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(logits, labels), batch_size=500)
    from_loader = TemperatureScaler().fit(loader).temperature_
    assert from_loader == pytest.approx(TemperatureScaler().fit([(logits, labels)]).temperature_, abs=1e-6)


def test_ignore_index_and_soft_targets_match_numpy():
    logits, labels = sample((4, 3, 8, 8, 8), 2.0, seed=6)
    labels[:, :2] = 255
    scaler = TemperatureScaler().fit([(logits[:2], labels[:2]), (logits[2:], labels[2:])], ignore_index=255)
    best = np_best_temperature(logits.numpy(), labels.numpy(), ignore_index=255)
    assert scaler.temperature_ == pytest.approx(best, rel=1e-5)
    soft = torch.softmax(logits / 1.7 + 0.3 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0)), 1)
    fitted = TemperatureScaler().fit([(logits, soft)]).temperature_
    assert fitted == pytest.approx(np_best_temperature(logits.numpy(), soft.numpy()), rel=1e-5)


def test_state_dict_round_trip_of_wrapper():
    model = torch.nn.Conv3d(1, 3, 1)
    scaler = TemperatureScaler().fit(batches_3d(2.0))
    buffer = io.BytesIO()
    torch.save(TemperatureScaledModel(model, scaler).state_dict(), buffer)
    buffer.seek(0)
    restored = TemperatureScaledModel(torch.nn.Conv3d(1, 3, 1), TemperatureScaler())
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.scaler.temperature_ == scaler.temperature_
    x = torch.randn(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(restored(x), model(x) / scaler.temperature_)
    assert "scaler.log_temperature" in restored.state_dict() and "model.weight" in restored.state_dict()


def test_bound_reached_warns_and_max_passes_warns():
    logits, labels = sample((2000, 3), 1.0, seed=7)
    with pytest.warns(RuntimeWarning, match="outside `bounds`"):
        scaler = TemperatureScaler().fit([(logits * 100, labels)], bounds=(0.05, 2.0))
    assert scaler.temperature_ == pytest.approx(2.0)
    with pytest.warns(RuntimeWarning, match="no convergence"):
        TemperatureScaler().fit([(logits * 3, labels)], max_passes=1)


def _bad(match, err=ValueError, **kwargs):
    return pytest.param(kwargs, err, match, id=match[:20])


ok_logits = torch.randn(2, 3, 4, 4)
ok_target = torch.zeros(2, 4, 4, dtype=torch.long)


@pytest.mark.parametrize(
    ("batches", "err", "match"),
    [
        ([(torch.full((2, 3), math.nan), torch.zeros(2, dtype=torch.long))], ValueError, "must be finite; got 6 NaN"),
        ([(torch.full((2, 3), math.inf), torch.zeros(2, dtype=torch.long))], ValueError, "NaN/inf"),
        ([(ok_logits, torch.zeros(2, 4, 5, dtype=torch.long))], ValueError, r"got \(2, 4, 5\)"),
        ([(ok_logits, torch.full((2, 4, 4), 3))], ValueError, r"\[0, 2\].*got values in \[3, 3\]"),
        ([(ok_logits, torch.full((2, 4, 4), -1))], ValueError, r"got values in \[-1, -1\]"),
        ([], ValueError, "at least one"),
        ([(ok_logits, ok_target.float())], TypeError, "integer dtype"),
        ([(ok_logits.long(), ok_target)], TypeError, "floating tensor"),
        ([(torch.randn(2, 1), torch.zeros(2, dtype=torch.long))], ValueError, "C >= 2"),
        ([ok_logits], TypeError, r"\(logits, target\) pairs"),
        ([(ok_logits.numpy(), ok_target)], TypeError, "must be a torch.Tensor; got ndarray"),
        ([(ok_logits, -torch.ones(2, 3, 4, 4))], ValueError, ">= 0"),
    ],
)
def test_bad_batches_raise(batches, err, match):
    with pytest.raises(err, match=match):
        TemperatureScaler().fit(batches)


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match=r"re-iterable.*generator"):
        TemperatureScaler().fit(b for b in [(ok_logits, ok_target)])
    with pytest.raises(TypeError, match="iterable of"):
        TemperatureScaler().fit(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="all equal `ignore_index`=0"):
        TemperatureScaler().fit([(ok_logits, ok_target)], ignore_index=0)
    with pytest.raises(ValueError, match="hard targets only"):
        TemperatureScaler().fit([(ok_logits, torch.ones(2, 3, 4, 4) / 3)], ignore_index=0)
    with pytest.raises(ValueError, match=r"`max_passes`.*got 0"):
        TemperatureScaler().fit([(ok_logits, ok_target)], max_passes=0)
    with pytest.raises(ValueError, match=r"`tol`.*got -1"):
        TemperatureScaler().fit([(ok_logits, ok_target)], tol=-1.0)
    with pytest.raises(ValueError, match=r"`bounds`.*got \(2.0, 1.0\)"):
        TemperatureScaler().fit([(ok_logits, ok_target)], bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"`temperature`.*got 0"):
        TemperatureScaler(0.0)
    with pytest.raises(TypeError, match="`scaler` of TemperatureScaledModel"):
        TemperatureScaledModel(torch.nn.Identity(), torch.nn.Identity())  # type: ignore[arg-type]
