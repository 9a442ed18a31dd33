import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.losses import KLDivLoss, SoftCrossEntropyLoss

from ._reference import as_dist, log_softmax, np64, soft_ce, weighted_mean

SHAPES = [(6, 4), (2, 3, 5, 6), (2, 3, 3, 4, 5)]


def random_case(shape, seed, soft):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(shape, generator=g)
    if soft:
        target = torch.softmax(2 * torch.randn(shape, generator=g), dim=1)
    else:
        target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return logits, target


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("soft", [False, True])
def test_soft_ce_matches_reference(shape, soft):
    logits, target = random_case(shape, 0, soft)
    expected = soft_ce(np64(logits), as_dist(target, shape[1]))
    got = SoftCrossEntropyLoss(reduction="none")(logits, target)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert SoftCrossEntropyLoss()(logits, target).item() == pytest.approx(expected.mean(), rel=1e-5)
    assert SoftCrossEntropyLoss(reduction="sum")(logits, target).item() == pytest.approx(expected.sum(), rel=1e-5)


def test_hard_ce_equals_torch_cross_entropy_with_ignore_index():
    logits, target = random_case((2, 3, 5, 6), 1, soft=False)
    target[0, :2] = 255
    ours = SoftCrossEntropyLoss(ignore_index=255)(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, ignore_index=255))


def test_voxel_weights_and_keep_mask():
    logits, target = random_case((2, 3, 5, 6), 2, soft=True)
    g = torch.Generator().manual_seed(3)
    weight = torch.rand(2, 5, 6, generator=g)
    keep = torch.rand(2, 5, 6, generator=g) > 0.3
    per_voxel = soft_ce(np64(logits), np64(target))
    w = np64(weight) * keep.numpy()
    got = SoftCrossEntropyLoss()(logits, target, weight=weight, keep_mask=keep)
    assert got.item() == pytest.approx(weighted_mean(per_voxel, w), rel=1e-5)
    only_keep = SoftCrossEntropyLoss()(logits, target, keep_mask=keep)
    assert only_keep.item() == pytest.approx(per_voxel[keep.numpy()].mean(), rel=1e-5)
    # MONAI-style channel axis of size 1 on the voxel maps is accepted
    same = SoftCrossEntropyLoss()(logits, target, weight=weight.unsqueeze(1), keep_mask=keep.unsqueeze(1))
    torch.testing.assert_close(same, got)


def test_no_kept_voxel_gives_zero_with_gradient():
    logits, target = random_case((1, 2, 3, 3), 4, soft=False)
    logits.requires_grad_(True)
    loss = SoftCrossEntropyLoss()(logits, target, keep_mask=torch.zeros(1, 3, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_channel_first_hard_target_as_monai_collates_it():
    logits, target = random_case((2, 3, 4, 4), 5, soft=False)
    torch.testing.assert_close(SoftCrossEntropyLoss()(logits, target.unsqueeze(1)), F.cross_entropy(logits, target))


def test_log_softmax_is_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    loss = SoftCrossEntropyLoss()(logits, torch.tensor([[0.5, 0.25, 0.25]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(-(0.25 * -2e4 + 0.25 * -1e4), rel=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_kl_is_zero_at_the_target_and_ce_minus_entropy(shape):
    _, target = random_case(shape, 6, soft=True)
    assert abs(KLDivLoss()(target.log(), target).item()) < 1e-6
    logits, _ = random_case(shape, 7, soft=True)
    q = np64(target)
    entropy = -(q * np.log(q)).sum(1)
    expected = soft_ce(np64(logits), q) - entropy
    np.testing.assert_allclose(KLDivLoss(reduction="none")(logits, target).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_kl_of_hard_labels_is_cross_entropy_and_handles_zero_probabilities():
    logits, labels = random_case((4, 3), 8, soft=False)
    torch.testing.assert_close(KLDivLoss()(logits, labels), F.cross_entropy(logits, labels))
    onehot = F.one_hot(labels, 3).float()  # 0·log 0 = 0
    torch.testing.assert_close(KLDivLoss()(logits, onehot), F.cross_entropy(logits, labels))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from(SHAPES),
    soft=st.booleans(),
    scale=st.sampled_from([0.1, 3.0, 50.0]),
)
def test_finite_with_gradients_for_random_inputs(seed, shape, soft, scale):
    logits, target = random_case(shape, seed, soft)
    for loss_fn in (SoftCrossEntropyLoss(), KLDivLoss()):
        z = (scale * logits).requires_grad_(True)
        loss = loss_fn(z, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
        # the gradient of soft CE and of KL is (p - q) / V
        expected = (torch.softmax(z.detach(), 1) - torch.as_tensor(as_dist(target, shape[1])).float()) / (
            z.numel() / shape[1]
        )
        torch.testing.assert_close(z.grad, expected, atol=1e-6, rtol=1e-4)


def test_depth_one_volume_agrees_with_2d():
    logits, target = random_case((2, 3, 5, 6), 9, soft=True)
    for loss_fn in (SoftCrossEntropyLoss(), KLDivLoss()):
        torch.testing.assert_close(loss_fn(logits.unsqueeze(2), target.unsqueeze(2)), loss_fn(logits, target))


def test_reference_log_softmax_sanity():
    z = np.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(np.exp(log_softmax(z)), [[0.25, 0.75]])


def test_bad_inputs_raise():
    loss = SoftCrossEntropyLoss()
    logits, labels = random_case((2, 3, 4, 4), 10, soft=False)
    with pytest.raises(ValueError, match=r"`input` of SoftCrossEntropyLoss must be finite; got 1 NaN"):
        bad = logits.clone()
        bad[0, 0, 0, 0] = float("nan")
        loss(bad, labels)
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]; got min 0, max 3"):
        loss(logits, labels.clamp(max=2) + (labels == 2).long())
    with pytest.raises(ValueError, match=r"`target` of SoftCrossEntropyLoss must sum to 1 .* deviation of 0.5"):
        loss(logits, torch.full_like(logits, 0.5))
    with pytest.raises(ValueError, match=r"must be probabilities in \[0, 1\]; got min -0.5"):
        loss(logits, torch.full_like(logits, 1 / 3).index_fill(1, torch.tensor([0]), -0.5))
    with pytest.raises(
        ValueError, match=r"soft \(floating\) `target` .* shape of `input` \(2, 3, 4, 4\); got \(2, 4, 4\)"
    ):
        loss(logits, labels.float())
    with pytest.raises(ValueError, match=r"`target` of SoftCrossEntropyLoss must have shape \(2, 4, 4\)"):
        loss(logits, labels[:, :3])
    with pytest.raises(ValueError, match=r"C >= 2; got shape \(2, 1, 4, 4\)"):
        loss(logits[:, :1], labels)
    with pytest.raises(TypeError, match=r"`keep_mask` of SoftCrossEntropyLoss must be a bool tensor"):
        loss(logits, labels, keep_mask=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"`weight` of SoftCrossEntropyLoss must be finite and >= 0 .*got -1.0"):
        loss(logits, labels, weight=-torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"`reduction` of SoftCrossEntropyLoss .*got 'maen' \(did you mean 'mean'\?\)"):
        SoftCrossEntropyLoss(reduction="maen")
    with pytest.raises(TypeError, match=r"must be floating logits"):
        loss(labels.unsqueeze(1).expand(2, 3, 4, 4), labels)
