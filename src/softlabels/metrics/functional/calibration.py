"""Binned calibration error (ECE, RMSCE, MCE, ACE) and reliability diagrams from one streaming histogram.

Every quantity here is computed from one fixed-size histogram per (row, bin): the number of samples (int64), the sum
of their confidences and the sum of their outcomes (float64). A row is the top-label forecast (one row) or a class
(``C`` rows, one-vs-rest). Memory is ``O(rows · n_bins)`` whatever the number of voxels, histograms of batches, cases
and processes add up, and the float64 sums keep the result exact at voxel scale (float32 bin sums, as in torchmetrics
and MONAI, drift by 1e-2 at 6e7 samples).

Binning: ``n_bins = M`` equal-width bins with the exact edges ``m / M``. Bin ``m`` (1-based) holds
``(m − 1)/M < r ≤ m/M`` (lower-open, upper-closed, as Guo et al. and Mukhoti et al.), except that ``r = 0`` goes to the
first bin; ``r = 1`` lies in the last bin. The bin is ``max(ceil(r·M) − 1, 0)`` computed in float64, which is exact for
16- and 32-bit inputs (their product with ``M`` is representable); for float64 inputs within one ulp of an edge it
may round.

References:
    Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.
    Naeini, Cooper, Hauskrecht. Obtaining Well Calibrated Probabilities Using Bayesian Binning. AAAI 2015.
    Kumar, Liang, Ma. Verified Uncertainty Calibration. NeurIPS 2019 (classwise / marginal calibration).
    Nixon et al. Measuring Calibration in Deep Learning. CVPR Workshops 2019 (ACE, static calibration error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.metrics.functional._inputs import FormattedInputs, check_inputs, format_inputs

Mode = Literal["top_label", "classwise", "marginal"]
Norm = Literal["l1", "l2", "max", "ace"]
MODES: tuple[str, ...] = ("top_label", "classwise", "marginal")
NORMS: tuple[str, ...] = ("l1", "l2", "max", "ace")
_CHUNK_ELEMENTS = 1 << 19  # probabilities binned at a time: bounds transient memory, few op calls


class CalibrationHistogram(NamedTuple):
    """Sufficient statistics of binned calibration: ``counts`` (int64), ``confidence`` and ``outcome`` sums (float64).

    Each has shape ``(*lead, rows, n_bins)``; ``lead`` is ``(N,)`` for per-case histograms and empty when pooled.
    """

    counts: Tensor
    confidence: Tensor
    outcome: Tensor


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Data of a reliability diagram (draw it with :func:`softlabels.metrics.plot.plot_reliability_diagram`).

    Attributes:
        bin_edges: ``(n_bins + 1,)`` float64 bin edges.
        counts: ``(rows, n_bins)`` int64 samples per bin.
        confidence: ``(rows, n_bins)`` float64 mean confidence per bin (NaN where empty).
        outcome: ``(rows, n_bins)`` float64 mean outcome per bin: accuracy for hard targets, mean target probability
            for soft targets (NaN where empty).
        mode: ``"top_label"``, ``"classwise"`` or ``"marginal"``.
        classes: the class index of each row (classwise), empty for top-label and marginal.

    Example:
        >>> d = reliability_diagram(torch.tensor([[0.7, 0.3]]), torch.tensor([1]), n_bins=2)
        >>> d.counts.tolist(), d.confidence[0, 1].item(), d.outcome[0, 1].item()
        ([[0, 1]], 0.699999988079071, 0.0)
    """

    bin_edges: Tensor
    counts: Tensor
    confidence: Tensor
    outcome: Tensor
    mode: str
    classes: tuple[int, ...]


