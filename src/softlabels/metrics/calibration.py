"""Streaming calibration metrics (torchmetrics ``Metric`` twins of :mod:`softlabels.metrics.functional.calibration`).

The formulas, bin convention and references are in the functional module; these classes only hold the state: one
``(rows, n_bins)`` histogram of int64 counts and float64 confidence/outcome sums, summed across batches and processes
(``dist_reduce_fx="sum"``), so memory does not grow with the number of voxels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from softlabels.metrics._states import CaseListMetric, cat_cases
from softlabels.metrics.functional._inputs import has_no_voxels
from softlabels.metrics.functional.adaptive_calibration import (
    BoundedValue,
    _adaptive_calibration_error_arg_validation,
    _adaptive_calibration_error_compute,
)
from softlabels.metrics.functional.calibration import (
    CalibrationHistogram,
    Mode,
    Norm,
    ReliabilityDiagram,
    _calibration_error_arg_validation,
    _calibration_error_compute,
    _calibration_error_tensor_validation,
    _calibration_histogram_update,
    _reliability_diagram_compute,
)


def _check_num_classes(num_classes: int, where: str) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` of {where} must be an int >= 1; got {num_classes!r}.")


class _HistogramMetric(CaseListMetric):
    """Shared state handling of the histogram metrics: pooled sums plus optional per-case rows."""

    full_state_update = False
    counts: Tensor
    confidence_sum: Tensor
    outcome_sum: Tensor
    case_counts: list[Tensor]
    case_confidence_sum: list[Tensor]
    case_outcome_sum: list[Tensor]

    def _declare_histogram(self, rows: int, n_bins: int, per_case: bool) -> None:
        self.add_state("counts", torch.zeros(rows, n_bins, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("confidence_sum", torch.zeros(rows, n_bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outcome_sum", torch.zeros(rows, n_bins, dtype=torch.float64), dist_reduce_fx="sum")
        if per_case:  # one (rows, n_bins) histogram per case: per case by definition, documented in the class
            self.add_state("case_counts", [], dist_reduce_fx="cat")
            self.add_state("case_confidence_sum", [], dist_reduce_fx="cat")
            self.add_state("case_outcome_sum", [], dist_reduce_fx="cat")

    def _add(self, hist: CalibrationHistogram, per_case: bool) -> None:
        """Add a pooled ``(rows, B)`` histogram, or a per-case ``(N, rows, B)`` one if ``per_case``."""
        pooled = CalibrationHistogram(*(t.sum(0) for t in hist)) if per_case else hist
        self.counts += pooled.counts
        self.confidence_sum += pooled.confidence
        self.outcome_sum += pooled.outcome
        if per_case:
            self.case_counts.append(hist.counts)
            self.case_confidence_sum.append(hist.confidence)
            self.case_outcome_sum.append(hist.outcome)

    def _pooled(self) -> CalibrationHistogram:
        return CalibrationHistogram(self.counts, self.confidence_sum, self.outcome_sum)

    def _empty_cases(self) -> dict[str, Tensor]:
        if not getattr(self, "per_case", False):
            return {}
        names = ("case_counts", "case_confidence_sum", "case_outcome_sum")
        return {name: t.new_zeros((0, *t.shape)) for name, t in zip(names, self._pooled(), strict=True)}

    def _cases(self) -> CalibrationHistogram:
        """Per-case histograms ``(n_cases, rows, n_bins)``; 0 cases before any non-empty ``update``."""
        empty = self._empty_cases()
        return CalibrationHistogram(
            cat_cases(self.case_counts, empty["case_counts"]),
            cat_cases(self.case_confidence_sum, empty["case_confidence_sum"]),
            cat_cases(self.case_outcome_sum, empty["case_outcome_sum"]),
        )


class CalibrationError(_HistogramMetric):
    """Streaming binned calibration error (ECE / RMSCE / MCE / ACE; top-label, classwise or marginal).

    See :func:`softlabels.metrics.functional.calibration.calibration_error` for the definitions. ``update`` takes
    ``probs (N, C, *spatial)``, ``target`` ``(N, *spatial)`` int or ``(N, C, *spatial)`` soft and an optional bool
    ``mask (N, *spatial)``.

    State: int64 counts and float64 sums of shape ``(rows, n_bins)`` (``rows`` = 1 top-label, C otherwise), summed
    over batches and processes. With ``per_case=True`` each case (item along ``N``) also keeps its own
    ``(rows, n_bins)`` histogram (a documented per-case list state, 24·rows·n_bins bytes per case), and ``compute``
    returns ``{"pooled": value, "per_case": (n_cases,) values}`` from the same pass.

    Empty batches (``N = 0`` or a spatial size 0) are checked and then ignored: the state is unchanged and no case is
    added. Without data (no ``update``, or empty batches only) ``compute`` gives a NaN pooled value and an empty
    ``(0,)`` per-case tensor.

    Args:
        num_classes: number of channels ``C`` of ``probs`` (1 = binary foreground probability).
        n_bins: number of equal-width bins.
        norm: ``"l1"``, ``"l2"``, ``"max"`` or ``"ace"``.
        mode: ``"top_label"``, ``"classwise"`` or ``"marginal"``.
        include_background: keep class 0 in classwise/marginal modes.
        ignore_index: label whose voxels are dropped.
        per_case: also return one value per case.
        validate_args: check input values on every update (shapes are always checked).
        kwargs: passed to :class:`torchmetrics.Metric` (``process_group``, ``dist_sync_fn``, ...).

    Example:
        >>> metric = CalibrationError(num_classes=2, n_bins=10)
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.2, 0.8]]), torch.tensor([1]))
        >>> round(float(metric.compute()), 4)
        0.3
    """

    is_differentiable = False
    higher_is_better = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        num_classes: int,
        *,
        n_bins: int = 15,
        norm: Norm = "l1",
        mode: Mode = "top_label",
        include_background: bool = True,
        ignore_index: int | None = None,
        per_case: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_num_classes(num_classes, "CalibrationError")
        _calibration_error_arg_validation(n_bins, norm, mode, where="CalibrationError")
        self.num_classes, self.n_bins, self.norm, self.mode = num_classes, n_bins, norm, mode
        self.include_background, self.ignore_index = include_background, ignore_index
        self.per_case, self.validate_args = per_case, validate_args
        rows = 1 if mode == "top_label" else max(num_classes, 2)
        self._declare_histogram(rows, n_bins, per_case)

    def update(self, probs: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch to the histogram (an empty batch is checked, then changes nothing)."""
        _calibration_error_tensor_validation(
            probs,
            target,
            mask,
            self.ignore_index,
            self.num_classes,
            where="CalibrationError",
            check_values=self.validate_args,
        )
        if has_no_voxels(probs):
            return
        hist = _calibration_histogram_update(
            probs,
            target,
            n_bins=self.n_bins,
            mode=self.mode,
            mask=mask,
            ignore_index=self.ignore_index,
            per_case=self.per_case,
        )
        self._add(hist, self.per_case)

    def compute(self) -> Tensor | dict[str, Tensor]:
        """Pooled value (float64 scalar, NaN without samples), plus per-case values ``(n_cases,)`` if ``per_case``."""
        pooled = self._compute(self._pooled())
        if not self.per_case:
            return pooled
        return {"pooled": pooled, "per_case": self._compute(self._cases())}

    def _compute(self, hist: CalibrationHistogram) -> Tensor:
        return _calibration_error_compute(
            hist, norm=self.norm, mode=self.mode, include_background=self.include_background
        )

    def reliability_diagram(self) -> ReliabilityDiagram:
        """Reliability-diagram data of the accumulated (synced) histogram; call it on every process under DDP."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            return _reliability_diagram_compute(
                self._pooled(), mode=self.mode, include_background=self.include_background
            )


class AdaptiveCalibrationError(_HistogramMetric):
    """Streaming equal-mass (adaptive) ECE from a fine histogram, with a bound on its deviation from the exact value.

    See :func:`softlabels.metrics.functional.adaptive_calibration.adaptive_calibration_error`. State: int64 counts
    and float64 sums of shape ``(rows, n_fine_bins)``. An empty batch changes nothing; without data the value and
    the bound are NaN.

    Example:
        >>> metric = AdaptiveCalibrationError(num_classes=2, n_bins=2)
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]]), torch.tensor([0, 1, 1, 1]))
        >>> result = metric.compute()
        >>> round(float(result.value), 4), float(result.error_bound)
        (0.15, 0.0)
    """

    is_differentiable = False
    higher_is_better = False

    def __init__(
        self,
        num_classes: int,
        *,
        n_bins: int = 15,
        n_fine_bins: int = 10_000,
        mode: Mode = "top_label",
        include_background: bool = True,
        ignore_index: int | None = None,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_num_classes(num_classes, "AdaptiveCalibrationError")
        _adaptive_calibration_error_arg_validation(n_bins, n_fine_bins, mode, where="AdaptiveCalibrationError")
        self.num_classes, self.n_bins, self.n_fine_bins, self.mode = num_classes, n_bins, n_fine_bins, mode
        self.include_background, self.ignore_index, self.validate_args = include_background, ignore_index, validate_args
        rows = 1 if mode == "top_label" else max(num_classes, 2)
        self._declare_histogram(rows, n_fine_bins, per_case=False)

    def update(self, probs: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch to the fine histogram (an empty batch is checked, then changes nothing)."""
        _calibration_error_tensor_validation(
            probs,
            target,
            mask,
            self.ignore_index,
            self.num_classes,
            where="AdaptiveCalibrationError",
            check_values=self.validate_args,
        )
        if has_no_voxels(probs):
            return
        hist = _calibration_histogram_update(
            probs, target, n_bins=self.n_fine_bins, mode=self.mode, mask=mask, ignore_index=self.ignore_index
        )
        self._add(hist, per_case=False)

    def compute(self) -> BoundedValue:
        """Adaptive ECE and its error bound (float64 scalars)."""
        return _adaptive_calibration_error_compute(
            self._pooled(), n_bins=self.n_bins, mode=self.mode, include_background=self.include_background
        )
