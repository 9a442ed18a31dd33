"""Streaming vector scaling: recovery of known per-class scales and biases, streaming == one batch, save/load."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from softlabels.calibration import TemperatureScaledModel, VectorScaler

W_TRUE = torch.tensor([0.5, 1.5, 1.0])
B_TRUE = torch.tensor([0.0, 0.8, -0.6])


def sample(shape, seed):
    """Observed logits z; labels drawn from softmax(w* ⊙ z + b*) along axis 1."""
    g = torch.Generator().manual_seed(seed)
    z = 2.0 * torch.randn(shape, generator=g)
    view = (1, 3) + (1,) * (len(shape) - 2)
    true = z * W_TRUE.view(view) + B_TRUE.view(view)
    probs = torch.softmax(true, 1).movedim(1, -1).reshape(-1, 3)
    labels = torch.multinomial(probs, 1, generator=g).reshape((shape[0], *shape[2:]))
    return z, labels


def np_fit(z, y):
    z = z.astype(np.float64)

    def nll(theta):
        s = z * theta[:3] + theta[3:]
        s = s - s.max(1, keepdims=True)
        return -(s[np.arange(len(y)), y] - np.log(np.exp(s).sum(1))).mean()

    return minimize(nll, np.r_[np.ones(3), np.zeros(3)], method="BFGS", options={"gtol": 1e-10}).x


def test_recovers_known_scales_and_biases_classification():
    z, labels = sample((60000, 3), 0)
    batches = [(z[i : i + 10000], labels[i : i + 10000]) for i in range(0, 60000, 10000)]
    scaler = VectorScaler(3).fit(batches)
    assert scaler.converged_
    torch.testing.assert_close(scaler.weight.detach(), W_TRUE, atol=0.05, rtol=0.05)
    bias = scaler.bias.detach()  # biases are defined up to a common shift
    torch.testing.assert_close(bias - bias.mean(), B_TRUE - B_TRUE.mean(), atol=0.05, rtol=0.05)
    theta = np_fit(z.numpy(), labels.numpy())  # independent float64 optimiser on the same data
    np.testing.assert_allclose(scaler.weight.detach().numpy(), theta[:3], atol=1e-4)
    np.testing.assert_allclose((bias - bias.mean()).numpy(), theta[3:] - theta[3:].mean(), atol=1e-4)


def test_streamed_3d_segmentation_equals_one_batch_and_ignores_voxels():
    z, labels = sample((6, 3, 8, 8, 8), 1)
    labels[0] = 255
    streamed = VectorScaler(3).fit([(z[i : i + 2], labels[i : i + 2]) for i in range(0, 6, 2)], ignore_index=255)
    whole = VectorScaler(3).fit([(z[1:], labels[1:])])
    torch.testing.assert_close(streamed.weight, whole.weight, atol=1e-5, rtol=0)
    assert streamed.nll_ == pytest.approx(whole.nll_, rel=1e-9)


def test_soft_targets_and_save_load_with_the_model():
    z, _ = sample((2000, 3), 2)
    soft = torch.softmax(z * W_TRUE + B_TRUE, 1)
    scaler = VectorScaler(3).fit([(z, soft)])
    torch.testing.assert_close(scaler.weight.detach(), W_TRUE, atol=0.02, rtol=0.02)
    model = TemperatureScaledModel(torch.nn.Identity(), scaler)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = TemperatureScaledModel(torch.nn.Identity(), VectorScaler(3))
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(restored(z[:5]), model(z[:5]))


def test_bad_inputs_raise():
    scaler = VectorScaler(3)
    with pytest.raises(ValueError, match=r"`num_classes` of VectorScaler must be an int >= 2; got 1"):
        VectorScaler(1)
    with pytest.raises(ValueError, match=r"must have C=3 classes; got 2"):
        scaler.fit([(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))])
    with pytest.raises(TypeError, match=r"must be re-iterable"):
        scaler.fit(iter([(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))]))
    with pytest.raises(ValueError, match=r"must be finite"):
        scaler.fit([(torch.full((4, 3), float("nan")), torch.zeros(4, dtype=torch.long))])
    with pytest.raises(ValueError, match=r"\(N, C=3, \*spatial\); got \(2, 4\)"):
        scaler(torch.zeros(2, 4))
