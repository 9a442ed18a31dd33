import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from softlabels.losses import FLSD53_BANDS, FocalLoss

from ._reference import as_dist, log_softmax, np64


def np_focal(z, q, gamma, bands=()):
    logp = log_softmax(z)
    p = np.exp(logp)
    g = np.full_like(p, gamma)
    for threshold, value in reversed(bands):
        g = np.where(p < threshold, value, g)
    return -(q * (1 - p) ** g * logp).sum(1)


def test_gamma_zero_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 5, 5, generator=g)
    labels = torch.randint(0, 3, (4, 5, 5), generator=g)
    torch.testing.assert_close(FocalLoss(0.0)(logits, labels), F.cross_entropy(logits, labels))


def test_hand_worked_values():
    # p_target = 0.5: FL_γ = 0.5^γ · log 2
    logits = torch.zeros(1, 2)
    for gamma in (1.0, 2.0, 3.0):
        assert FocalLoss(gamma)(logits, torch.tensor([1])).item() == pytest.approx(0.5**gamma * math.log(2))
    # p_target = 0.1 (< 0.2): FLSD-53 uses γ = 5; p = 0.3: γ = 3; p = 0.9: the base γ
    for p, gamma in ((0.1, 5.0), (0.3, 3.0), (0.9, 3.0)):
        z = torch.tensor([[math.log(p), math.log(1 - p)]])
        got = FocalLoss(3.0, gamma_bands=FLSD53_BANDS)(z, torch.tensor([0])).item()
        assert got == pytest.approx(-((1 - p) ** gamma) * math.log(p), rel=1e-5)
    # a base γ different from the bands shows which band is used at p = 0.5 (the upper band edge is open)
    z = torch.zeros(1, 2)
    assert FocalLoss(1.0, gamma_bands=FLSD53_BANDS)(z, torch.tensor([0])).item() == pytest.approx(0.5 * math.log(2))


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("bands", [(), FLSD53_BANDS])
def test_matches_reference_2d_3d_classification(soft, bands):
    g = torch.Generator().manual_seed(1)
    for shape in ((8, 4), (2, 4, 5, 6), (2, 4, 3, 4, 5)):
        logits = 2 * torch.randn(shape, generator=g)
        target = (
            torch.softmax(torch.randn(shape, generator=g), 1)
            if soft
            else torch.randint(0, 4, shape[:1] + shape[2:], generator=g)
        )
        got = FocalLoss(2.0, gamma_bands=bands, reduction="none")(logits, target)
        np.testing.assert_allclose(
            got.numpy(), np_focal(np64(logits), as_dist(target, 4), 2.0, bands), rtol=1e-5, atol=1e-6
        )


def test_gradients_are_finite_for_saturated_logits():
    logits = torch.tensor([[40.0, -40.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    for loss_fn in (FocalLoss(3.0), FocalLoss(3.0, gamma_bands=FLSD53_BANDS), FocalLoss(0.0)):
        loss = loss_fn(logits, torch.tensor([0, 2]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
        logits.grad = None


def test_depth_one_agrees_with_2d():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    loss = FocalLoss(3.0, gamma_bands=FLSD53_BANDS)
    torch.testing.assert_close(loss(logits.unsqueeze(2), labels.unsqueeze(1)), loss(logits, labels))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"`gamma` of FocalLoss must be a finite float >= 0; got -1"):
        FocalLoss(-1)
    with pytest.raises(ValueError, match=r"strictly increasing thresholds in \(0, 1\]"):
        FocalLoss(gamma_bands=((0.5, 3.0), (0.2, 5.0)))
    with pytest.raises(TypeError, match=r"`gamma_bands` of FocalLoss must be a sequence of \(threshold, gamma\)"):
        FocalLoss(gamma_bands=(0.2, 5.0))
