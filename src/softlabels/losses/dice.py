"""Soft-label-correct Dice (the Dice semimetric loss, DML) and a CE + Dice composite that keeps soft targets.

The usual soft Dice ``1 − 2Σxy / (Σx + Σy)`` is not minimised at ``x = y`` when the target is soft (for one voxel
with ``y = 0.5`` the minimum is at ``x = 1``), so it pushes soft-label training towards over-confidence. The
semimetric form rewrites the intersection through ``|x − y|`` and is 0 exactly at ``x = y`` (docs/methods.md §3.4).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from softlabels._checks import check_distribution
from softlabels._options import look_up_option
from softlabels.losses._base import VoxelLoss
from softlabels.losses._inputs import (
    LossTarget,
    Reduction,
    check_not_empty,
    check_positive,
    cross_entropy_per_voxel,
    prepare_target,
    reduce_voxels,
)

__all__ = ["DiceCELoss", "DiceLoss"]

DiceForm = Literal["l1", "squared", "product"]


def _counts(x: Tensor, y: Tensor, w: Tensor | None, form: DiceForm, dims: tuple[int, ...]) -> tuple[Tensor, ...]:
    """Soft ``(tp, fp, fn)`` per class (and image), summed over ``dims`` of ``(N, C, V)`` tensors."""
    if form == "squared":
        sx, sy, diff = x * x, y * y, (x - y) ** 2
    elif form == "l1":
        sx, sy, diff = x, y, (x - y).abs()
    else:
        sx, sy, diff = x, y, None
    if w is not None:
        sx, sy = sx * w, sy * w
        diff = None if diff is None else diff * w
    size_x, size_y = sx.sum(dims), sy.sum(dims)
    if diff is None:
        tp = (x * y * (1 if w is None else w)).sum(dims)
    else:
        tp = (size_x + size_y - diff.sum(dims)) / 2
    return tp, size_x - tp, size_y - tp


def _hard_counts(x: Tensor, labels: Tensor, w: Tensor | None, form: DiceForm) -> tuple[Tensor, Tensor, Tensor]:
    """``(tp, fp, fn)`` per image and class ``(N, C)`` for hard labels ``(N, V)``, without a one-hot map.

    With ``y ∈ {0, 1}`` and ``x ∈ [0, 1]`` the ``"l1"`` and ``"product"`` forms coincide: ``tp = Σ_{v: y_v = c} w x``,
    ``Σ y = Σ_{v: y_v = c} w``; the ``"squared"`` form uses ``Σ w x²`` in place of ``Σ w x``.
    """
    n, c = x.shape[:2]
    at_label = x.gather(1, labels.unsqueeze(1)).squeeze(1)
    ones = torch.ones_like(at_label) if w is None else w
    tp = x.new_zeros(n, c).scatter_add_(1, labels, at_label if w is None else at_label * w)
    size_y = x.new_zeros(n, c).scatter_add_(1, labels, ones)
    sx = x * x if form == "squared" else x
    size_x = (sx if w is None else sx * w.unsqueeze(1)).sum(-1)
    return tp, size_x - tp, size_y - tp


class DiceLoss(VoxelLoss):
    r"""Tversky/Dice loss per class on soft counts, soft-label correct by default (the Dice semimetric loss).

    With ``x = p_c`` (softmax of the logits) and ``y = q_c`` over the voxels of the reduction set, weighted by the
    voxel weights ``w``:

    .. math::
        tp = \tfrac12 (Σ w x + Σ w y − Σ w |x − y|), \quad fp = Σ w x − tp, \quad fn = Σ w y − tp,

        T_c = \frac{tp + s}{tp + α\,fp + β\,fn + s}, \qquad L = \mathrm{mean}_c (1 − T_c)

    ``form="l1"`` is the above (DML; equal to the usual soft Dice for hard labels, 0 at ``x = y`` for soft ones);
    ``form="squared"`` uses ``x², y², (x − y)²``, the V-Net form ``1 − 2⟨x,y⟩ / (‖x‖² + ‖y‖²)``, also 0 at
    ``x = y``; ``form="product"`` is the classic ``tp = Σ w x y`` form, which is **not** minimised at ``x = y`` for
    soft targets (kept for comparison). ``α = β = 0.5`` is Dice, ``α = β = 1`` Jaccard.

    ``batch=True`` sums over the whole batch before the ratio (JDTLosses ``mIoUD``); ``batch=False`` computes it
    per image (``mIoUI``). ``active="present"`` averages only classes whose target exceeds 0.01 somewhere in the
    reduction set (JDTLosses ``PRESENT``; classes never present give no loss); ``"all"`` averages every class.

    Shapes: ``input (N, C, *spatial)`` logits (or probabilities with ``activation=None``); target as
    :class:`~softlabels.losses.SoftCrossEntropyLoss`. Output: a scalar, or per class ``(C,)`` (``batch=True``)
    / ``(N, C)`` with ``reduction="none"`` (inactive classes are NaN there).

    Empty and left-out inputs: an empty batch (``N = 0`` or a spatial size 0) raises a ``ValueError``. A class (per
    image with ``batch=False``) with nothing in its reduction set, e.g. every voxel outside ``keep_mask``, is
    ``T = s/s = 1`` (loss 0) with ``smooth > 0``; with ``smooth = 0`` it is ``0/0``, NaN with ``"none"`` and left
    out of the mean like an inactive class, with a zero (not NaN) gradient. A batch with every voxel left out
    therefore gives 0 with a zero gradient, as the other losses.

    Args:
        include_background: count class 0.
        activation: ``"softmax"`` (``input`` are logits) or ``None`` (``input`` are probabilities).
        form: ``"l1"`` (DML), ``"squared"`` or ``"product"``.
        alpha: Tversky weight of false positives.
        beta: Tversky weight of false negatives.
        smooth: ``s >= 0`` added to numerator and denominator (1.0 as in the DML configs).
        batch: sum over the batch before the ratio.
        active: ``"all"`` or ``"present"``.
        reduction: ``"mean"`` over active classes (and images), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out, or ``None``.
        validate_args: check values on every call.

    Reference:
        Wang, Popordanoska, Bertels, Lemmens, Blaschko, "Dice Semimetric Losses: Optimizing the Dice Score with Soft
        Labels", MICCAI 2023; Milletari et al., "V-Net", 3DV 2016 (squared form).

    Example:
        >>> t = torch.tensor([[0.3, 0.6], [0.7, 0.4]]).view(1, 2, 1, 2)  # soft target, C=2
        >>> DiceLoss(activation=None)(t, t).item()
        0.0
        >>> DiceLoss(activation=None, form="product")(t, t).item() > 0
        True
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        activation: Literal["softmax"] | None = "softmax",
        form: DiceForm = "l1",
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1.0,
        batch: bool = True,
        active: Literal["all", "present"] = "all",
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate_args=validate_args)
        where = "DiceLoss"
        if activation is not None:
            look_up_option("activation", activation, ("softmax",), where=where)
        self.activation = activation
        self.form: DiceForm = look_up_option("form", form, ("l1", "squared", "product"), where=where)  # type: ignore[assignment]
        self.active = look_up_option("active", active, ("all", "present"), where=where)
        self.alpha = check_positive("alpha", alpha, where)
        self.beta = check_positive("beta", beta, where)
        self.smooth = check_positive("smooth", smooth, where)
        self.include_background = bool(include_background)
        self.batch = bool(batch)

    def _probs(
        self, input: Tensor, target: Tensor, weight: Tensor | None, keep: Tensor | None
    ) -> tuple[Tensor, LossTarget]:
        """Probabilities ``(N, C, *spatial)`` and the checked target."""
        if self.activation == "softmax":
            input, prepared = self.prepare(input, target, weight, keep)
            return torch.softmax(input, dim=1), prepared
        if not isinstance(input, Tensor) or not input.is_floating_point() or input.ndim < 2 or input.shape[1] < 2:
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(
                f"`input` of DiceLoss with activation=None must be probabilities (N, C, *spatial), C >= 2; got {shape}."
            )
        check_not_empty(input, "DiceLoss")
        if self.validate_args:
            check_distribution(input, "input", "DiceLoss")
        prepared = prepare_target(
            input,
            target,
            weight=weight,
            keep_mask=keep,
            ignore_index=self.ignore_index,
            where="DiceLoss",
            validate_args=self.validate_args,
        )
        return input, prepared

    def forward(
        self, input: Tensor, target: Tensor, *, weight: Tensor | None = None, keep_mask: Tensor | None = None
    ) -> Tensor:
        """Dice loss of ``input (N, C, *spatial)`` against a hard or soft target (see the class docstring)."""
        probs, prepared = self._probs(input, target, weight, keep_mask)
        return self.from_probs(probs, prepared)

    def from_probs(self, probs: Tensor, prepared: LossTarget) -> Tensor:
        """The loss from probabilities ``(N, C, *spatial)`` and a checked target (shared with :class:`DiceCELoss`)."""
        n, c = probs.shape[:2]
        x = probs.reshape(n, c, -1)
        w = None if prepared.voxel_weight is None else prepared.voxel_weight.reshape(n, -1)
        if prepared.hard is not None:
            tp, fp, fn = _hard_counts(x, prepared.hard.reshape(n, -1), w, self.form)
        else:
            y = prepared.one_hot(c, probs.dtype).reshape(n, c, -1)
            tp, fp, fn = _counts(x, y, None if w is None else w.unsqueeze(1), self.form, (2,))
        if self.batch:
            tp, fp, fn = tp.sum(0), fp.sum(0), fn.sum(0)
        if not self.include_background:
            tp, fp, fn = tp[..., 1:], fp[..., 1:], fn[..., 1:]
        den = tp + self.alpha * fp + self.beta * fn + self.smooth
        defined = den > 0  # 0/0 only with smooth = 0 and nothing in the reduction set: NaN, with a zero gradient
        ratio = (tp + self.smooth) / torch.where(defined, den, torch.ones_like(den))
        loss = torch.where(defined, 1.0 - ratio, torch.full_like(ratio, float("nan")))
        if self.active == "present":
            loss = torch.where(self._present(x, prepared, w), loss, torch.full_like(loss, float("nan")))
        if self.reduction == "none":
            return loss
        valid = ~torch.isnan(loss)
        total = torch.where(valid, loss, torch.zeros_like(loss)).sum()
        return total if self.reduction == "sum" else total / valid.sum().clamp_min(1)

    def _present(self, x: Tensor, prepared: LossTarget, w: Tensor | None) -> Tensor:
        """Classes whose target exceeds 0.01 somewhere in the reduction set (``(C,)`` or ``(N, C)``)."""
        n, c = x.shape[:2]
        y = prepared.one_hot(c, x.dtype).reshape(n, c, -1)
        if w is not None:
            y = y * (w > 0).unsqueeze(1)
        present = y.amax(dim=(0, 2) if self.batch else (2,)) > 0.01
        return present if self.include_background else present[..., 1:]

    def extra_repr(self) -> str:
        """Show the options in ``repr``."""
        return f"form={self.form!r}, alpha={self.alpha}, beta={self.beta}, smooth={self.smooth}, batch={self.batch}"


