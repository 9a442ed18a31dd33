"""confidence_threshold, confidence_soft, confidence_weighted: the targets of the confidence map."""

from __future__ import annotations

import torch

from softlabels.methods import create_method
from softlabels.methods.confidence import ConfidenceTarget
from softlabels.targets import confidence_soft
from tests.methods._batches import make_batch


def test_the_three_modes_use_label_and_confidence():
    batch = make_batch((2, 5, 6), 3, 0)
    label, confidence = batch["label"], batch["confidence"]
    weighted = create_method("confidence_weighted", 3).make_target(batch)
    assert torch.equal(weighted.target, label) and torch.equal(weighted.weight, confidence)
    thresholded = create_method("confidence_threshold", 3, tau=0.5).make_target(batch).target
    assert torch.equal(thresholded, torch.where(confidence >= 0.5, label, torch.zeros_like(label)))
    soft = create_method("confidence_soft", 3).make_target(batch).target
    torch.testing.assert_close(soft, confidence_soft(label, confidence, 3))
    assert create_method("confidence_soft", 3).requires == ("label", "confidence")


def test_below_ignore_marks_low_confidence_voxels_for_the_loss_to_drop():
    batch = {"label": torch.tensor([[[1, 1]]]), "confidence": torch.tensor([[[0.9, 0.1]]])}
    method = create_method("confidence_threshold", 2, below="ignore")
    assert method.make_target(batch).target.tolist() == [[[1, 255]]] and method.loss.ignore_index == 255
    assert ConfidenceTarget(2, "threshold")(batch).target.tolist() == [[[1, 0]]]  # below="background"
