"""Streaming segmentation overlap and distance metrics (``Metric`` twins of :mod:`..functional.segmentation`).

The formulas, the argmax rule, the empty-structure convention and the references are in the functional module; these
classes only hold the state, per kept class ``C'`` (``dist_reduce_fx="sum"``): a float64 sum of the per-case values
that are not NaN, the int64 count of those cases and, except for :class:`SoftDiceScore`, int64 counters of the cases
whose reference and prediction are both empty (``n_empty_both``), whose reference only is empty
(``n_empty_target_only``) and whose prediction only is empty (``n_empty_pred_only``). ``compute()`` is the per-class
mean over the counted cases ``(C',)`` (torchmetrics turns a single value into a 0-d tensor; NaN for a class without
any counted case, e.g. before any ``update``); ``compute_counts()`` returns the count and the empty-structure counters
``(C',)``. A batch without voxels (``N = 0`` or a spatial size 0) holds no case: ``update`` checks it and changes
nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from softlabels.metrics.functional._inputs import has_no_voxels
from softlabels.metrics.functional.segmentation import (
    Empty,
    Spacing,
    _case_mean_compute,
    _case_states,
    _distance_update,
    _overlap_compute,
    _overlap_update,
    _segmentation_arg_validation,
    _segmentation_tensor_validation,
    _soft_dice_update,
)

_COUNTERS = ("n_empty_both", "n_empty_target_only", "n_empty_pred_only")


class _CaseMeanMetric(Metric):
    """Shared state: per-class sum and count of the per-case values, optional empty-structure counters."""

    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    total: Tensor
    count: Tensor
    n_empty_both: Tensor
    n_empty_target_only: Tensor
    n_empty_pred_only: Tensor

    def _declare(self, num_classes: int, include_background: bool, validate_args: bool, counters: bool) -> None:
        """Add the fixed-size ``(C',)`` states."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` of {type(self).__name__} must be an int >= 1; got {num_classes!r}.")
        self.num_classes, self.include_background, self.validate_args = num_classes, include_background, validate_args
        self._counters = _COUNTERS if counters else ()
        shape = (max(num_classes, 2) - (0 if include_background else 1),)
        self.add_state("total", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("count", *self._counters):
            self.add_state(name, torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def _add_cases(self, values: Tensor, flags: tuple[Tensor, Tensor] | None = None) -> None:
        """Add per-case values ``(N, C')`` (NaN = not counted) and the (reference empty, prediction empty) flags."""
        for name, value in _case_states(values, flags).items():
            setattr(self, name, getattr(self, name) + value)

    def compute(self) -> Tensor:
        """Per-class mean ``(C',)`` over the counted cases, float64 (NaN for a class without any)."""
        return _case_mean_compute(self.total, self.count)

    def compute_counts(self) -> dict[str, Tensor]:
        """Int64 ``(C',)`` counted cases (``"count"``) and empty-structure counters, synced; call on every process."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            return {name: getattr(self, name).clone() for name in ("count", *self._counters)}


class _OverlapMetric(_CaseMeanMetric):
    """Dice or IoU per case, averaged over cases."""

    higher_is_better = True
    plot_upper_bound = 1.0
    _kind = "dice"

    def __init__(
        self,
        num_classes: int,
        *,
        include_background: bool = False,
        empty: Empty = "one",
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _segmentation_arg_validation(type(self).__name__, include_background, num_classes, empty, ignore_index)
        self.empty, self.ignore_index = empty, ignore_index
        self._declare(num_classes, include_background, validate_args, counters=True)

    def update(self, probs: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch: ``probs (N, C, *spatial)``, label map ``target (N, *spatial)``, optional bool ``mask``."""
        where, ignore = type(self).__name__, self.ignore_index
        _segmentation_tensor_validation(
            probs, target, mask, ignore, where, self.validate_args, "overlap", self.num_classes
        )
        if has_no_voxels(probs):
            return
        stats = _overlap_update(
            probs, target, include_background=self.include_background, mask=mask, ignore_index=ignore
        )
        self._add_cases(_overlap_compute(stats, kind=self._kind, empty=self.empty), stats.empty_flags())


class DiceScore(_OverlapMetric):
    """Streaming Dice: per-class mean over cases; see :func:`softlabels.metrics.functional.segmentation.dice_score`.

    With ``empty="nan"`` the cases with both masks empty are not counted in the mean; ``compute_counts()`` reports
    them in every mode.

    Args:
        num_classes: channels ``C`` of ``probs`` (1 = binary foreground probability); sizes the states.
        include_background: keep class 0.
        empty: Dice when both masks are empty, ``"one"`` or ``"nan"``.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = DiceScore(num_classes=2)
        >>> probs = torch.tensor([[[[0.9, 0.3, 0.2, 0.4]], [[0.1, 0.7, 0.8, 0.6]]]])  # argmax [0, 1, 1, 1]
        >>> metric.update(probs, torch.tensor([[[0, 1, 1, 0]]]))
        >>> metric.update(torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]]), torch.tensor([[[0, 0]]]))
        >>> metric.compute()
        tensor(0.9000, dtype=torch.float64)
        >>> metric.compute_counts()["n_empty_both"]
        tensor([1])
    """

    _kind = "dice"


class IoUScore(_OverlapMetric):
    """Streaming IoU (Jaccard): per-class mean over cases; see :func:`..functional.segmentation.iou_score`.

    Args:
        num_classes: channels ``C`` of ``probs`` (1 = binary foreground probability); sizes the states.
        include_background: keep class 0.
        empty: IoU when both masks are empty, ``"one"`` or ``"nan"``.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = IoUScore(num_classes=2, empty="nan")
        >>> probs = torch.tensor([[[[0.9, 0.3, 0.2, 0.4]], [[0.1, 0.7, 0.8, 0.6]]]])  # argmax [0, 1, 1, 1]
        >>> metric.update(probs, torch.tensor([[[0, 1, 1, 0]]]))
        >>> metric.update(torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]]), torch.tensor([[[0, 0]]]))
        >>> metric.compute()
        tensor(0.6667, dtype=torch.float64)
    """

    _kind = "iou"


class SoftDiceScore(_CaseMeanMetric):
    """Streaming soft Dice (Dice semimetric form); see :func:`..functional.segmentation.soft_dice_score`.

    State: per-class float64 sum of the per-case soft Dice and int64 count of cases (no empty counters: both empty
    gives 1).

    Args:
        num_classes: channels ``C`` of ``probs`` (1 = binary foreground probability); sizes the states.
        include_background: keep class 0.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = SoftDiceScore(num_classes=1)
        >>> metric.update(torch.tensor([[[0.8, 0.2]]]), torch.tensor([[[0.6, 0.0]]]))
        >>> metric.update(torch.tensor([[[0.5, 0.5]]]), torch.tensor([[[0.5, 0.5]]]))
        >>> metric.compute()
        tensor(0.8750, dtype=torch.float64)
    """

    higher_is_better = True
    plot_upper_bound = 1.0

    def __init__(
        self,
        num_classes: int,
        *,
        include_background: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _segmentation_arg_validation(type(self).__name__, include_background, num_classes)
        self._declare(num_classes, include_background, validate_args, counters=False)

    def update(self, probs: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch: ``probs (N, C, *spatial)``, soft ``(N, C, *spatial)`` or label ``target``, optional ``mask``."""
        where = type(self).__name__
        _segmentation_tensor_validation(probs, target, mask, None, where, self.validate_args, "soft", self.num_classes)
        if has_no_voxels(probs):
            return
        stats = _soft_dice_update(probs, target, include_background=self.include_background, mask=mask)
        self._add_cases(_overlap_compute(stats, kind="dice"))


class _DistanceMetric(_CaseMeanMetric):
    """HD95 or ASSD per case, averaged over the cases where both masks are non-empty."""

    higher_is_better = False
    _kind = "hd95"

    def __init__(
        self,
        num_classes: int,
        *,
        include_background: bool = False,
        spacing: Spacing = None,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = type(self).__name__
        _segmentation_arg_validation(where, include_background, num_classes, None, ignore_index, spacing)
        self.spacing, self.ignore_index = spacing, ignore_index
        self._declare(num_classes, include_background, validate_args, counters=True)

    def update(self, probs: Tensor, target: Tensor, spacing: Spacing = None) -> None:
        """Add a batch ``probs (N, C, H, W[, D])``, labels ``(N, *spatial)``; ``spacing`` overrides the default."""
        where = type(self).__name__
        if spacing is None:
            spacing = self.spacing
        else:
            _segmentation_arg_validation(where, self.include_background, spacing=spacing)
        _segmentation_tensor_validation(
            probs, target, None, self.ignore_index, where, self.validate_args, "distance", self.num_classes, spacing
        )
        if has_no_voxels(probs):
            return
        values, target_empty, pred_empty = _distance_update(
            probs, target, self._kind, self.include_background, spacing, self.ignore_index
        )
        self._add_cases(values, (target_empty, pred_empty))


class HausdorffDistance95(_DistanceMetric):
    """Streaming HD95; see :func:`softlabels.metrics.functional.segmentation.hausdorff_distance_95`.

    The mean runs over the cases where both masks are non-empty; the others are NaN per case and counted in
    ``compute_counts()`` (both empty: excluded; one empty: flagged).

    Args:
        num_classes: channels ``C`` of ``probs`` (1 = binary foreground probability); sizes the states.
        include_background: keep class 0.
        spacing: default voxel size, one number or one per spatial dim; ``update(..., spacing=)`` overrides it.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> target = torch.zeros(2, 6, 6, dtype=torch.long)
        >>> target[0, 1:3, 1:3] = 1  # case 0: a 2x2 square, predicted 2 columns to the right; case 1: empty
        >>> metric = HausdorffDistance95(num_classes=1, spacing=(1.0, 0.5))
        >>> metric.update(target.roll(2, dims=2).unsqueeze(1).float(), target)
        >>> metric.compute(), metric.compute_counts()["n_empty_both"]
        (tensor(1., dtype=torch.float64), tensor([1]))
    """

    _kind = "hd95"


class AverageSurfaceDistance(_DistanceMetric):
    """Streaming symmetric ASSD; see :func:`softlabels.metrics.functional.segmentation.average_surface_distance`.

    The mean runs over the cases where both masks are non-empty; the others are counted in ``compute_counts()``.

    Args:
        num_classes: channels ``C`` of ``probs`` (1 = binary foreground probability); sizes the states.
        include_background: keep class 0.
        spacing: default voxel size, one number or one per spatial dim; ``update(..., spacing=)`` overrides it.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> target = torch.zeros(1, 6, 6, dtype=torch.long)
        >>> target[0, 1:3, 1:3] = 1
        >>> metric = AverageSurfaceDistance(num_classes=1)
        >>> metric.update(target.roll(2, dims=2).unsqueeze(1).float(), target, spacing=(1.0, 0.5))
        >>> metric.compute()
        tensor(0.7500, dtype=torch.float64)
    """

    _kind = "assd"
