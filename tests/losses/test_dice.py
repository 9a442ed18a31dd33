import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.losses import DiceCELoss as MonaiDiceCELoss
from monai.losses import DiceLoss as MonaiDiceLoss

from softlabels.losses import DiceCELoss, DiceLoss

from ._reference import as_dist, np64


def dirichlet(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = -torch.log(torch.rand(shape, generator=g))  # Exp(1) → Dirichlet(1, …, 1) after normalising
    return x / x.sum(1, keepdim=True)


def np_dice(x, y, *, form="l1", alpha=0.5, beta=0.5, smooth=1.0, batch=True, weight=None):
    """Per-class (or per image and class) Tversky loss from the definitions (float64)."""
    n, c = x.shape[:2]
    x, y = x.reshape(n, c, -1), y.reshape(n, c, -1)
    w = np.ones((n, 1, x.shape[2])) if weight is None else weight.reshape(n, 1, -1)
    axes = (0, 2) if batch else (2,)
    if form == "product":
        tp = (w * x * y).sum(axes)
        fp, fn = (w * x).sum(axes) - tp, (w * y).sum(axes) - tp
    else:
        p = 1 if form == "l1" else 2
        sx, sy = (w * np.abs(x) ** p).sum(axes), (w * np.abs(y) ** p).sum(axes)
        tp = (sx + sy - (w * np.abs(x - y) ** p).sum(axes)) / 2
        fp, fn = sx - tp, sy - tp
    return 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shape=st.sampled_from([(2, 3, 4, 5), (1, 4, 3, 3, 3), (3, 2, 6, 1)]))
def test_dml_is_zero_at_a_soft_target_while_plain_soft_dice_is_not(seed, shape):
    t = dirichlet(shape, seed)
    assert abs(DiceLoss(activation=None)(t, t).item()) < 1e-6
    assert abs(DiceLoss(activation=None, form="squared")(t, t).item()) < 1e-6
    assert abs(DiceLoss()(t.log(), t).item()) < 1e-5  # through the softmax of logits log t
    plain = DiceLoss(activation=None, form="product", smooth=0.0)(t, t).item()
    expected = np_dice(np64(t), np64(t), form="product", smooth=0.0).mean()
    assert plain == pytest.approx(expected, rel=1e-5) and plain > 0.05
    monai_plain = MonaiDiceLoss(smooth_nr=0.0, smooth_dr=1e-12, batch=True)(t, t).item()
    assert monai_plain == pytest.approx(plain, rel=1e-4)  # the classic form, as MONAI's default DiceLoss


def test_classic_soft_dice_is_minimised_at_one_for_a_half_label():
    # one voxel, y = 0.5: the product form is smallest at x = 1 (over-confidence); DML at x = 0.5
    xs = torch.linspace(0.01, 0.99, 99)
    y = torch.tensor([0.5, 0.5]).view(1, 2, 1)
    losses = {}
    for form in ("product", "l1"):
        loss = DiceLoss(activation=None, form=form, smooth=0.0, include_background=False)
        losses[form] = torch.stack([loss(torch.stack([1 - x, x]).view(1, 2, 1), y) for x in xs])
    assert xs[losses["product"].argmin()].item() == pytest.approx(0.99)
    assert xs[losses["l1"].argmin()].item() == pytest.approx(0.5)


@pytest.mark.parametrize("form", ["l1", "squared", "product"])
@pytest.mark.parametrize("batch", [True, False])
def test_matches_reference_soft_and_hard(form, batch):
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(3, 4, 5, 6, generator=g)
    probs = np64(torch.softmax(logits, 1))
    for target in (dirichlet((3, 4, 5, 6), 1), torch.randint(0, 4, (3, 5, 6), generator=g)):
        expected = np_dice(probs, as_dist(target, 4), form=form, batch=batch)
        got = DiceLoss(form=form, batch=batch, reduction="none")(logits, target)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
        assert DiceLoss(form=form, batch=batch)(logits, target).item() == pytest.approx(expected.mean(), rel=1e-5)


def test_all_forms_agree_for_hard_labels_and_match_monai():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, 6, generator=g)
    labels = torch.randint(0, 3, (2, 6, 6), generator=g)
    l1 = DiceLoss(smooth=1e-5)(logits, labels)
    torch.testing.assert_close(DiceLoss(form="product", smooth=1e-5)(logits, labels), l1)
    monai = MonaiDiceLoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
    torch.testing.assert_close(monai(logits, labels.unsqueeze(1)), l1)


