"""Checking and formatting the ``(probs, target, mask)`` inputs shared by every probabilistic metric.

Conventions (DEVELOPERS.md, MONAI): ``probs`` is ``(N, C, *spatial)`` (``(N, C)`` for classification) and holds
probabilities over the class axis ``1``. ``target`` is either a hard label map ``(N, *spatial)`` of integer dtype, or
a soft target ``(N, C, *spatial)`` of floating dtype (e.g. a rater mean). ``C == 1`` means a binary task given as the
foreground probability; it is expanded to the two classes ``[1 - p, p]``. ``mask`` is a boolean ``(N, *spatial)``
selecting the voxels that count; ``ignore_index`` drops voxels of that label (hard targets only).

Nothing is clipped or reinterpreted: anything else raises a ``ValueError``/``TypeError`` that names the argument, the
metric, what is allowed and what came in; ``probs`` needs ``C >= 1`` classes.

Empty inputs: ``probs`` without voxels (``N = 0`` or a spatial size 0, :func:`has_no_voxels`) holds no data. The
functional metrics return their "no data" value (NaN; per case an ``(N, …)`` tensor of NaN, empty for ``N = 0``) and
the streaming ``update`` returns after the checks, leaving the state unchanged (docs/metrics.md, "Empty inputs").
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from softlabels._checks import check_distribution as _check_distribution


class FormattedInputs(NamedTuple):
    """Inputs reshaped for histogramming.

    ``probs (N, C, V)``, ``target (N, V)`` long or ``(N, C, V)`` float, ``keep (N, V)`` bool or ``None`` when every
    voxel counts.
    """

    probs: Tensor
    target: Tensor
    keep: Tensor | None

    @property
    def soft(self) -> bool:
        """Whether the target is soft (a distribution per voxel)."""
        return self.target.ndim == self.probs.ndim


def _check_labels(target: Tensor, num_classes: int, ignore_index: int | None, where: str) -> None:
    """Raise if a hard label map holds labels outside ``[0, num_classes − 1]`` other than ``ignore_index``."""
    if target.is_floating_point() or target.is_complex():
        raise TypeError(
            f"`target` of {where} with shape {tuple(target.shape)} is a label map and must have an integer dtype; "
            f"got {target.dtype}. Cast it with `.long()`, or pass a soft target of shape (N, C, *spatial)."
        )
    if target.numel() == 0:
        return
    valid = target if ignore_index is None else target[target != ignore_index]
    if valid.numel() == 0:
        return
    lo, hi = torch.aminmax(valid.long())
    n_labels = max(num_classes, 2)
    if int(lo) < 0 or int(hi) >= n_labels:
        raise ValueError(
            f"`target` of {where} must hold labels in [0, {n_labels - 1}]"
            f"{'' if ignore_index is None else f' or ignore_index={ignore_index}'}; got min {int(lo)}, max {int(hi)}."
        )


def _is_soft(probs: Tensor, target: Tensor) -> bool:
    """Whether ``target`` is a soft target (same shape as ``probs``) rather than a label map."""
    return target.shape == probs.shape and target.ndim > 1


def _check_probs_shape(probs: Tensor, where: str) -> None:
    """Raise unless ``probs`` is floating ``(N, C, *spatial)`` with ``C >= 1`` (``N`` and spatial sizes may be 0)."""
    if not probs.is_floating_point():
        raise TypeError(f"`probs` of {where} must have a floating dtype; got {probs.dtype}.")
    if probs.ndim < 2:
        raise ValueError(f"`probs` of {where} must have shape (N, C, *spatial); got {tuple(probs.shape)}.")
    if probs.shape[1] < 1:
        raise ValueError(
            f"`probs` of {where} must have at least one class, shape (N, C, *spatial) with C >= 1; "
            f"got {tuple(probs.shape)}."
        )


def _check_shapes(probs: Tensor, target: Tensor, mask: Tensor | None, ignore_index: int | None, where: str) -> None:
    """Raise on wrong types, dtypes, shapes or devices of ``probs``/``target``/``mask``."""
    if not isinstance(probs, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"`probs` and `target` of {where} must be torch.Tensors; got {type(probs)}, {type(target)}.")
    _check_probs_shape(probs, where)
    hard_shape = probs.shape[:1] + probs.shape[2:]
    if _is_soft(probs, target):
        if not target.is_floating_point():
            raise TypeError(
                f"soft `target` of {where} (shape {tuple(target.shape)}) must be floating; got {target.dtype}."
            )
        if ignore_index is not None:
            raise ValueError(f"`ignore_index` of {where} applies to label maps only; pass `mask=` with soft targets.")
    elif target.shape != hard_shape:
        raise ValueError(
            f"`target` of {where} must have shape {tuple(hard_shape)} (labels) or {tuple(probs.shape)} (soft) "
            f"to match `probs` of shape {tuple(probs.shape)}; got {tuple(target.shape)}."
        )
    if mask is not None:
        _check_mask(mask, hard_shape, where)
    if probs.device != target.device or (mask is not None and mask.device != probs.device):
        raise ValueError(f"`probs`, `target` and `mask` of {where} must be on one device.")


def _check_mask(mask: Tensor, shape: torch.Size, where: str) -> None:
    """Raise unless ``mask`` is a bool tensor of ``shape``."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"`mask` of {where} must be a bool tensor; got {getattr(mask, 'dtype', type(mask))}.")
    if mask.shape != shape:
        raise ValueError(f"`mask` of {where} must have shape {tuple(shape)}; got {tuple(mask.shape)}.")


