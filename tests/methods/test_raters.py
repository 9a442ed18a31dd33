"""raters_mean, raters_weighted, raters_majority: the targets are fuse_raters of the batch's raters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softlabels.methods import create_method
from softlabels.methods.raters import RaterTarget
from softlabels.targets import fuse_raters
from tests.methods._batches import make_batch


@pytest.mark.parametrize("fusion", ["mean", "weighted", "majority"])
def test_targets_are_fuse_raters_of_the_batch(fusion):
    batch = make_batch((2, 5, 6), 3, 0)
    expected = fuse_raters(batch["raters"].movedim(1, 0), 3, method=fusion)
    method = create_method(f"raters_{fusion}", 3)
    assert method.requires == ("raters",)
    torch.testing.assert_close(method.make_target(batch).target, expected)


def test_the_rater_mean_is_the_vote_fraction():
    raters = torch.tensor([[0, 1, 1, 2], [2, 2, 2, 2]])  # two items, four raters
    votes = np.stack([np.bincount(r, minlength=3) / 4 for r in raters.numpy()])
    torch.testing.assert_close(RaterTarget(3, "mean")({"raters": raters}).target.double(), torch.from_numpy(votes))
