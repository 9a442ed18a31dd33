"""ls and ols: the loss is soft CE on the smoothed target (either convention), the OLS defaults."""

from __future__ import annotations

import pytest
import torch

from softlabels.losses import OnlineLabelSmoothingLoss
from softlabels.methods import create_method
from softlabels.methods.smoothing import SmoothedTarget
from softlabels.targets import label_smoothing
from tests.methods._batches import make_batch


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("epsilon", [0.2, 0.9])
def test_ls_loss_is_soft_ce_on_the_smoothed_target(convention, epsilon):
    batch = make_batch((2, 5, 6), 3, 2)
    batch["label"][0, 0] = 255
    logits = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    method = create_method("ls", 3, epsilon=epsilon, convention=convention, ignore_index=255)
    smoothed = label_smoothing(batch["label"], 3, epsilon=epsilon, convention=convention, ignore_index=255)
    keep = batch["label"] != 255
    expected = -(smoothed * torch.log_softmax(logits, 1)).sum(1)[keep].mean()
    torch.testing.assert_close(method(logits, method.make_target(batch)), expected)


def test_smoothed_target_fills_ignored_voxels_with_a_uniform_row_and_masks_them():
    labels = torch.tensor([[[0, 255, 1]]])
    target = SmoothedTarget(2, 0.2, "uniform", ignore_index=255)({"label": labels})
    torch.testing.assert_close(target.target[0, :, 0, 1], torch.tensor([0.5, 0.5]))
    assert target.keep_mask.tolist() == [[[True, False, True]]]
    assert SmoothedTarget(2, 0.2, "uniform")({"label": torch.tensor([0, 1])}).keep_mask is None


def test_ls_with_an_others_epsilon_beyond_the_fused_range_builds_the_target_itself():
    method = create_method("ls", 2, epsilon=0.9, convention="others")  # a uniform ε of 1.8: not PyTorch's fused form
    assert isinstance(method.build_target, SmoothedTarget)
    target = method.make_target({"label": torch.tensor([0])}).target
    torch.testing.assert_close(target, torch.tensor([[0.1, 0.9]]))


def test_ols_defaults_are_the_spec_defaults():
    method = create_method("ols", 3)
    assert isinstance(method.loss, OnlineLabelSmoothingLoss) and method.params["alpha"] == 0.5
    assert (method.params["init"], method.params["empty_class_policy"], method.params["freeze_at"]) == (
        "uniform", "uniform", None,
    )  # fmt: skip