class DiceCELoss(nn.Module):
    r"""``λ_ce · CE + λ_dice · Dice`` with the soft target passed to **both** terms (unlike MONAI's ``DiceCELoss``).

    .. math::
        L = λ_{ce}\,\mathrm{KL}(q ‖ p) + λ_{dice}\,\mathrm{DML}(p, q)

    The CE term is :class:`~softlabels.losses.KLDivLoss` (``ce="kl"``, 0 at ``p = q``, so the whole loss is 0 there)
    or :class:`~softlabels.losses.SoftCrossEntropyLoss` (``ce="ce"``; same gradient). The defaults
    ``λ_ce = 0.25, λ_dice = 0.75`` are the DML paper's. Shapes as :class:`DiceLoss`; the output is a scalar.
    An empty batch (``N = 0`` or a spatial size 0) raises a ``ValueError``; a batch with every voxel left out gives 0
    with a zero gradient.

    Args:
        lambda_ce: weight of the CE/KL term, >= 0.
        lambda_dice: weight of the Dice term, >= 0.
        ce: ``"kl"`` or ``"ce"``.
        ignore_index: hard label to leave out (both terms), or ``None``.
        validate_args: check values on every call.
        **dice_kwargs: options of :class:`DiceLoss` (``include_background``, ``form``, ``smooth``, ``batch``, …).

    Reference:
        Wang, Popordanoska, Bertels, Lemmens, Blaschko, "Dice Semimetric Losses", MICCAI 2023.

    Example:
        >>> t = torch.tensor([[0.3, 0.6], [0.7, 0.4]]).view(1, 2, 1, 2)
        >>> abs(DiceCELoss()(t.log(), t).item()) < 1e-6
        True
    """

    def __init__(
        self,
        *,
        lambda_ce: float = 0.25,
        lambda_dice: float = 0.75,
        ce: Literal["kl", "ce"] = "kl",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **dice_kwargs: object,
    ) -> None:
        super().__init__()
        self.lambda_ce = check_positive("lambda_ce", lambda_ce, "DiceCELoss")
        self.lambda_dice = check_positive("lambda_dice", lambda_dice, "DiceCELoss")
        self.ce = look_up_option("ce", ce, ("kl", "ce"), where="DiceCELoss")
        self.dice = DiceLoss(ignore_index=ignore_index, validate_args=validate_args, **dice_kwargs)  # type: ignore[arg-type]

    def forward(
        self, input: Tensor, target: Tensor, *, weight: Tensor | None = None, keep_mask: Tensor | None = None
    ) -> Tensor:
        """Weighted sum of the CE/KL and Dice terms for logits ``input (N, C, *spatial)`` (one ``log_softmax``)."""
        input, prepared = self.dice.prepare(input, target, weight, keep_mask, where="DiceCELoss")
        log_probs = torch.log_softmax(input, dim=1)
        cross = cross_entropy_per_voxel(log_probs, prepared)
        if self.ce == "kl" and prepared.soft is not None:
            q = prepared.soft.to(log_probs.dtype)
            cross = cross + torch.xlogy(q, q).sum(1)
        ce = reduce_voxels(cross, prepared.voxel_weight, "mean")
        return self.lambda_ce * ce + self.lambda_dice * self.dice.from_probs(log_probs.exp(), prepared)
