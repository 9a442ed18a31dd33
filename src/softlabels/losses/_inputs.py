"""Checking the ``(input, target, weight, keep_mask)`` of every loss, and the shared voxel reduction.

Conventions (docs/methods.md §0.1, MONAI): ``input`` is logits ``(N, C, *spatial)`` (``(N, C)`` for classification)
with ``C >= 2``. ``target`` is a hard label map ``(N, *spatial)`` of integer dtype (``(N, 1, *spatial)`` as MONAI
collates it is accepted), or a soft target ``(N, C, *spatial)`` of floating dtype that is a distribution over ``C``.
``weight`` is a float ``(N, *spatial)`` voxel weight ``>= 0``; ``keep_mask`` a bool ``(N, *spatial)`` selecting the
voxels that count (a soft target has no index to ignore). ``reduction="mean"`` is the weighted mean
``Σ_v w_v ℓ_v / Σ_v w_v`` over kept voxels (``w = 1`` without weights).

Empty inputs: logits without voxels (``N = 0`` or a spatial size 0) are an empty batch, which has no loss: a
``ValueError`` for every reduction (an empty batch is a data-pipeline fault; a NaN mean would only surface later).
A batch whose voxels exist but are all left out (``keep_mask`` all ``False``, every label ``ignore_index``, all
weights 0) is a valid batch with nothing to learn: ``"mean"`` and ``"sum"`` give 0 with a zero gradient, never NaN
(PyTorch's ``cross_entropy`` gives NaN there), and ``"none"`` the per-voxel zeros.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from softlabels._checks import check_distribution
from softlabels._options import look_up_option

Reduction = Literal["mean", "sum", "none"]


class LossTarget(NamedTuple):
    """A checked target: ``hard (N, *spatial)`` long (ignored voxels set to 0) or ``soft (N, C, *spatial)``.

    ``voxel_weight (N, *spatial)`` combines ``weight``, ``keep_mask`` and ``ignore_index``; ``None`` when every voxel
    counts with weight 1. ``ignored (N, *spatial)`` marks the ``ignore_index`` voxels (``None`` without any).
    """

    hard: Tensor | None
    soft: Tensor | None
    voxel_weight: Tensor | None
    ignored: Tensor | None = None

    def one_hot(self, num_classes: int, dtype: torch.dtype) -> Tensor:
        """The target as a distribution ``(N, C, *spatial)`` (one-hot for hard labels; ignored voxels all 0)."""
        if self.hard is None:
            return cast(Tensor, self.soft).to(dtype)
        onehot = torch.zeros(
            (self.hard.shape[0], num_classes, *self.hard.shape[1:]), dtype=dtype, device=self.hard.device
        )
        onehot.scatter_(1, self.hard.unsqueeze(1), 1.0)  # contiguous, unlike F.one_hot + movedim
        return onehot if self.ignored is None else onehot.masked_fill_(self.ignored.unsqueeze(1), 0.0)


def check_reduction(reduction: object, where: str) -> Reduction:
    """Resolve ``reduction`` to ``"mean"``, ``"sum"`` or ``"none"``, with a clear error otherwise."""
    return look_up_option("reduction", reduction, ("mean", "sum", "none"), where=where)  # type: ignore[return-value]


def check_ignore_index(ignore_index: object, where: str) -> int | None:
    """Check that ``ignore_index`` is an int or ``None``."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"`ignore_index` of {where} must be an int or None; got {type(ignore_index).__name__}.")
    return ignore_index


def check_positive(name: str, value: object, where: str, *, allow_zero: bool = True) -> float:
    """Check that ``value`` is a finite real ``>= 0`` (``> 0`` with ``allow_zero=False``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` of {where} must be a float; got {type(value).__name__} {value!r}.")
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and value < float("inf")):
        raise ValueError(f"`{name}` of {where} must be a finite float {'>=' if allow_zero else '>'} 0; got {value!r}.")
    return float(value)


def check_not_empty(input: Tensor, where: str) -> None:
    """Raise if ``input (N, C, *spatial)`` with ``C >= 2`` has no voxel (``N = 0`` or a spatial size 0).

    Example:
        >>> check_not_empty(torch.zeros(2, 3, 0, 4), "f")
        Traceback (most recent call last):
        ...
        ValueError: `input` of f is empty (shape (2, 3, 0, 4)): an empty batch (N = 0 or a spatial size 0) has no loss.
    """
    if input.numel() == 0:
        raise ValueError(
            f"`input` of {where} is empty (shape {tuple(input.shape)}): an empty batch (N = 0 or a spatial size 0) "
            "has no loss."
        )


def check_logits(input: Tensor, where: str, *, validate_args: bool) -> Tensor:
    """Check that ``input`` is a floating, non-empty ``(N, C, *spatial)`` tensor with ``C >= 2`` (and finite)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"`input` of {where} must be a torch.Tensor of logits; got {type(input).__name__}.")
    if not input.is_floating_point():
        raise TypeError(f"`input` of {where} must be floating logits; got dtype {input.dtype}.")
    if input.ndim < 2 or input.shape[1] < 2:
        raise ValueError(
            f"`input` of {where} must be logits (N, C, *spatial) with C >= 2; got shape {tuple(input.shape)}."
        )
    check_not_empty(input, where)
    if validate_args and not bool(torch.isfinite(input).all()):
        n_bad = int((~torch.isfinite(input)).sum())
        raise ValueError(f"`input` of {where} must be finite; got {n_bad} NaN/inf logit(s).")
    return input


