"""boundary_ls, svls, raters_svls, nacl: targets equal the target functions, the NACL defaults."""

from __future__ import annotations

import pytest
import torch

from softlabels.losses import NACLLoss
from softlabels.methods import create_method
from softlabels.methods.spatial import BoundarySmoothedTarget, SVLSTarget
from softlabels.targets import boundary_label_smoothing, fuse_raters, svls
from tests.methods._batches import make_batch


def test_svls_targets_are_svls_of_the_label_and_of_the_rater_mean():
    batch = make_batch((2, 5, 6), 3, 0)
    torch.testing.assert_close(create_method("svls", 3).make_target(batch).target, svls(batch["label"], 3))
    rater_mean = fuse_raters(batch["raters"].movedim(1, 0), 3)
    torch.testing.assert_close(create_method("raters_svls", 3).make_target(batch).target, svls(rater_mean, 3))
    spaced = SVLSTarget(3, 1.0, 3, (1.0, 2.0))(batch).target
    torch.testing.assert_close(spaced, svls(batch["label"], 3, 1.0, 3, (1.0, 2.0)))


def test_boundary_ls_is_boundary_label_smoothing_of_the_label():
    batch = make_batch((2, 5, 6), 3, 1)
    expected = boundary_label_smoothing(batch["label"], 3, epsilon=0.5)
    torch.testing.assert_close(create_method("boundary_ls", 3).make_target(batch).target, expected)
    assert BoundarySmoothedTarget(3, 0.5, 1)(batch).keep_mask is None


def test_bad_kernel_options_are_refused_when_the_method_is_built():
    with pytest.raises(ValueError, match=r"`sigma` of svls must be a finite float > 0; got -1"):
        create_method("svls", 3, sigma=-1)
    with pytest.raises(ValueError, match=r"`spacing` of svls must hold 2 finite floats"):
        create_method("raters_svls", 3, spacing=(1.0, 1.0, 1.0, 1.0))


def test_nacl_defaults_are_the_papers():
    method = create_method("nacl", 3)
    nacl = method.loss
    assert isinstance(nacl, NACLLoss) and nacl.lambda_nacl == 0.1 and nacl.window["kernel_size"] == 3
    assert (nacl.window["kernel"], nacl.window["padding"]) == ("mean", "background")
    assert method.params["padding"] == "background"  # None resolves to the kernel's own padding