def check_inputs(
    probs: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None,
    ignore_index: int | None,
    where: str,
    check_values: bool = True,
) -> None:
    """Validate shapes, dtypes and (if ``check_values``) values of ``probs``/``target``/``mask``.

    Args:
        probs: ``(N, C, *spatial)`` probabilities.
        target: ``(N, *spatial)`` integer labels or ``(N, C, *spatial)`` soft target.
        mask: ``(N, *spatial)`` bool or ``None``.
        ignore_index: a label to drop (hard targets only) or ``None``.
        where: the public metric name quoted in errors.
        check_values: also scan the values (NaN/inf, range, sums, label range); shapes are always checked.

    Raises:
        TypeError: wrong type or dtype.
        ValueError: wrong shape or invalid values.

    Example:
        >>> check_inputs(torch.tensor([[0.2, 0.8]]), torch.tensor([1]), mask=None, ignore_index=None, where="f")
    """
    _check_shapes(probs, target, mask, ignore_index, where)
    if check_values:
        _check_distribution(probs, "probs", where)
        if _is_soft(probs, target):
            _check_distribution(target, "target", where)
        else:
            _check_labels(target, probs.shape[1], ignore_index, where)


def format_inputs(probs: Tensor, target: Tensor, *, mask: Tensor | None, ignore_index: int | None) -> FormattedInputs:
    """Reshape checked inputs to ``probs (N, C, V)``, ``target (N, V)``/``(N, C, V)`` and ``keep (N, V)``.

    ``C == 1`` (binary, foreground probability) is expanded to ``[1 − p, p]`` (and a soft target likewise).
    ``keep`` combines ``mask`` and ``target != ignore_index``; it is ``None`` when every voxel counts. Ignored labels
    are replaced by 0 in the returned target (they are dropped by ``keep``).

    Example:
        >>> f = format_inputs(torch.full((2, 1, 3, 3), 0.7), torch.ones(2, 3, 3, dtype=torch.long), mask=None,
        ...                   ignore_index=None)
        >>> tuple(f.probs.shape), tuple(f.target.shape), f.keep is None
        ((2, 2, 9), (2, 9), True)
    """
    n, v = probs.shape[0], math.prod(probs.shape[2:])  # explicit V: a -1 is ambiguous for 0 elements
    soft = _is_soft(probs, target)
    if probs.shape[1] == 1:
        probs = torch.cat([1.0 - probs, probs], dim=1)
        if soft:
            target = torch.cat([1.0 - target, target], dim=1)
    p = probs.reshape(n, probs.shape[1], v)
    t = target.reshape(n, probs.shape[1], v) if soft else target.reshape(n, v)
    keep = None if mask is None else mask.reshape(n, v)
    if ignore_index is not None and not soft:
        valid = t != ignore_index
        keep = valid if keep is None else keep & valid
        t = t.masked_fill(~valid, 0)  # dropped by `keep`; a valid index for gathers
    return FormattedInputs(p, t if soft else t.long(), keep)


def has_no_voxels(probs: Tensor) -> bool:
    """Whether checked ``probs (N, C, *spatial)`` (``C >= 1``) holds no voxel: ``N = 0`` or a spatial size 0.

    Example:
        >>> has_no_voxels(torch.zeros(0, 3, 4, 4)), has_no_voxels(torch.zeros(2, 3, 0, 4))
        (True, True)
        >>> has_no_voxels(torch.zeros(1, 3))
        False
    """
    return probs.numel() == 0


def nan_without_voxels(values: Tensor, data: Tensor) -> Tensor:
    """Per-case ``values`` as they are, or all NaN when ``data`` (``probs``, or a label-map stack) has no element.

    A case without voxels is no data (NaN), not an empty structure (whose Dice may be 1).

    Example:
        >>> nan_without_voxels(torch.ones(2, 1, dtype=torch.float64), torch.zeros(2, 3, 0, 4)).tolist()
        [[nan], [nan]]
    """
    return torch.full_like(values, math.nan) if data.numel() == 0 else values
