import numpy as np
import pytest
import torch
import torch.nn.functional as F

from softlabels.losses import MarginLoss

from ._reference import as_dist, np64, soft_ce


def np_mbls(z, q, margin, lam):
    gaps = z.max(1, keepdims=True) - z
    return soft_ce(z, q) + lam * np.maximum(gaps - margin, 0).mean(1)


def test_penalty_is_zero_when_all_gaps_are_within_the_margin():
    g = torch.Generator().manual_seed(0)
    logits = torch.rand(5, 4, 3, 3, generator=g)  # gaps < 1 <= m
    labels = torch.randint(0, 4, (5, 3, 3), generator=g)
    torch.testing.assert_close(
        MarginLoss(margin=1.0, lambda_margin=10.0)(logits, labels), F.cross_entropy(logits, labels)
    )


def test_penalty_is_the_mean_over_all_entries_including_the_argmax():
    logits = torch.tensor([[12.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1])
    ce = F.cross_entropy(logits, labels)
    # distances: (0, 12, 11) and (0, 0, 0); above m = 10: (0, 2, 1), mean over the 6 entries = 0.5
    got = MarginLoss(margin=10.0, lambda_margin=0.2)(logits, labels)
    assert (got - ce).item() == pytest.approx(0.2 * 0.5, rel=1e-6)


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4, 5), (2, 3, 2, 3, 4)])
@pytest.mark.parametrize("soft", [False, True])
def test_matches_reference(shape, soft):
    g = torch.Generator().manual_seed(1)
    logits = 8 * torch.randn(shape, generator=g)
    target = (
        torch.softmax(torch.randn(shape, generator=g), 1)
        if soft
        else torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    )
    got = MarginLoss(margin=5.0, lambda_margin=0.1, reduction="none")(logits, target)
    np.testing.assert_allclose(got.numpy(), np_mbls(np64(logits), as_dist(target, shape[1]), 5.0, 0.1), rtol=1e-5)


def test_ignore_index_and_gradient():
    g = torch.Generator().manual_seed(2)
    logits = (8 * torch.randn(2, 3, 4, 4, generator=g)).requires_grad_(True)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    labels[0] = 255
    loss = MarginLoss(margin=5.0, ignore_index=255)(logits, labels)
    expected = np_mbls(np64(logits[1:]), as_dist(labels[1:], 3), 5.0, 0.1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0].abs().sum() == 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"`margin` of MarginLoss must be a finite float >= 0; got -1"):
        MarginLoss(margin=-1)
    with pytest.raises(TypeError, match=r"`lambda_margin` of MarginLoss must be a float; got str"):
        MarginLoss(lambda_margin="0.1")
