"""TrainingTarget and the shared batch adapters: the label as it is collated, checked labels and soft targets."""

from __future__ import annotations

import pytest
import torch

from softlabels.methods import TrainingTarget, create_method
from softlabels.methods.targets import GivenSoftTarget, LabelTarget, hard_labels, rater_stack
from tests.methods._batches import make_batch


def test_training_target_defaults_to_no_weight_mask_or_teacher():
    target = TrainingTarget(torch.tensor([1, 0]))
    assert (target.weight, target.keep_mask, target.teacher) == (None, None, None)


def test_channel_first_labels_as_monai_collates_them():
    batch = make_batch((2, 5, 6), 3, 1)
    channel_first = {**batch, "label": batch["label"].unsqueeze(1), "confidence": batch["confidence"].unsqueeze(1)}
    assert torch.equal(hard_labels(channel_first), batch["label"])
    for name in ("hard", "svls", "confidence_soft"):
        method = create_method(name, 3)
        torch.testing.assert_close(method.make_target(channel_first).target, method.make_target(batch).target)
    classification = {"image": torch.zeros(4, 1), "label": torch.zeros(4, 1, dtype=torch.long)}
    assert hard_labels(classification).shape == (4, 1)  # (N, 1) labels of (N, C_in) images are not a channel axis


def test_rater_stack_puts_raters_first_and_refuses_a_flat_tensor():
    raters = torch.arange(6).reshape(2, 3)
    assert torch.equal(rater_stack({"raters": raters}), raters.T)
    with pytest.raises(ValueError, match=r"`batch\['raters'\]` must be \(N, R, \*spatial\) or \(N, R\); got shape"):
        rater_stack({"raters": torch.zeros(3)})
    with pytest.raises(TypeError, match=r"`batch\['raters'\]` must be a torch.Tensor; got list"):
        rater_stack({"raters": [[0, 1]]})


def test_label_target_checks_the_labels():
    assert torch.equal(LabelTarget(3, 255)({"label": torch.tensor([0, 255])}).target, torch.tensor([0, 255]))
    with pytest.raises(
        ValueError, match=r"`batch\['label'\]` of make_target must hold class indices in \[0, 3\); got 3"
    ):
        create_method("hard", 3).make_target({"label": torch.full((1, 4, 4), 3)})
    with pytest.raises(ValueError, match=r"`ignore_index` of make_target must not be a class index"):
        LabelTarget(3, 1)


def test_given_soft_target_must_be_a_distribution_over_the_classes():
    soft = torch.softmax(torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), 1)
    assert GivenSoftTarget(3)({"soft_label": soft}).target is soft
    with pytest.raises(ValueError, match=r"`soft_label` of batch\['soft_label'\] must sum to 1"):
        create_method("soft_label", 3).make_target({"soft_label": torch.full((1, 3, 4, 4), 0.5)})
    with pytest.raises(ValueError, match=r"`batch\['x'\]` must be a float \(N, C=2, \*spatial\) distribution"):
        GivenSoftTarget(2, "x")({"x": soft})
