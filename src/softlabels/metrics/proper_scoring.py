"""Streaming Brier score and NLL (torchmetrics twins of :mod:`softlabels.metrics.functional.proper_scoring`).

State: a float64 sum and an int64 count (``dist_reduce_fx="sum"``); with ``per_case=True`` also one (sum, count)
row per case (a documented per-case list state). An empty batch (``N = 0`` or a spatial size 0) is checked and then
changes nothing (no case is added); without data the pooled value is NaN and the per-case values are a ``(0,)`` tensor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from softlabels.metrics._states import CaseListMetric, cat_cases
from softlabels.metrics.functional._inputs import has_no_voxels
from softlabels.metrics.functional.proper_scoring import (
    ScoreSums,
    _proper_score_arg_validation,
    _proper_score_compute,
    _proper_score_tensor_validation,
    _proper_score_update,
)


class _ProperScore(CaseListMetric):
    """Shared state and update of the proper scoring rules."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    total: Tensor
    count: Tensor
    case_total: list[Tensor]
    case_count: list[Tensor]
    _kind = "brier"

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = None,
        per_case: bool = False,
        validate_args: bool = True,
        eps: float = 1e-12,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = type(self).__name__
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` of {where} must be an int >= 1; got {num_classes!r}.")
        _proper_score_arg_validation(eps, where)
        self.num_classes, self.ignore_index, self.per_case = num_classes, ignore_index, per_case
        self.validate_args, self.eps = validate_args, float(eps)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        if per_case:  # one value per case by definition
            self.add_state("case_total", [], dist_reduce_fx="cat")
            self.add_state("case_count", [], dist_reduce_fx="cat")

    def update(self, probs: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch ``probs (N, C, *spatial)``, ``target`` labels or soft, optional ``mask`` (empty: no change)."""
        where = type(self).__name__
        _proper_score_tensor_validation(
            probs, target, mask, self.ignore_index, where=where, check_values=self.validate_args
        )
        if probs.shape[1] != self.num_classes:
            raise ValueError(
                f"`probs` of {where} must have num_classes={self.num_classes} channels; got {probs.shape[1]}."
            )
        if has_no_voxels(probs):
            return
        sums = _proper_score_update(
            probs, target, kind=self._kind, eps=self.eps, mask=mask, ignore_index=self.ignore_index
        )
        self.total += sums.total.sum()
        self.count += sums.n_voxels.sum()
        if self.per_case:
            self.case_total.append(sums.total)
            self.case_count.append(sums.n_voxels)

    def compute(self) -> Tensor | dict[str, Tensor]:
        """Mean over all kept voxels (float64, NaN if none), plus per-case means ``(n_cases,)`` if ``per_case``."""
        pooled = _proper_score_compute(ScoreSums(self.total, self.count))
        if not self.per_case:
            return pooled
        empty = self._empty_cases()
        total = cat_cases(self.case_total, empty["case_total"])
        count = cat_cases(self.case_count, empty["case_count"])
        return {"pooled": pooled, "per_case": total / count}

    def _empty_cases(self) -> dict[str, Tensor]:
        if not self.per_case:
            return {}
        return {"case_total": self.total.new_zeros(0), "case_count": self.count.new_zeros(0)}


class BrierScore(_ProperScore):
    """Streaming Brier score; see :func:`softlabels.metrics.functional.proper_scoring.brier_score`.

    Args:
        num_classes: number of channels ``C`` of ``probs`` (1 = binary foreground probability).
        ignore_index: label whose voxels are dropped.
        per_case: also return per-case values.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = BrierScore(num_classes=2)
        >>> metric.update(torch.tensor([[0.8, 0.2]]), torch.tensor([0]))
        >>> metric.update(torch.tensor([[0.5, 0.5]]), torch.tensor([1]))
        >>> round(metric.compute().item(), 6)
        0.29
    """

    _kind = "brier"

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = None,
        per_case: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_classes, ignore_index=ignore_index, per_case=per_case, validate_args=validate_args, **kwargs
        )


class NegativeLogLikelihood(_ProperScore):
    """Streaming NLL with clamping at ``eps``.

    See :func:`softlabels.metrics.functional.proper_scoring.negative_log_likelihood`.

    Args:
        num_classes: number of channels ``C`` of ``probs`` (1 = binary foreground probability).
        eps: clamping floor for probabilities.
        ignore_index: label whose voxels are dropped.
        per_case: also return per-case values.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = NegativeLogLikelihood(num_classes=2)
        >>> metric.update(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1]))
        >>> round(metric.compute().item(), 6)
        0.490415
    """

    _kind = "nll"

    def __init__(
        self,
        num_classes: int,
        *,
        eps: float = 1e-12,
        ignore_index: int | None = None,
        per_case: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_classes, ignore_index=ignore_index, per_case=per_case, validate_args=validate_args, eps=eps, **kwargs
        )