def _voxel_map(value: Tensor | None, name: str, input: Tensor, where: str) -> Tensor | None:
    """A per-voxel ``(N, *spatial)`` map (``(N, 1, *spatial)`` accepted) checked against ``input``'s shape."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        raise TypeError(f"`{name}` of {where} must be a torch.Tensor or None; got {type(value).__name__}.")
    shape = input.shape[:1] + input.shape[2:]
    if value.ndim == input.ndim and value.shape[1] == 1:
        value = value.squeeze(1)
    if value.shape != shape:
        raise ValueError(
            f"`{name}` of {where} must have shape {tuple(shape)} for input {tuple(input.shape)}; "
            f"got {tuple(value.shape)}."
        )
    return value


def _check_hard(target: Tensor, num_classes: int, ignore_index: int | None, where: str) -> None:
    valid = target if ignore_index is None else target[target != ignore_index]
    if valid.numel() == 0:
        return
    lo, hi = torch.aminmax(valid)
    if int(lo) < 0 or int(hi) >= num_classes:
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(
            f"`target` of {where} must hold labels in [0, {num_classes - 1}]{extra}; got min {int(lo)}, max {int(hi)}."
        )


def _check_weight(weight: Tensor, where: str) -> None:
    if not weight.is_floating_point():
        raise TypeError(f"`weight` of {where} must be a floating tensor; got dtype {weight.dtype}.")
    if weight.numel() and not bool(((weight >= 0) & torch.isfinite(weight)).all()):
        bad = weight[~((weight >= 0) & torch.isfinite(weight))][0].item()
        raise ValueError(f"`weight` of {where} must be finite and >= 0 (never clipped); got {bad}.")


def _split_target(
    input: Tensor, target: object, ignore_index: int | None, where: str, validate_args: bool
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Return ``(hard, soft, ignored)`` with ``hard`` long (ignored set to 0) or ``soft`` float."""
    if not isinstance(target, Tensor):
        raise TypeError(f"`target` of {where} must be a torch.Tensor; got {type(target).__name__}.")
    if target.is_floating_point():
        if target.shape != input.shape:
            raise ValueError(
                f"a soft (floating) `target` of {where} must have the shape of `input` {tuple(input.shape)}; "
                f"got {tuple(target.shape)}. Hard label maps need an integer dtype."
            )
        if validate_args:
            check_distribution(target, "target", where)
        return None, target, None
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"`target` of {where} must be integer labels or a floating soft target; got {target.dtype}.")
    hard = cast(Tensor, _voxel_map(target, "target", input, where))
    if validate_args:
        _check_hard(hard, input.shape[1], ignore_index, where)
    hard = hard.long()
    if ignore_index is None:
        return hard, None, None
    ignored = hard == ignore_index
    return hard.masked_fill(ignored, 0), None, ignored


def prepare_target(
    input: Tensor,
    target: object,
    *,
    weight: Tensor | None,
    keep_mask: Tensor | None,
    ignore_index: int | None,
    where: str,
    validate_args: bool,
) -> LossTarget:
    """Check ``target``, ``weight`` and ``keep_mask`` against logits ``input`` and combine the voxel weights."""
    hard, soft, ignored = _split_target(input, target, ignore_index, where, validate_args)
    weight = _voxel_map(weight, "weight", input, where)
    keep_mask = _voxel_map(keep_mask, "keep_mask", input, where)
    if keep_mask is not None and keep_mask.dtype != torch.bool:
        raise TypeError(f"`keep_mask` of {where} must be a bool tensor; got dtype {keep_mask.dtype}.")
    if weight is not None and validate_args:
        _check_weight(weight, where)
    voxel_weight = None if weight is None else weight.to(input.dtype)
    for drop in (None if keep_mask is None else ~keep_mask, ignored):
        if drop is not None:
            base = torch.ones_like(input[:, 0]) if voxel_weight is None else voxel_weight
            voxel_weight = base.masked_fill(drop, 0.0)
    return LossTarget(hard, soft, voxel_weight, ignored)


def reduce_voxels(values: Tensor, voxel_weight: Tensor | None, reduction: Reduction) -> Tensor:
    """Reduce per-voxel losses ``(N, *spatial)``: weighted mean over kept voxels, weighted sum, or per voxel.

    With no kept voxel (all weights 0) the mean is 0 (with a zero gradient), never NaN. Empty ``values`` never come
    here: :func:`check_logits` refuses an empty batch.
    """
    if voxel_weight is None:
        if reduction == "mean":
            return values.mean()
        return values.sum() if reduction == "sum" else values
    weighted = values * voxel_weight
    if reduction == "none":
        return weighted
    total = weighted.sum()
    if reduction == "sum":
        return total
    denominator = voxel_weight.sum()
    return total / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def cross_entropy_per_voxel(log_probs: Tensor, target: LossTarget) -> Tensor:
    """``−Σ_c q_c log p_c`` per voxel ``(N, *spatial)`` from ``log_softmax`` output ``(N, C, *spatial)``."""
    if target.hard is not None:
        return -log_probs.gather(1, target.hard.unsqueeze(1)).squeeze(1)
    return -(cast(Tensor, target.soft).to(log_probs.dtype) * log_probs).sum(1)


def cross_entropy_of_logits(logits: Tensor, target: LossTarget) -> Tensor:
    """``−Σ_c q_c log softmax(z)_c`` per voxel ``(N, *spatial)``; hard labels take PyTorch's fused kernel.

    The fused ``F.cross_entropy`` keeps no ``(N, C, *spatial)`` log-probability tensor for the backward pass.
    """
    if target.hard is not None:
        return F.cross_entropy(logits, target.hard, reduction="none")
    return cross_entropy_per_voxel(torch.log_softmax(logits, dim=1), target)
