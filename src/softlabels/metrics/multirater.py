"""Streaming multi-rater metrics (torchmetrics twins of :mod:`softlabels.metrics.functional.multirater`).

Every state is a fixed-size float64 sum or int64 count with ``dist_reduce_fx="sum"``, so batches and processes add up
exactly. A batch without voxels (``N = 0`` or a spatial size 0) holds no case: ``update`` checks it and changes
nothing; without data ``compute`` is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from softlabels.metrics.functional._inputs import has_no_voxels
from softlabels.metrics.functional.multirater import (
    QUBIQ_THRESHOLDS,
    Empty,
    Pairs,
    _generalized_energy_distance_arg_validation,
    _generalized_energy_distance_tensor_validation,
    _generalized_energy_distance_update,
    _mean_compute,
    _thresholded_dice_arg_validation,
    _thresholded_dice_reduce,
    _thresholded_dice_tensor_validation,
    _thresholded_dice_update,
)


class ThresholdedDice(Metric):
    """Streaming QUBIQ thresholded Dice; see :func:`softlabels.metrics.functional.multirater.thresholded_dice`.

    ``compute()`` gives the per-class mean over cases ``(C',)`` (torchmetrics squeezes ``C' == 1`` to a scalar);
    :meth:`compute_curve` the mean Dice per threshold ``(T, C')`` (a Dice-vs-threshold curve). NaN values
    (``empty="nan"``) are left out of the means.

    State (float64 sums, int64 counts, all summed): ``score_sum``/``n_cases`` ``(C',)`` per class;
    ``curve_sum``/``curve_count`` ``(T, C')``; ``n_both_empty`` ``(T, C')``, the number of cases whose prediction and
    reference are both empty at a threshold (``n_both_empty.sum()`` is the total number of such events).

    Args:
        num_classes: number of channels ``C`` of ``probs`` (1 = binary foreground probability).
        thresholds: strictly increasing thresholds in ``[0, 1)``; default ``0.1, 0.2, …, 0.9``.
        include_background: keep class 0.
        empty: Dice when both masks are empty at a threshold, ``"one"`` or ``"nan"``.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = ThresholdedDice(num_classes=1, thresholds=(0.3, 0.5))
        >>> metric.update(torch.tensor([[[0.05, 0.35, 0.65, 0.95]]]), torch.tensor([[[0.0, 0.0, 2 / 3, 1.0]]]))
        >>> metric.update(torch.tensor([[[0.1, 0.2]]]), torch.tensor([[[0.0, 0.0]]]))
        >>> metric.compute().tolist(), metric.compute_curve().tolist(), int(metric.n_both_empty.sum())
        (0.95, [[0.9], [1.0]], 2)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    score_sum: Tensor
    n_cases: Tensor
    curve_sum: Tensor
    curve_count: Tensor
    n_both_empty: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        thresholds: Sequence[float] = QUBIQ_THRESHOLDS,
        include_background: bool = False,
        empty: Empty = "one",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = type(self).__name__
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` of {where} must be an int >= 1; got {num_classes!r}.")
        self.thresholds = _thresholded_dice_arg_validation(where, thresholds, include_background, empty)
        self.num_classes, self.include_background, self.empty = num_classes, include_background, empty
        self.validate_args = validate_args
        n_kept = max(num_classes, 2) - (0 if include_background else 1)
        shape = (len(self.thresholds), n_kept)
        self.add_state("score_sum", torch.zeros(n_kept, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_cases", torch.zeros(n_kept, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("curve_sum", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("curve_count", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("n_both_empty", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Add a batch: ``probs (N, C, *spatial)``, ``target`` soft ``(N, C, *spatial)`` or labels ``(N, *spatial)``."""
        _thresholded_dice_tensor_validation(
            probs, target, where=type(self).__name__, check_values=self.validate_args, num_classes=self.num_classes
        )
        if has_no_voxels(probs):
            return
        stats = _thresholded_dice_update(
            probs, target, thresholds=self.thresholds, include_background=self.include_background
        )
        for name, value in _thresholded_dice_reduce(stats, self.empty).items():
            setattr(self, name, getattr(self, name) + value)

    def compute(self) -> Tensor:
        """Float64 ``(C',)`` mean thresholded Dice per class over the cases (NaN if none; scalar if ``C' == 1``)."""
        return _mean_compute(self.score_sum, self.n_cases)

    def compute_curve(self) -> Tensor:
        """Float64 ``(T, C')`` mean Dice per threshold and class over the cases (NaN if none); synced under DDP."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            return _mean_compute(self.curve_sum, self.curve_count)


class GeneralizedEnergyDistance(Metric):
    """Streaming squared GED, mean over cases.

    See :func:`softlabels.metrics.functional.multirater.generalized_energy_distance`. State: a float64 sum of the
    per-case values and an int64 count of cases.

    Args:
        num_classes: number of labels (``>= 2``).
        include_background: keep class 0 in the mean IoU.
        pairs: ``"distinct"`` or ``"all"`` pairs in the within-set expectations.
        validate_args: check label values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = GeneralizedEnergyDistance(pairs="all")
        >>> raters = torch.tensor([[[0, 1, 1, 0]], [[0, 1, 0, 0]]])
        >>> metric.update(raters, raters)
        >>> metric.update(torch.tensor([[[0, 0, 0, 1]]]), raters)
        >>> round(metric.compute().item(), 4)
        0.875
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(
        self,
        num_classes: int = 2,
        *,
        include_background: bool = False,
        pairs: Pairs = "all",
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _generalized_energy_distance_arg_validation(type(self).__name__, num_classes, include_background, pairs)
        self.num_classes, self.include_background, self.pairs = num_classes, include_background, pairs
        self.validate_args = validate_args
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, samples: Tensor, raters: Tensor) -> None:
        """Add a batch: ``samples (M, N, *spatial)`` and ``raters (R, N, *spatial)`` integer label maps."""
        _generalized_energy_distance_tensor_validation(
            samples,
            raters,
            num_classes=self.num_classes,
            pairs=self.pairs,
            where=type(self).__name__,
            check_values=self.validate_args,
        )
        if samples.numel() == 0:  # no case (N = 0) or cases without voxels: no data
            return
        values = _generalized_energy_distance_update(
            samples, raters, num_classes=self.num_classes, include_background=self.include_background, pairs=self.pairs
        )
        self.total += values.sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        """Float64 mean squared GED over the cases (NaN if none)."""
        return _mean_compute(self.total, self.count)