def _calibration_error_arg_validation(
    n_bins: int, norm: str = "l1", mode: str = "top_label", *, where: str = "calibration_error"
) -> None:
    """Check the options of :func:`calibration_error` and :class:`CalibrationError`."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"`n_bins` of {where} must be an int >= 1; got {n_bins!r}.")
    look_up_option("norm", norm, NORMS, where=where)
    look_up_option("mode", mode, MODES, where=where)


def _calibration_error_tensor_validation(
    probs: Tensor,
    target: Tensor,
    mask: Tensor | None,
    ignore_index: int | None,
    num_classes: int | None = None,
    *,
    where: str = "calibration_error",
    check_values: bool = True,
) -> None:
    """Check shapes and dtypes, and values if ``check_values`` (see :mod:`softlabels.metrics.functional._inputs`)."""
    check_inputs(probs, target, mask=mask, ignore_index=ignore_index, where=where, check_values=check_values)
    if num_classes is not None and probs.shape[1] != num_classes:
        raise ValueError(f"`probs` of {where} must have num_classes={num_classes} channels; got {probs.shape[1]}.")


def _bin_index(x: Tensor, n_bins: int, index_dtype: torch.dtype = torch.int64) -> tuple[Tensor, Tensor]:
    """Slot ``ceil(r·M)`` in ``[0, M]`` of each value (slot 0 holds ``r = 0`` only) and the values in float64.

    Slots ``0`` and ``1`` are merged into the first bin when the histogram is finished (:func:`_fold_zero_slot`),
    which spares two passes over the data per chunk.
    """
    x64 = x.double()
    return x64.mul(n_bins).ceil_().to(index_dtype), x64


def _fold_zero_slot(t: Tensor) -> Tensor:
    """Histogram ``(..., M + 1)`` of slots → ``(..., M)`` bins, slot 0 (``r = 0``) added to the first bin."""
    out = t[..., 1:].clone()
    out[..., 0] += t[..., 0]
    return out


def _top_label_hard(probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Top-label confidence ``(N, V)`` and correctness of the first maximal class (``argmax``) against labels.

    ``amax`` plus a gather is several times faster than ``max(dim=1)`` over a strided class axis. The two agree except
    at ties for the maximum; tied voxels are re-checked with ``argmax``.
    """
    conf = probs.amax(dim=1)
    correct = probs.gather(1, target.unsqueeze(1)).squeeze(1) == conf
    tied = (probs == conf.unsqueeze(1)).sum(1, dtype=torch.uint8) > 1
    if bool(tied.any()):
        correct[tied] = probs.movedim(1, -1)[tied].argmax(dim=-1) == target[tied]
    return conf, correct