def test_jaccard_include_background_present_and_weights():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 2, (2, 4, 4), generator=g)  # class 2 never present
    probs, y = np64(torch.softmax(logits, 1)), as_dist(labels, 3)
    jac = DiceLoss(alpha=1.0, beta=1.0, reduction="none")(logits, labels)
    np.testing.assert_allclose(jac.numpy(), np_dice(probs, y, alpha=1.0, beta=1.0), rtol=1e-5)
    no_bg = DiceLoss(include_background=False)(logits, labels)
    assert no_bg.item() == pytest.approx(np_dice(probs, y)[1:].mean(), rel=1e-5)
    present = DiceLoss(active="present", reduction="none")(logits, labels)
    assert torch.isnan(present[2]) and not torch.isnan(present[:2]).any()
    assert DiceLoss(active="present")(logits, labels).item() == pytest.approx(np_dice(probs, y)[:2].mean(), rel=1e-5)
    weight = torch.rand(2, 4, 4, generator=g)
    got = DiceLoss(reduction="none")(logits, labels, weight=weight)
    np.testing.assert_allclose(got.numpy(), np_dice(probs, y, weight=np64(weight)), rtol=1e-5)


def test_ignore_index_and_keep_mask_drop_voxels():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 2, 4, 4, generator=g)
    labels = torch.randint(0, 2, (1, 4, 4), generator=g)
    keep = torch.ones(1, 4, 4, dtype=torch.bool)
    keep[0, 0] = False
    ignored = labels.clone()
    ignored[0, 0] = 255
    by_mask = DiceLoss()(logits, labels, keep_mask=keep)
    torch.testing.assert_close(DiceLoss(ignore_index=255)(logits, ignored), by_mask)
    cropped = DiceLoss()(logits[:, :, 1:], labels[:, 1:])
    torch.testing.assert_close(by_mask, cropped)


def test_dice_ce_keeps_soft_targets_in_both_terms_unlike_monai():
    t = dirichlet((2, 3, 8, 8), 5)
    ours = DiceCELoss()(t.log(), t)
    assert abs(ours.item()) < 1e-5  # KL(t‖t) = 0 and DML(t, t) = 0
    monai_dice_part = MonaiDiceCELoss(softmax=True, lambda_ce=0.0)(t.log(), t)
    assert monai_dice_part.item() > 0.1  # MONAI's DiceCELoss builds its Dice without soft_label
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    expected = 0.25 * torch.nn.functional.kl_div(torch.log_softmax(logits, 1), t, reduction="sum") / 128
    expected = expected + 0.75 * DiceLoss()(logits, t)
    torch.testing.assert_close(DiceCELoss()(logits, t), expected)
    ce_variant = DiceCELoss(ce="ce", lambda_dice=0.0, lambda_ce=1.0)(logits, t)
    assert ce_variant.item() == pytest.approx(-(np64(t) * np.log(np64(torch.softmax(logits, 1)))).sum(1).mean(), 1e-5)


def test_depth_one_volume_agrees_with_2d_and_gradients_are_finite():
    t = dirichlet((2, 3, 5, 5), 7)
    g = torch.Generator().manual_seed(8)
    logits = (3 * torch.randn(2, 3, 5, 5, generator=g)).requires_grad_(True)
    for loss_fn in (DiceLoss(), DiceCELoss(), DiceLoss(batch=False, form="squared")):
        loss = loss_fn(logits, t)
        torch.testing.assert_close(loss_fn(logits.unsqueeze(2), t.unsqueeze(2)), loss)
        loss.backward()
        assert torch.isfinite(logits.grad).all()


def test_bad_inputs_raise():
    t = dirichlet((1, 2, 3, 3), 9)
    with pytest.raises(ValueError, match=r"`form` of DiceLoss .*got 'l2'"):
        DiceLoss(form="l2")
    with pytest.raises(ValueError, match=r"`smooth` of DiceLoss must be a finite float >= 0; got -1"):
        DiceLoss(smooth=-1)
    with pytest.raises(ValueError, match=r"`input` of DiceLoss must sum to 1"):
        DiceLoss(activation=None)(0.5 * t, t)
    with pytest.raises(ValueError, match=r"`activation` of DiceLoss .*got 'sigmoid'"):
        DiceLoss(activation="sigmoid")
    with pytest.raises(ValueError, match=r"`lambda_ce` of DiceCELoss must be a finite float >= 0"):
        DiceCELoss(lambda_ce=-0.1)
