"""hard, focal, flsd, mbls: the losses and defaults of the hard-label entries, against float64 references."""

from __future__ import annotations

import numpy as np
import torch

from softlabels.losses import FocalLoss, MarginLoss
from softlabels.methods import create_method
from tests.methods._batches import make_batch


def test_hard_is_the_cross_entropy_of_the_label():
    batch = make_batch((2, 5, 6), 3, 0)
    logits = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    method = create_method("hard", 3)
    z, y = logits.numpy(), batch["label"].numpy()
    log_p = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    expected = -np.take_along_axis(log_p, y[:, None], 1).mean()
    np.testing.assert_allclose(float(method(logits, method.make_target(batch))), expected, rtol=1e-10)


def test_focal_flsd_and_mbls_defaults_are_the_spec_defaults():
    focal = create_method("focal", 3).loss
    assert isinstance(focal, FocalLoss) and focal.gamma == 3.0 and focal.gamma_bands == ()
    assert create_method("flsd", 3).loss.gamma_bands == ((0.2, 5.0), (0.5, 3.0))
    mbls_cls, mbls_seg = create_method("mbls", 3, task="classification"), create_method("mbls", 3, task="segmentation")
    assert isinstance(mbls_cls.loss, MarginLoss) and mbls_cls.loss.margin == 10.0 and mbls_seg.loss.margin == 5.0
    assert mbls_cls.loss.lambda_margin == 0.1 and mbls_seg.params["margin"] == 5.0
    assert create_method("mbls", 3, margin=2.0).params["margin"] == 2.0
