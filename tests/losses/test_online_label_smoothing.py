import numpy as np
import pytest
import torch

from softlabels.losses import OnlineLabelSmoothingLoss

from ._reference import log_softmax, np64, one_hot, soft_ce


def test_loss_is_alpha_ce_plus_soft_ce_on_the_class_rows():
    g = torch.Generator().manual_seed(0)
    loss = OnlineLabelSmoothingLoss(4, alpha=0.3)
    rows = torch.softmax(torch.randn(4, 4, generator=g, dtype=torch.float64), 1)
    loss.smoother.soft_labels.copy_(rows)
    logits = torch.randn(10, 4, generator=g)
    labels = torch.randint(0, 4, (10,), generator=g)
    s = np64(rows)[labels.numpy()]
    expected = 0.3 * soft_ce(np64(logits), one_hot(labels.numpy(), 4)) - 0.7 * (s * log_softmax(np64(logits))).sum(1)
    assert loss(logits, labels).item() == pytest.approx(expected.mean(), rel=1e-6)


def test_segmentation_voxels_and_hooks_update_the_matrix_between_epochs():
    g = torch.Generator().manual_seed(1)
    loss = OnlineLabelSmoothingLoss(3)
    logits = 3 * torch.randn(2, 3, 4, 4, generator=g)
    labels = logits.argmax(1)  # every voxel correct
    before = loss(logits, labels)
    loss.on_train_batch_end(logits, labels.unsqueeze(1))  # MONAI-style (N, 1, *S) labels accepted
    torch.testing.assert_close(loss(logits, labels), before)  # S fixed within the epoch
    loss.on_train_epoch_end()
    probs = np.exp(log_softmax(np64(logits))).transpose(0, 2, 3, 1).reshape(-1, 3)
    flat = labels.numpy().reshape(-1)
    for c in range(3):
        expected = probs[flat == c].mean(0) if (flat == c).any() else np.full(3, 1 / 3)
        np.testing.assert_allclose(loss.smoother.soft_labels[c].numpy(), expected, rtol=1e-6)
    assert loss(logits, labels).item() != pytest.approx(before.item())


def test_state_is_in_state_dict():
    loss = OnlineLabelSmoothingLoss(3)
    state = loss.state_dict()
    assert {"smoother.soft_labels", "smoother._extra_state"} <= set(state)
    assert set(state["smoother._extra_state"]) == {"sums", "counts"}  # the accumulators, checkpointed


def test_bad_inputs_raise():
    loss = OnlineLabelSmoothingLoss(3)
    with pytest.raises(TypeError, match=r"must be hard integer labels; got a soft target"):
        loss(torch.zeros(2, 3), torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"must have C=3 channels; got 4"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`alpha` of OnlineLabelSmoothingLoss must be a float in \[0, 1\]"):
        OnlineLabelSmoothingLoss(3, alpha=2.0)