def _top_label_chunk(
    f: FormattedInputs, n_bins: int, per_case: bool, index_dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat bin index (case-major if ``per_case``), float64 confidence and outcome of each kept top-label forecast."""
    if f.soft:
        conf, pred = f.probs.max(dim=1)  # first maximal class, as argmax
        outcome = f.target.gather(1, pred.unsqueeze(1)).squeeze(1)
    else:
        conf, outcome = _top_label_hard(f.probs, f.target)
    idx, conf64 = _bin_index(conf, n_bins, index_dtype)
    if per_case and idx.shape[0] > 1:
        idx += torch.arange(idx.shape[0], device=idx.device).unsqueeze(1) * (n_bins + 1)
    if f.keep is not None:
        return idx[f.keep], conf64[f.keep], outcome[f.keep]
    return idx.reshape(-1), conf64.reshape(-1), outcome.reshape(-1)


def _classwise_chunk(
    f: FormattedInputs, n_bins: int, per_case: bool, index_dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat bin index (case-major if ``per_case``, then class), float64 probability and outcome of each kept pair."""
    n, c, _ = f.probs.shape
    classes = torch.arange(c, device=f.probs.device)
    outcome = f.target if f.soft else f.target.unsqueeze(1) == classes.view(1, c, 1)
    idx, p64 = _bin_index(f.probs, n_bins, index_dtype)
    offset = classes.view(1, c, 1) * (n_bins + 1)
    if per_case:
        offset = offset + torch.arange(n, device=idx.device).view(n, 1, 1) * (c * (n_bins + 1))
    idx += offset
    if f.keep is not None:
        keep = f.keep.unsqueeze(1).expand_as(idx)
        return idx[keep], p64[keep], outcome[keep]
    return idx.reshape(-1), p64.reshape(-1), outcome.reshape(-1)


def _accumulate(hist: CalibrationHistogram, idx: Tensor, conf: Tensor, outcome: Tensor) -> None:
    """Add to flat ``hist`` the int64 counts and the float64 sums of ``conf`` and ``outcome`` per bin index."""
    size = hist.counts.shape[0]
    hist.confidence.add_(torch.bincount(idx, weights=conf, minlength=size))
    if outcome.dtype == torch.bool:  # one pass counts both outcomes: bins [0, size) wrong, [size, 2·size) right
        both = torch.bincount(idx.add_(outcome, alpha=size), minlength=2 * size)
        hist.counts.add_(both[:size] + both[size:])
        hist.outcome.add_(both[size:].double())
    else:
        hist.counts.add_(torch.bincount(idx, minlength=size))
        hist.outcome.add_(torch.bincount(idx, weights=outcome.double(), minlength=size))


def _calibration_histogram_update(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int,
    mode: str,
    mask: Tensor | None = None,
    ignore_index: int | None = None,
    per_case: bool = False,
) -> CalibrationHistogram:
    """Histogram of one batch: ``(rows, n_bins)`` pooled, or ``(N, rows, n_bins)`` per case if ``per_case``.

    ``rows`` is 1 for ``mode="top_label"`` and the number of classes (2 for binary ``C == 1`` inputs) otherwise.
    The voxels are processed in chunks of ~0.5M probabilities, so transient memory is bounded and small.
    """
    f = format_inputs(probs, target, mask=mask, ignore_index=ignore_index)
    n, c, v = f.probs.shape
    rows = 1 if mode == "top_label" else c
    cases = n if per_case else 1
    size = cases * rows * (n_bins + 1)
    dev = probs.device
    hist = CalibrationHistogram(
        torch.zeros(size, dtype=torch.int64, device=dev),
        torch.zeros(size, dtype=torch.float64, device=dev),
        torch.zeros(size, dtype=torch.float64, device=dev),
    )
    step = max(1, _CHUNK_ELEMENTS // max(1, n * c))
    chunker = _top_label_chunk if mode == "top_label" else _classwise_chunk
    index_dtype = torch.int32 if 2 * size < 2**31 else torch.int64  # int32 bincounts are faster
    for start in range(0, v, step):
        sl = slice(start, start + step)
        keep = None if f.keep is None else f.keep[:, sl]
        part = FormattedInputs(f.probs[:, :, sl], f.target[:, :, sl] if f.soft else f.target[:, sl], keep)
        _accumulate(hist, *chunker(part, n_bins, per_case, index_dtype))
    shape = (n, rows, n_bins + 1) if per_case else (rows, n_bins + 1)
    return CalibrationHistogram(*(_fold_zero_slot(t.view(shape)) for t in hist))


def _select_rows(hist: CalibrationHistogram, mode: str, include_background: bool) -> CalibrationHistogram:
    """Rows that enter the value: all classes or all but class 0 (classwise); pooled into one row (marginal)."""
    if mode != "top_label" and not include_background:
        hist = CalibrationHistogram(*(t[..., 1:, :] for t in hist))
    if mode == "marginal":
        hist = CalibrationHistogram(*(t.sum(-2, keepdim=True) for t in hist))
    return hist


def _calibration_error_compute(
    hist: CalibrationHistogram, *, norm: str = "l1", mode: str = "top_label", include_background: bool = True
) -> Tensor:
    """Calibration error from a histogram ``(*lead, rows, n_bins)`` → ``(*lead,)`` float64 (NaN without samples)."""
    h = _select_rows(hist, mode, include_background)
    counts = h.counts.double()
    total = counts.sum(-1)
    nonempty = h.counts > 0
    gap = (h.confidence - h.outcome).abs() / counts.clamp_min(1.0)
    if norm == "l1":
        value = (h.confidence - h.outcome).abs().sum(-1) / total
    elif norm == "l2":
        value = torch.sqrt((counts * gap.square()).sum(-1) / total)
    elif norm == "max":
        value = torch.where(nonempty, gap, torch.zeros_like(gap)).amax(-1)
        value = torch.where(total > 0, value, torch.full_like(value, float("nan")))
    else:  # "ace": unweighted mean over non-empty bins
        value = (gap * nonempty).sum(-1) / nonempty.sum(-1)
    return value.mean(-1)


def _reliability_diagram_compute(
    hist: CalibrationHistogram, *, mode: str = "top_label", include_background: bool = True
) -> ReliabilityDiagram:
    """Reliability-diagram data from a pooled histogram ``(rows, n_bins)``."""
    h = _select_rows(hist, mode, include_background)
    n_bins = h.counts.shape[-1]
    counts = h.counts.double()
    nan = torch.full_like(counts, float("nan"))
    conf = torch.where(h.counts > 0, h.confidence / counts.clamp_min(1.0), nan)
    outc = torch.where(h.counts > 0, h.outcome / counts.clamp_min(1.0), nan)
    rows = hist.counts.shape[-2]
    classes = tuple(range(0 if include_background else 1, rows)) if mode == "classwise" else ()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=counts.device)
    return ReliabilityDiagram(edges, h.counts, conf, outc, mode, classes)


def calibration_error(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    norm: Norm = "l1",
    mode: Mode = "top_label",
    mask: Tensor | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    validate_args: bool = True,
) -> Tensor:
    r"""Binned calibration error of probabilistic predictions against hard or soft targets.

    .. math::
        \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{n}\,\bigl|\bar o(B_m) - \bar r(B_m)\bigr|,\quad
        \mathrm{RMSCE} = \Bigl(\sum_m \frac{|B_m|}{n}(\bar o - \bar r)^2\Bigr)^{1/2},\quad
        \mathrm{MCE} = \max_{m: |B_m|>0} |\bar o - \bar r|,\quad
        \mathrm{ACE} = \operatorname{mean}_{m: |B_m|>0} |\bar o - \bar r|

    with :math:`\bar r(B_m)` the mean confidence and :math:`\bar o(B_m)` the mean outcome of bin :math:`B_m`.
    ``mode="top_label"``: :math:`r = \max_c p_c`, outcome = correctness (hard) or the target's probability of the
    predicted class (soft). ``"classwise"``: per class :math:`c`, :math:`r = p_c` and outcome
    :math:`1[y = c]` or :math:`q_c`, then the mean over classes. ``"marginal"``: every (voxel, class) probability is
    one binary forecast, pooled into one histogram. ``include_background=False`` drops class 0 in the classwise and
    marginal modes. Bins: see the module docstring.

    Args:
        probs: ``(N, C, *spatial)`` probabilities (``(N, C)`` for classification; ``C == 1``: binary foreground).
        target: ``(N, *spatial)`` integer labels or ``(N, C, *spatial)`` soft target (e.g. a rater mean).
        n_bins: number of equal-width bins.
        norm: ``"l1"`` (ECE), ``"l2"`` (RMSCE), ``"max"`` (MCE) or ``"ace"`` (mean over non-empty bins).
        mode: ``"top_label"``, ``"classwise"`` or ``"marginal"``.
        mask: ``(N, *spatial)`` bool; only ``True`` voxels count (see :mod:`softlabels.metrics.functional.regions`).
        ignore_index: label whose voxels are dropped (hard targets).
        include_background: keep class 0 in the classwise/marginal modes.
        validate_args: check the inputs' values (NaN/inf, range, sums to 1, labels); shapes are always checked.

    Returns:
        A float64 scalar; NaN when no voxel was kept.

    Raises:
        ValueError: invalid option, shape or values (message names the argument).
        TypeError: wrong dtype.

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> target = torch.tensor([0, 1, 1])
        >>> round(float(calibration_error(probs, target, n_bins=10)), 4)
        0.3
    """
    _calibration_error_arg_validation(n_bins, norm, mode)
    _calibration_error_tensor_validation(probs, target, mask, ignore_index, check_values=validate_args)
    hist = _calibration_histogram_update(probs, target, n_bins=n_bins, mode=mode, mask=mask, ignore_index=ignore_index)
    return _calibration_error_compute(hist, norm=norm, mode=mode, include_background=include_background)


def reliability_diagram(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    mode: Mode = "top_label",
    mask: Tensor | None = None,
    ignore_index: int | None = None,
    include_background: bool = True,
    validate_args: bool = True,
) -> ReliabilityDiagram:
    """Reliability-diagram data: per bin the count, mean confidence and mean outcome (accuracy or target frequency).

    Inputs and options as :func:`calibration_error`. Draw the result with
    :func:`softlabels.metrics.plot.plot_reliability_diagram`.

    Returns:
        A :class:`ReliabilityDiagram` with ``(rows, n_bins)`` tensors.

    Example:
        >>> d = reliability_diagram(torch.tensor([[0.9, 0.1], [0.15, 0.85]]), torch.tensor([0, 0]), n_bins=5)
        >>> d.counts.tolist(), d.outcome[0, 4].item()
        ([[0, 0, 0, 0, 2]], 0.5)
    """
    _calibration_error_arg_validation(n_bins, "l1", mode, where="reliability_diagram")
    _calibration_error_tensor_validation(
        probs, target, mask, ignore_index, where="reliability_diagram", check_values=validate_args
    )
    hist = _calibration_histogram_update(probs, target, n_bins=n_bins, mode=mode, mask=mask, ignore_index=ignore_index)
    return _reliability_diagram_compute(hist, mode=mode, include_background=include_background)
