r"""Adaptive (equal-mass) ECE computed from a fine streaming histogram, with a guaranteed error bound.

Exact equal-mass binning needs every confidence sorted, i.e. the whole test set in memory. Here the confidences are
streamed into ``n_fine_bins`` equal-width fine bins (int64 counts, float64 sums; see
:mod:`softlabels.metrics.functional.calibration`) and the equal-mass bins are assembled from whole fine bins.

Definition of the exact value (what is approximated): sort the ``n`` kept forecasts by confidence and split them into
``n_bins`` consecutive groups of sizes as equal as possible (the first ``n mod n_bins`` groups one larger, as
``numpy.array_split``); AdaECE = ``Σ_m |Σ_{i∈B_m} (r_i − o_i)| / n``.

Approximation and bound: every fine bin goes whole to the equal-mass bin holding the middle of its rank interval.
Only samples of fine bins that straddle a group boundary can land in a different group than in the exact split, and
moving one sample changes the l1 sum by at most ``2·|r_i − o_i| ≤ 2``. Hence

.. math:: |\widehat{\mathrm{AdaECE}} - \mathrm{AdaECE}| \le \frac{2}{n}\sum_j \mathrm{moved}_j,

which is computed from the histogram and returned with the value (``error_bound``). It is 0 when no fine bin
straddles a boundary, and small when confidences are spread out; it grows when many forecasts share one fine bin
(e.g. saturated confidences of 1.0, where even the exact split is arbitrary among ties). Increase ``n_fine_bins``
to tighten it.

References:
    Nixon et al. Measuring Calibration in Deep Learning. CVPR Workshops 2019 (adaptive calibration error).
    Mukhoti et al. Calibrating Deep Neural Networks using Focal Loss. NeurIPS 2020 (AdaECE).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.metrics.functional.calibration import (
    MODES,
    CalibrationHistogram,
    Mode,
    _calibration_error_arg_validation,
    _calibration_error_tensor_validation,
    _calibration_histogram_update,
    _select_rows,
)


class BoundedValue(NamedTuple):
    """A metric value with a guaranteed bound on its deviation from the exact value (float64 scalars).

    Example:
        >>> r = BoundedValue(torch.tensor(0.12), torch.tensor(0.001))
        >>> float(r.value - r.error_bound) <= 0.12 <= float(r.value + r.error_bound)
        True
    """

    value: Tensor
    error_bound: Tensor


def _adaptive_calibration_error_arg_validation(
    n_bins: int, n_fine_bins: int, mode: str, *, where: str = "adaptive_calibration_error"
) -> None:
    """Check the options of :func:`adaptive_calibration_error`."""
    _calibration_error_arg_validation(n_bins, "l1", "top_label", where=where)
    if mode == "marginal":
        raise ValueError(f"`mode` of {where} must be 'top_label' or 'classwise'; got {mode!r}.")
    look_up_option("mode", mode, MODES, where=where)
    if isinstance(n_fine_bins, bool) or not isinstance(n_fine_bins, int) or n_fine_bins < n_bins:
        raise ValueError(f"`n_fine_bins` of {where} must be an int >= n_bins={n_bins}; got {n_fine_bins!r}.")


def _equal_mass_row(counts: Tensor, conf: Tensor, outcome: Tensor, n_bins: int) -> tuple[Tensor, Tensor]:
    """AdaECE and its bound for one row of a fine histogram ``(n_fine_bins,)``."""
    n = int(counts.sum())
    if n == 0:
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=counts.device)
        return nan, nan
    sizes = torch.full((n_bins,), n // n_bins, dtype=torch.int64, device=counts.device)
    sizes[: n % n_bins] += 1
    bounds = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])  # rank boundaries T_0 = 0 < ... < T_M = n
    hi = counts.cumsum(0)
    lo = hi - counts
    group = torch.bucketize((lo + hi).double() / 2.0, bounds[1:-1].double(), right=False)
    group = torch.where(counts > 0, group, torch.zeros_like(group))
    overlap = (torch.minimum(hi, bounds[group + 1]) - torch.maximum(lo, bounds[group])).clamp_min(0)
    moved = (counts - overlap).sum()
    gap = torch.zeros(n_bins, dtype=torch.float64, device=counts.device)
    gap.index_add_(0, group, conf - outcome)
    return gap.abs().sum() / n, 2.0 * moved.double() / n


def _adaptive_calibration_error_compute(
    hist: CalibrationHistogram, *, n_bins: int, mode: str = "top_label", include_background: bool = True
) -> BoundedValue:
    """AdaECE (mean over rows for classwise) and its error bound from a fine histogram ``(rows, n_fine_bins)``."""
    h = _select_rows(hist, mode, include_background)
    rows = [_equal_mass_row(c, s, o, n_bins) for c, s, o in zip(h.counts, h.confidence, h.outcome, strict=True)]
    values = torch.stack([r[0] for r in rows])
    bounds = torch.stack([r[1] for r in rows])
    return BoundedValue(values.mean(), bounds.mean())


def adaptive_calibration_error(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    n_fine_bins: int = 10_000,
    mode: Mode = "top_label",
    mask: Tensor | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    validate_args: bool = True,
) -> BoundedValue:
    r"""Adaptive (equal-mass) expected calibration error from a fine histogram, with its error bound.

    .. math:: \mathrm{AdaECE} = \frac{1}{n}\sum_{m=1}^{M} \Bigl|\sum_{i \in B_m} (r_i - o_i)\Bigr|,
        \quad |B_m| \approx n / M

    Confidence ``r`` and outcome ``o`` as in :func:`~softlabels.metrics.functional.calibration.calibration_error`
    (``mode="classwise"`` averages the per-class values; "TACE" of SVLS is classwise with ``include_background=False``).
    The value is assembled from ``n_fine_bins`` equal-width fine bins; ``error_bound`` bounds
    ``|value − exact AdaECE|`` (module docstring).

    Args:
        probs: ``(N, C, *spatial)`` probabilities.
        target: ``(N, *spatial)`` integer labels or ``(N, C, *spatial)`` soft target.
        n_bins: number of equal-mass bins.
        n_fine_bins: resolution of the streaming histogram.
        mode: ``"top_label"`` or ``"classwise"``.
        mask: ``(N, *spatial)`` bool voxel selection.
        ignore_index: label whose voxels are dropped.
        include_background: keep class 0 in classwise mode.
        validate_args: check input values.

    Returns:
        ``BoundedValue(value, error_bound)``, float64 scalars (NaN without samples).

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
        >>> result = adaptive_calibration_error(probs, torch.tensor([0, 1, 1, 1]), n_bins=2)
        >>> round(float(result.value), 4), float(result.error_bound)
        (0.15, 0.0)
    """
    _adaptive_calibration_error_arg_validation(n_bins, n_fine_bins, mode)
    _calibration_error_tensor_validation(
        probs, target, mask, ignore_index, where="adaptive_calibration_error", check_values=validate_args
    )
    hist = _calibration_histogram_update(
        probs, target, n_bins=n_fine_bins, mode=mode, mask=mask, ignore_index=ignore_index
    )
    return _adaptive_calibration_error_compute(hist, n_bins=n_bins, mode=mode, include_background=include_background)
