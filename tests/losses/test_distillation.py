import numpy as np
import pytest
import torch
import torch.nn.functional as F

from softlabels.losses import DistillationLoss
from softlabels.targets import self_teacher, virtual_teacher

from ._reference import log_softmax, np64, one_hot, soft_ce


def np_distill(z, q, t, alpha, temperature, mult, kappa=1.0):
    kl = (t * (np.log(t) - log_softmax(z / temperature))).sum(1)
    return (1 - alpha) * soft_ce(z, q) + alpha * mult * temperature**2 * kl / kappa


@pytest.mark.parametrize("shape", [(8, 5), (2, 5, 4, 3), (1, 5, 2, 3, 4)])
def test_regularisation_variant_matches_the_reference_formula(shape):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(shape, generator=g)
    labels = torch.randint(0, 5, shape[:1] + shape[2:], generator=g)
    teacher = virtual_teacher(labels, 5, temperature=6.0)
    expected = np_distill(np64(logits), one_hot(labels.numpy(), 5), np64(teacher), 0.95, 1.0, 1.0, kappa=5.0)
    got = DistillationLoss(0.95, reduction="none")(logits, labels, teacher=teacher)  # default: the authors' ÷ C
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    expected = np_distill(np64(logits), one_hot(labels.numpy(), 5), np64(teacher), 0.95, 1.0, 1.0)
    got = DistillationLoss(0.95, kl_reduction="batchmean", reduction="none")(logits, labels, teacher=teacher)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
def test_mean_kl_reduction_reproduces_pytorch_mean_of_the_reference_code():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 10, generator=g)
    labels = torch.randint(0, 10, (16,), generator=g)
    teacher = virtual_teacher(labels, 10, temperature=40.0)
    # the reference: (1 − α)·CE + α·m·nn.KLDivLoss()(log_softmax(z), t), PyTorch's default 'mean' (÷ N·C)
    reference = 0.05 * F.cross_entropy(logits, labels) + 0.95 * torch.nn.KLDivLoss()(F.log_softmax(logits, 1), teacher)
    got = DistillationLoss(0.95, kl_reduction="mean")(logits, labels, teacher=teacher)
    torch.testing.assert_close(got, reference)
    batchmean = DistillationLoss(1.0, kl_reduction="batchmean")(logits, labels, teacher=teacher)
    torch.testing.assert_close(
        DistillationLoss(1.0, kl_reduction="mean")(logits, labels, teacher=teacher), batchmean / 10
    )


def test_self_variant_softens_the_student_and_scales_by_t_squared():
    g = torch.Generator().manual_seed(2)
    logits = 2 * torch.randn(6, 4, generator=g)
    labels = torch.randint(0, 4, (6,), generator=g)
    teacher_logits = 2 * torch.randn(6, 4, generator=g)
    teacher = self_teacher(teacher_logits, temperature=6.0)
    loss = DistillationLoss(0.95, temperature=6.0, multiplier=2.0)(logits, labels, teacher=teacher)
    expected = np_distill(np64(logits), one_hot(labels.numpy(), 4), np64(teacher), 0.95, 6.0, 2.0, kappa=4.0).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # zero KL when the softened student equals the teacher: only the CE part is left
    same = DistillationLoss(0.5, temperature=6.0)(teacher_logits, labels, teacher=teacher)
    torch.testing.assert_close(same, 0.5 * F.cross_entropy(teacher_logits, labels))


def test_gradient_and_bad_inputs():
    logits = torch.randn(3, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2])
    teacher = virtual_teacher(labels, 4)
    DistillationLoss()(logits, labels, teacher=teacher).backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"`teacher` of DistillationLoss must be a float distribution .*got \(3, 3\)"):
        DistillationLoss()(logits, labels, teacher=teacher[:, :3])
    with pytest.raises(ValueError, match=r"`teacher` of DistillationLoss must sum to 1"):
        DistillationLoss()(logits, labels, teacher=2 * teacher)
    with pytest.raises(ValueError, match=r"`alpha` of DistillationLoss must be a float in \[0, 1\]; got 1.5"):
        DistillationLoss(1.5)
    with pytest.raises(ValueError, match=r"`temperature` of DistillationLoss must be a finite float > 0; got 0"):
        DistillationLoss(temperature=0)
    with pytest.raises(ValueError, match=r"`kl_reduction` of DistillationLoss .*got 'sum'"):
        DistillationLoss(kl_reduction="sum")
