"""soft_label: soft CE on the data's own soft target."""

from __future__ import annotations

import torch

from softlabels.methods import create_method
from tests.methods._batches import make_batch


def test_the_loss_is_soft_cross_entropy_on_the_given_soft_label():
    batch = make_batch((2, 5, 6), 3, 0)
    logits = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    method = create_method("soft_label", 3)
    assert method.requires == ("soft_label",) and method.tasks == ("segmentation",)
    q = batch["soft_label"].double()
    expected = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(method(logits, method.make_target(batch)), expected)
