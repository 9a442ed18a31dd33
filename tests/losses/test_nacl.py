import numpy as np
import pytest
import torch
from monai.losses import NACLLoss as MonaiNACLLoss

from softlabels.losses import NACLLoss, neighbourhood_proportions

from ._reference import as_dist, np64, one_hot, soft_ce, window_proportions


def random_labels(shape, num_classes, seed):
    return torch.randint(0, num_classes, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("padding", ["background", "zeros", "replicate"])
@pytest.mark.parametrize("shape", [(2, 5, 6), (1, 4, 5, 3)])
@pytest.mark.parametrize("k", [3, 5])
def test_proportions_are_the_class_shares_in_the_window(padding, shape, k):
    labels = random_labels(shape, 3, 0)
    onehot = one_hot(labels.numpy(), 3)
    got = neighbourhood_proportions(torch.as_tensor(onehot), kernel_size=k, padding=padding)
    np.testing.assert_allclose(got.numpy(), window_proportions(onehot, k, padding), atol=1e-12)
    sums = got.sum(1)
    if padding == "zeros":
        assert sums.min() < 1 - 1e-6  # MONAI's border convention: nothing outside the image
        assert torch.allclose(
            sums[(slice(None), *[slice(k // 2, -(k // 2))] * (len(shape) - 1))], torch.ones(1).double()
        )
    else:
        torch.testing.assert_close(sums, torch.ones_like(sums))


def test_proportions_zero_padding_equal_monai_mean_filter():
    labels = random_labels((2, 6, 7), 3, 1)
    onehot = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float()
    monai = MonaiNACLLoss(classes=3, dim=2, kernel_size=3, kernel_ops="mean")
    torch.testing.assert_close(neighbourhood_proportions(onehot, padding="zeros"), monai.get_constr_target(labels))


def test_loss_matches_hand_computation():
    # 1×3 image, labels (0, 0, 1), replicate padding, window 3: τ_1 = (0, 1/3, 2/3), τ_0 = (1, 2/3, 1/3)
    logits = torch.tensor([[[[2.0, 0.0, -1.0]], [[0.0, 1.0, 1.0]]]])
    labels = torch.tensor([[[0, 0, 1]]])
    tau = np.array([[1.0, 2 / 3, 1 / 3], [0.0, 1 / 3, 2 / 3]])
    z = np64(logits)[0, :, 0]
    penalty = np.abs(tau - z).mean(0)
    expected = (soft_ce(np64(logits), one_hot(labels.numpy(), 2))[0, 0] + 0.1 * penalty).mean()
    got = NACLLoss(lambda_nacl=0.1, padding="replicate")(logits, labels)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("distance", ["l1", "l2"])
@pytest.mark.parametrize("penalty_on", ["logits", "probs"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 3, 3, 4, 5)])
def test_matches_reference(distance, penalty_on, shape):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(shape, generator=g)
    target = random_labels(shape[:1] + shape[2:], 3, 3)
    q = as_dist(target, 3)
    tau = window_proportions(q, 3, "background")
    z = np64(logits) if penalty_on == "logits" else np64(torch.softmax(logits, 1))
    diff = np.abs(tau - z) if distance == "l1" else (tau - z) ** 2
    expected = soft_ce(np64(logits), q) + 0.1 * diff.mean(1)
    got = NACLLoss(distance=distance, penalty_on=penalty_on, reduction="none")(logits, target)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_soft_target_proportions_and_ignore_index():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 3, 4, 4, generator=g)
    soft = torch.softmax(torch.randn(1, 3, 4, 4, generator=g), 1)
    tau = window_proportions(np64(soft), 3, "background")
    expected = soft_ce(np64(logits), np64(soft)) + 0.1 * np.abs(tau - np64(logits)).mean(1)
    got = NACLLoss(reduction="none")(logits, soft)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    labels = random_labels((1, 4, 4), 3, 5)
    labels[0, 0, 0] = 255
    onehot = one_hot(np.where(labels.numpy() == 255, 0, labels.numpy()), 3)
    onehot[0, :, 0, 0] = 0  # ignored voxels count as no class in the proportions
    tau = window_proportions(onehot, 3, "background")
    per_voxel = soft_ce(np64(logits), onehot) + 0.1 * np.abs(tau - np64(logits)).mean(1)
    keep = labels.numpy() != 255
    got = NACLLoss(ignore_index=255)(logits, labels)
    assert got.item() == pytest.approx(per_voxel[keep].mean(), rel=1e-5)


def test_depth_one_agrees_with_2d_under_replicate_padding():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 5, 5, generator=g)
    labels = random_labels((2, 5, 5), 3, 7)
    loss = NACLLoss(padding="replicate")
    torch.testing.assert_close(loss(logits.unsqueeze(2), labels.unsqueeze(1)), loss(logits, labels))


def test_gradient_and_bad_inputs():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    NACLLoss()(logits, torch.zeros(1, 3, 3, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"`kernel_size` of NACLLoss must be an odd int >= 1; got 4"):
        NACLLoss(kernel_size=4)
    with pytest.raises(ValueError, match=r"`padding` of NACLLoss .*got 'reflect'"):
        NACLLoss(padding="reflect")
    with pytest.raises(ValueError, match=r"`kernel_size` of neighbourhood_proportions must be an odd int >= 3; got 1"):
        neighbourhood_proportions(torch.zeros(1, 2, 3, 3), kernel="gaussian", kernel_size=1)
    with pytest.raises(ValueError, match=r"`distance` of NACLLoss .*got 'l3'"):
        NACLLoss(distance="l3")
    with pytest.raises(ValueError, match=r"NACLLoss must be \(N, C, H, W\) or \(N, C, D, H, W\); got \(4, 2\)"):
        NACLLoss()(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("shape", [(2, 5, 6), (1, 3, 4, 5)])
def test_gaussian_proportions_are_the_svls_target(shape):
    """The authors' Gaussian option is the SVLS kernel (centre 0.5) with replicate padding, 3D included."""
    from softlabels.targets import svls

    labels = random_labels(shape, 3, 8)
    onehot = torch.as_tensor(one_hot(labels.numpy(), 3)).float()
    for sigma, k in ((1.0, 3), (0.5, 5)):
        got = neighbourhood_proportions(onehot, kernel="gaussian", sigma=sigma, kernel_size=k)
        torch.testing.assert_close(got, svls(labels, 3, sigma, k))
        torch.testing.assert_close(got.sum(1), torch.ones_like(got[:, 0]))


def test_gaussian_kernels_take_only_their_own_padding_and_monai_takes_no_kernel_size():
    assert NACLLoss(kernel="gaussian").window["padding"] == "replicate"
    assert NACLLoss(kernel="gaussian_monai").window["padding"] == "zeros"
    assert NACLLoss().window["padding"] == "background" and NACLLoss(padding="zeros").window["padding"] == "zeros"
    assert NACLLoss(kernel="gaussian", padding="replicate").window["padding"] == "replicate"
    with pytest.raises(ValueError, match=r"`padding` of NACLLoss must be 'replicate' or None with kernel='gaussian'"):
        NACLLoss(kernel="gaussian", padding="background")
    with pytest.raises(ValueError, match=r"`padding` of NACLLoss must be 'zeros' or None .*got 'replicate'"):
        NACLLoss(kernel="gaussian_monai", padding="replicate")
    with pytest.raises(ValueError, match=r"`kernel_size` of NACLLoss is not used by kernel='gaussian_monai'.*got 5"):
        NACLLoss(kernel="gaussian_monai", kernel_size=5)
    with pytest.raises(ValueError, match=r"`sigma` of NACLLoss must be a finite float > 0; got 0"):
        NACLLoss(kernel="gaussian", sigma=0)
    with pytest.raises(TypeError, match=r"`kernel_size` of NACLLoss must be an int; got float 3.0"):
        NACLLoss(kernel_size=3.0)
