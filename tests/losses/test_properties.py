"""Properties every loss must have: finite values and gradients on random inputs, and 2D = 3D of depth 1."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.losses import (
    FLSD53_BANDS,
    DiceCELoss,
    DiceLoss,
    DistillationLoss,
    FocalLoss,
    KLDivLoss,
    MarginLoss,
    NACLLoss,
    OnlineLabelSmoothingLoss,
    SoftCrossEntropyLoss,
)
from softlabels.targets import virtual_teacher

LOSSES = {
    "soft_ce": SoftCrossEntropyLoss,
    "kl": KLDivLoss,
    "dice": DiceLoss,
    "dice_squared_per_image": lambda: DiceLoss(form="squared", batch=False),
    "dice_ce": DiceCELoss,
    "focal": FocalLoss,
    "flsd": lambda: FocalLoss(gamma_bands=FLSD53_BANDS),
    "mbls": lambda: MarginLoss(margin=5.0),
    "nacl": NACLLoss,
    "nacl_replicate_l2_probs": lambda: NACLLoss(padding="replicate", distance="l2", penalty_on="probs"),
    "distillation": lambda: DistillationLoss(temperature=2.0),
    "ols": lambda: OnlineLabelSmoothingLoss(3),
}
HARD_ONLY = {"ols"}
SPATIAL_ONLY = {"nacl", "nacl_replicate_l2_probs"}
# NACL's default 'background' padding puts background above and below a depth-1 volume; 'replicate' does not
DEPTH_ONE_DIFFERS = {"nacl"}


def call(name, loss, logits, target):
    if name == "distillation":
        labels = target if not target.is_floating_point() else target.argmax(1)
        return loss(logits, target, teacher=virtual_teacher(labels, logits.shape[1], temperature=4.0))
    return loss(logits, target)


def make(shape, seed, soft, scale):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(shape, generator=g)
    if soft:
        target = torch.softmax(3 * torch.randn(shape, generator=g), 1)
    else:
        target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return logits, target


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(LOSSES)),
    seed=st.integers(0, 10_000),
    shape=st.sampled_from([(5, 3), (2, 3, 4, 5), (1, 3, 3, 4, 2)]),
    soft=st.booleans(),
    scale=st.sampled_from([0.01, 1.0, 30.0, 300.0]),
)
def test_finite_with_finite_gradients(name, seed, shape, soft, scale):
    if (soft and name in HARD_ONLY) or (len(shape) == 2 and name in SPATIAL_ONLY):
        return
    logits, target = make(shape, seed, soft, scale)
    logits.requires_grad_(True)
    loss = call(name, LOSSES[name](), logits, target)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss), name
    assert torch.isfinite(logits.grad).all(), name
    if scale <= 30.0:  # beyond, float32 softmax saturates to exact 0/1 and Dice-type gradients vanish
        assert logits.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", sorted(set(LOSSES) - DEPTH_ONE_DIFFERS))
@pytest.mark.parametrize("soft", [False, True])
def test_2d_and_3d_of_depth_one_agree(name, soft):
    if soft and name in HARD_ONLY:
        return
    logits, target = make((2, 3, 5, 6), 1, soft, 2.0)
    deep = target.unsqueeze(2) if soft else target.unsqueeze(1)
    torch.testing.assert_close(
        call(name, LOSSES[name](), logits.unsqueeze(2), deep), call(name, LOSSES[name](), logits, target)
    )


def test_nacl_background_padding_differs_at_depth_one():
    logits, target = make((1, 3, 4, 4), 2, False, 1.0)
    assert not torch.allclose(NACLLoss()(logits.unsqueeze(2), target.unsqueeze(1)), NACLLoss()(logits, target))
