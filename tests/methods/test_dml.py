"""dml: DML + KL on the label or a named soft source."""

from __future__ import annotations

import pytest
import torch

from softlabels.losses import DiceCELoss
from softlabels.methods import create_method
from softlabels.methods.dml import source_target
from softlabels.targets import fuse_raters, svls
from tests.methods._batches import make_batch


def test_each_source_gives_its_target_and_asks_for_its_keys():
    batch = make_batch((2, 5, 6), 3, 0)
    rater_mean = fuse_raters(batch["raters"].movedim(1, 0), 3)
    expected = {
        "label": batch["label"], "raters_mean": rater_mean, "raters_svls": svls(rater_mean, 3),
        "svls": svls(batch["label"], 3), "soft_label": batch["soft_label"],
    }  # fmt: skip
    for source, target in expected.items():
        method = create_method("dml", 3, source=source)
        torch.testing.assert_close(method.make_target(batch).target, target, msg=source)
        assert method.requires == source_target(source, 3)[1]


def test_the_loss_is_kl_plus_dml_with_the_spec_weights_and_an_unknown_source_is_refused():
    loss = create_method("dml", 3).loss
    assert isinstance(loss, DiceCELoss) and (loss.lambda_ce, loss.lambda_dice) == (0.25, 0.75)
    with pytest.raises(ValueError, match=r"`source` of method 'dml' .*got 'raters'"):
        create_method("dml", 3, source="raters")
