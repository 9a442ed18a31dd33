"""One fused pass over a batch for every histogram metric: top-label, classwise and masked ECE histograms, Brier, NLL.

The evaluation of a segmentation case needs the top-label histogram, the classwise histograms, top-label histograms
over a few voxel masks (foreground, boundary band) and the sums of the Brier score and the NLL. Computed one metric
at a time, each re-reads the probabilities and recomputes the maximum, the bin indices and the one-hot target.
:func:`calibration_pass` reads the probabilities once, in chunks of ≤ 2M values (bounded transient memory), and
shares each per-chunk intermediate between all of them: the float64 copy of the chunk and the bin of every
probability (the top-label bin is the largest of them), the maximum and the first-maximum test, the target's
gathered probability (label maps) and bins. Every histogram is a pair of ``torch.bincount`` calls over flat
(case, row, bin) indices: one counts (for label maps, counting the correct forecasts in the same or a second small
call), one sums the confidences with float64 weights.

The results are those of the per-metric functions, case by case: the histograms equal
``_calibration_histogram_update(..., per_case=True)`` of :mod:`~softlabels.metrics.functional.calibration` (same
bins, same first-maximum rule, same ``C == 1`` expansion and ``ignore_index`` handling; counts identical, float64
sums equal up to summation order), and ``nll_sum / voxels`` and ``brier_sum / voxels`` equal
:func:`~softlabels.metrics.functional.proper_scoring.negative_log_likelihood` and
:func:`~softlabels.metrics.functional.proper_scoring.brier_score` of each case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from softlabels._ops import argmax
from softlabels.metrics.functional._inputs import _check_mask, check_inputs, format_inputs
from softlabels.metrics.functional.calibration import _calibration_error_arg_validation, _fold_zero_slot
from softlabels.metrics.functional.proper_scoring import _proper_score_arg_validation

# A chunk holds at most _CHUNK_ELEMENTS probabilities of at most _CHUNK_VOXELS voxels (items): bounded transient
# memory (~30 MB with the workspace), and few chunks, as each of the ≈ 40 parallel ops of a chunk waits for a scheduler
# slice when another process takes a core (a 4×240×240×155 volume: 0.25 s idle, ~3 s with one core busy; 4× more
# chunks were slower still). Per-voxel float64 temporaries stay at 2 MiB, below the 4 MiB from which glibc maps (and
# page-faults) each block once softlabels._memory fixed its threshold; the larger arrays live in one _Workspace per
# call.
_CHUNK_ELEMENTS = 1 << 21
_CHUNK_VOXELS = 1 << 18
_LANES = 8  # copies of each histogram, counted into in turn (see _Layout) ...
_LANE_LIMIT = 1 << 16  # ... while all copies together have at most this many slots
_WHERE = "calibration_pass"


class CalibrationPass(NamedTuple):
    r"""Per-case sufficient statistics of the histogram metrics and proper scores of one batch.

    Each histogram is float64 ``(N, rows, n_bins, 3)`` holding, per bin, ``[count, confidence sum, outcome sum]``.

    Attributes:
        top_label: ``(N, 1, n_bins, 3)`` top-label histogram over the kept voxels.
        classwise: ``(N, R, n_bins, 3)`` one-vs-rest histograms, ``R = C`` (2 when ``C == 1``).
        masked: mask name → ``(N, 1, n_bins, 3)`` top-label histogram over that mask's kept voxels.
        nll_sum: ``(N,)`` float64 sum over kept voxels of :math:`-\sum_c t_c \log \max(p_c, \epsilon)`.
        brier_sum: ``(N,)`` float64 sum over kept voxels of :math:`\sum_c (p_c - t_c)^2` (binary: :math:`(p - q)^2`).
        voxels: ``(N,)`` int64 number of kept voxels.

    Example:
        >>> out = calibration_pass(torch.tensor([[0.7, 0.3], [0.2, 0.8]]), torch.tensor([0, 0]), n_bins=2)
        >>> out.top_label[:, 0, 1].tolist()  # per case, bin (0.5, 1]: [count, confidence sum, correct]
        [[1.0, 0.699999988079071, 1.0], [1.0, 0.800000011920929, 0.0]]
    """

    top_label: Tensor
    classwise: Tensor
    masked: dict[str, Tensor]
    nll_sum: Tensor
    brier_sum: Tensor
    voxels: Tensor


class _Layout(NamedTuple):
    """Sizes of the flat accumulators: ``slots = n_bins + 1`` (slot 0 holds ``r = 0``), histograms, rows, cases.

    ``lanes`` copies of every histogram are counted into, voxel ``i`` of a chunk into copy ``i mod lanes``, and
    summed after each ``bincount``: consecutive voxels mostly fall into the same bin (a background of confident
    voxels), and incrementing one counter over and over is several times slower than spreading the increments.
    """

    slots: int
    n_hist: int  # top-label histograms: all kept voxels, then one per mask
    rows: int
    cases: int
    lanes: int
    index_dtype: torch.dtype

    @property
    def top_size(self) -> int:
        """Size of one copy of the top-label histograms, ``(n_hist, cases, slots)``."""
        return self.n_hist * self.cases * self.slots

    @property
    def cw_size(self) -> int:
        """Size of one copy of the classwise histograms, ``(cases, rows, slots)``."""
        return self.cases * self.rows * self.slots


class _Chunk(NamedTuple):
    """One chunk: ``p (n, C, s)``, ``t (n, s)`` labels or ``(n, C, s)`` soft, ``keep`` and ``masks`` ``(n, s)``.

    ``first`` is the index of its first case; ``lane_top``/``lane_cw`` the ``(s,)`` offsets of each voxel's copy;
    ``work`` the buffers of the call.
    """

    p: Tensor
    t: Tensor
    keep: Tensor | None
    masks: list[Tensor]
    first: int
    lane_top: Tensor | None
    lane_cw: Tensor | None
    work: _Workspace


class _Workspace(NamedTuple):
    """Buffers reused by every chunk of a call (not page-faulted anew per chunk), as flat tensors.

    Per probability: ``p64`` (the chunk in float64), ``product`` (times ``n_bins``), ``slots``; per voxel (float64):
    ``top64`` (top-label confidence), ``pt64`` (the label's probability), ``log`` and ``squares`` (scores).
    """

    p64: Tensor
    product: Tensor
    slots: Tensor
    top64: Tensor
    pt64: Tensor
    log: Tensor
    squares: Tensor

    @staticmethod
    def create(elements: int, voxels: int, index_dtype: torch.dtype, device: torch.device) -> _Workspace:
        """Buffers for chunks of up to ``elements`` probabilities of ``voxels`` voxels."""
        f64 = torch.float64
        sizes = ((elements, f64), (elements, f64), (elements, index_dtype)) + ((voxels, f64),) * 4
        return _Workspace(*(torch.empty(k, dtype=dt, device=device) for k, dt in sizes))

    def bins(self, p: Tensor, n_bins: int) -> tuple[Tensor, Tensor]:
        """``calibration._bin_index`` of ``p (n, C, s)`` into the buffers: slots ``ceil(r·M)`` and ``r`` in float64."""
        k = p.numel()
        p64 = self.p64[:k].view(p.shape).copy_(p)
        product = torch.mul(p64, n_bins, out=self.product[:k].view(p.shape)).ceil_()
        return self.slots[:k].view(p.shape).copy_(product), p64

    def voxels(self, buffer: Tensor, like: Tensor) -> Tensor:
        """``buffer`` viewed with the shape of the per-voxel tensor ``like`` ``(n, s)``."""
        return buffer[: like.numel()].view(like.shape)


class _Sums(NamedTuple):
    """Flat accumulators: int64 counts and float64 confidence and outcome sums per slot; per-case score sums."""

    top: tuple[Tensor, Tensor, Tensor]
    cw: tuple[Tensor, Tensor, Tensor]
    nll: Tensor
    brier: Tensor
    voxels: Tensor


def _calibration_pass_arg_validation(n_bins: int, eps: float, ignore_index: int | None, masks: object) -> None:
    """Check the options: ``n_bins``, ``eps``, ``ignore_index`` and that ``masks`` maps names to tensors."""
    _calibration_error_arg_validation(n_bins, where=_WHERE)
    _proper_score_arg_validation(eps, _WHERE)
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise ValueError(f"`ignore_index` of {_WHERE} must be an int or None; got {ignore_index!r}.")
    if masks is not None and not (isinstance(masks, Mapping) and all(isinstance(k, str) for k in masks)):
        raise TypeError(f"`masks` of {_WHERE} must be a mapping from str names to bool tensors or None; got {masks!r}.")


def _calibration_pass_tensor_validation(
    probs: Tensor, target: Tensor, masks: Mapping[str, Tensor], ignore_index: int | None, check_values: bool
) -> None:
    """Check ``probs``/``target`` as every probabilistic metric does, and each mask's dtype, shape and device."""
    check_inputs(probs, target, mask=None, ignore_index=ignore_index, where=_WHERE, check_values=check_values)
    hard_shape = probs.shape[:1] + probs.shape[2:]
    for name, mask in masks.items():
        _check_mask(mask, hard_shape, f"{_WHERE} (masks[{name!r}])")
        if mask.device != probs.device:
            raise ValueError(f"`masks[{name!r}]` of {_WHERE} must be on the device of `probs`, {probs.device}.")


def _fold(hist: Tensor, lanes: int, size: int) -> Tensor:
    """Sum of the ``lanes`` copies at the start of a flat ``bincount`` result: ``(size,)``."""
    return hist[: lanes * size].view(lanes, size).sum(0)


def _add_histogram(acc: tuple[Tensor, Tensor, Tensor], key: Tensor, conf: Tensor, outcome: Tensor, lanes: int) -> None:
    """Add counts and float64 confidence/outcome sums per flat ``key`` (``lanes · size`` is a trash slot)."""
    counts, conf_sum, outcome_sum = acc
    size = counts.shape[0]
    total, flat = lanes * size, key.reshape(-1)
    conf_sum.add_(_fold(torch.bincount(flat, weights=conf.reshape(-1), minlength=total + 1), lanes, size))
    if outcome.dtype == torch.bool:  # one call counts both outcomes: [0, total] wrong, [total + 1, 2·total + 1] right
        both = torch.bincount(key.add(outcome, alpha=total + 1).reshape(-1), minlength=2 * total + 2)
        right = _fold(both[total + 1 :], lanes, size)
        counts.add_(_fold(both, lanes, size) + right)
        outcome_sum.add_(right.double())
    else:
        counts.add_(_fold(torch.bincount(flat, minlength=total + 1), lanes, size))
        weights = outcome.double().reshape(-1)
        outcome_sum.add_(_fold(torch.bincount(flat, weights=weights, minlength=total + 1), lanes, size))


def _first_max_hit(p: Tensor, top: Tensor, p_target: Tensor, target: Tensor) -> Tensor:
    """Whether the label is the first maximal class of ``p (n, C, s)`` (as ``argmax``), given the max and its gather.

    The rule of ``calibration._top_label_hard``: the label's probability must be the maximum, and where several
    classes attain it (rare with continuous probabilities) the first of them, re-checked with an argmax.
    """
    correct = p_target == top
    tied = (p == top.unsqueeze(1)).sum(1, dtype=torch.uint8) > 1
    if bool(tied.any()):
        correct[tied] = argmax(p.movedim(1, -1)[tied], 1) == target[tied]
    return correct


def _top_label_forecast(p: Tensor, t: Tensor, soft: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Top-label confidence ``(n, s)``, its outcome (bool or float) and, for labels, the label's probability."""
    if soft:
        top, pred = p.max(dim=1)  # first maximal class, as argmax
        return top, t.gather(1, pred.unsqueeze(1)).squeeze(1), None
    top = p.amax(dim=1)
    p_target = p.gather(1, t.unsqueeze(1)).squeeze(1)
    return top, _first_max_hit(p, top, p_target, t), p_target


def _scores(p64: Tensor, t: Tensor, p_target: Tensor | None, eps: float, work: _Workspace) -> tuple[Tensor, Tensor]:
    """Per-voxel float64 NLL and Brier ``(n, s)`` with the conventions of ``proper_scoring._voxel_scores``."""
    if p_target is None:  # soft target (n, C, s)
        t64 = t.double()
        nll = -(t64 * p64.clamp_min(eps).log()).sum(1)
        return nll, (p64 - t64).square().sum(1)
    pt64 = work.voxels(work.pt64, p_target).copy_(p_target)
    nll = torch.clamp_min(pt64, eps, out=work.voxels(work.log, pt64)).log_().neg_()
    squares = torch.square(p64[:, 0], out=work.voxels(work.squares, pt64))
    for c in range(1, p64.shape[1]):  # Σ_c p_c² over contiguous slices: faster than a reduction over the class axis
        squares.addcmul_(p64[:, c], p64[:, c])
    return nll, squares.sub_(pt64, alpha=2.0).add_(1.0)


def _add_counts(acc: tuple[Tensor, Tensor, Tensor], key: Tensor, hits: Tensor, lanes: int) -> None:
    """Add per-slot counts of ``key`` and, as outcome sums, the counts of ``hits`` (the keys of the outcomes 1)."""
    counts, _, outcome_sum = acc
    size = counts.shape[0]
    counts.add_(_fold(torch.bincount(key.reshape(-1), minlength=lanes * size + 1), lanes, size))
    outcome_sum.add_(_fold(torch.bincount(hits.reshape(-1), minlength=lanes * size + 1), lanes, size).double())


def _masked_updates(sums: _Sums, lay: _Layout, key: Tensor, top64: Tensor, outcome: Tensor, ch: _Chunk) -> None:
    """Add the top-label histogram of each mask's voxels (``key`` already holds the kept voxels' slots)."""
    for m, mask in enumerate(ch.masks, start=1):
        where = mask.reshape(-1).nonzero().squeeze(1)
        sel_key = key.reshape(-1).index_select(0, where).add_(m * lay.cases * lay.slots)
        sel_outcome = outcome.reshape(-1).index_select(0, where)
        _add_histogram(sums.top, sel_key, top64.reshape(-1).index_select(0, where), sel_outcome, lay.lanes)


def _chunk_update(sums: _Sums, lay: _Layout, ch: _Chunk, eps: float) -> None:
    """Add one chunk's histograms and scores to ``sums``."""
    p, t, keep = ch.p, ch.t, ch.keep
    n, c = p.shape[:2]
    soft = t.ndim == 3
    cases = torch.arange(ch.first, ch.first + n, device=p.device, dtype=lay.index_dtype)
    slots, p64 = ch.work.bins(p, lay.slots - 1)  # (n, C, s) slot of every probability
    top, outcome, p_target = _top_label_forecast(p, t, soft)
    key = slots.amax(1)  # the slot of the maximum is the maximal slot: slots grow with the probability
    if ch.lane_top is not None:
        key += ch.lane_top
    if ch.first or n > 1:
        key += cases.unsqueeze(1) * lay.slots
    if keep is not None:
        key.masked_fill_(~keep, lay.lanes * lay.top_size)
    top64 = ch.work.voxels(ch.work.top64, top).copy_(top)
    _add_histogram(sums.top, key, top64, outcome, lay.lanes)
    _masked_updates(sums, lay, key, top64, outcome, ch)
    classes = torch.arange(c, device=p.device, dtype=lay.index_dtype)
    key_cw = slots.add_(((cases.view(n, 1) * lay.rows + classes.view(1, c)) * lay.slots).unsqueeze(2))
    if ch.lane_cw is not None:
        key_cw += ch.lane_cw
    if keep is not None:
        key_cw.masked_fill_(~keep.unsqueeze(1), lay.lanes * lay.cw_size)
    if soft:
        _add_histogram(sums.cw, key_cw, p64, t, lay.lanes)
    else:  # the outcome is 1 in the label's row only: count the label's slot, one per voxel
        total = lay.lanes * lay.cw_size
        weighted = torch.bincount(key_cw.reshape(-1), weights=p64.reshape(-1), minlength=total + 1)
        sums.cw[1].add_(_fold(weighted, lay.lanes, lay.cw_size))
        _add_counts(sums.cw, key_cw, key_cw.gather(1, t.unsqueeze(1)), lay.lanes)
    _add_scores(sums, ch, p64, p_target, eps)


def _add_scores(sums: _Sums, ch: _Chunk, p64: Tensor, p_target: Tensor | None, eps: float) -> None:
    """Add the per-case sums of the per-voxel NLL and Brier score and the kept-voxel counts of one chunk."""
    n, s, first, keep = p64.shape[0], p64.shape[2], ch.first, ch.keep
    nll, brier = _scores(p64, ch.t, p_target, eps, ch.work)
    if keep is None:
        sums.nll[first : first + n] += nll.sum(1)
        sums.brier[first : first + n] += brier.sum(1)
        sums.voxels[first : first + n] += s
    else:
        sums.nll[first : first + n] += torch.where(keep, nll, 0.0).sum(1)
        sums.brier[first : first + n] += torch.where(keep, brier, 0.0).sum(1)
        sums.voxels[first : first + n] += keep.sum(1)


def _new_sums(lay: _Layout, device: torch.device) -> _Sums:
    """Zeroed accumulators of ``lay``."""

    def hist(size: int) -> tuple[Tensor, Tensor, Tensor]:
        zeros = torch.zeros(size, dtype=torch.float64, device=device)
        return torch.zeros(size, dtype=torch.int64, device=device), zeros, zeros.clone()

    score = torch.zeros(lay.cases, dtype=torch.float64, device=device)
    voxels = torch.zeros(lay.cases, dtype=torch.int64, device=device)
    return _Sums(hist(lay.top_size), hist(lay.cw_size), score, score.clone(), voxels)


def _calibration_pass_update(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int,
    masks: Mapping[str, Tensor],
    ignore_index: int | None,
    eps: float,
) -> tuple[_Sums, _Layout]:
    """Flat accumulators of one batch, in blocks of cases × chunks of voxels (see ``_CHUNK_ELEMENTS``)."""
    f = format_inputs(probs, target, mask=None, ignore_index=ignore_index)
    n, c, v = f.probs.shape
    flat_masks = [m.reshape(n, v) if f.keep is None else m.reshape(n, v) & f.keep for m in masks.values()]
    size = max((len(flat_masks) + 1) * n, n * c) * (n_bins + 1)  # the larger copy of the histograms
    lanes = _LANES if _LANES * size <= _LANE_LIMIT else 1
    index_dtype = torch.int32 if 2 * (lanes * size + 1) < 2**31 else torch.int64
    lay = _Layout(n_bins + 1, len(flat_masks) + 1, c, n, lanes, index_dtype)
    sums = _new_sums(lay, probs.device)
    block = min(max(1, n), max(1, min(_CHUNK_ELEMENTS // max(1, c * v), _CHUNK_VOXELS // max(1, v))))  # cases
    step = max(1, min(_CHUNK_ELEMENTS // (block * c), _CHUNK_VOXELS // block))  # voxels per chunk
    dev = probs.device
    work = _Workspace.create(min(block * c * step, n * c * v), min(block * step, n * v), index_dtype, dev)
    lane = torch.arange(min(step, v), device=dev, dtype=index_dtype) % lanes
    lane_top, lane_cw = (None, None) if lanes == 1 else (lane * lay.top_size, lane * lay.cw_size)
    for lo in range(0, n, block):
        cs = slice(lo, lo + block)
        for start in range(0, v, step):
            vs = slice(start, start + step)
            s = min(step, v - start)
            t = f.target[cs, :, vs] if f.soft else f.target[cs, vs]
            keep = None if f.keep is None else f.keep[cs, vs]
            lt, lc = (None, None) if lane_top is None or lane_cw is None else (lane_top[:s], lane_cw[:s])
            chunk = _Chunk(f.probs[cs, :, vs], t, keep, [m[cs, vs] for m in flat_masks], lo, lt, lc, work)
            _chunk_update(sums, lay, chunk, eps)
    if probs.shape[1] == 1:  # C == 1: the binary Brier (p − q)², not the two-class sum 2·(p − q)²
        sums.brier.div_(2.0)
    return sums, lay


def _calibration_pass_compute(sums: _Sums, lay: _Layout, names: list[str]) -> CalibrationPass:
    """Fold the zero slot into the first bin and stack ``[count, confidence, outcome]`` per bin, per case."""

    def stack(acc: tuple[Tensor, Tensor, Tensor], shape: tuple[int, ...]) -> Tensor:
        parts = [_fold_zero_slot(x.view(shape)) for x in acc]
        return torch.stack([parts[0].double(), parts[1], parts[2]], dim=-1)

    top = stack(sums.top, (lay.n_hist, lay.cases, 1, lay.slots))
    classwise = stack(sums.cw, (lay.cases, lay.rows, lay.slots))
    masked = {name: top[m] for m, name in enumerate(names, start=1)}
    return CalibrationPass(top[0], classwise, masked, sums.nll, sums.brier, sums.voxels)


def calibration_pass(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    masks: Mapping[str, Tensor] | None = None,
    ignore_index: int | None = None,
    eps: float = 1e-12,
    validate_args: bool = True,
) -> CalibrationPass:
    r"""Per-case calibration histograms (top-label, classwise, masked top-label) and Brier/NLL sums in one pass.

    For each case :math:`n` and bin :math:`B_m` (``n_bins`` equal-width bins, lower-open, upper-closed, ``r = 0`` in
    the first; see :mod:`~softlabels.metrics.functional.calibration`):

    .. math::
        h_{n,m} = \Big(|B_m|,\ \sum_{i \in B_m} r_i,\ \sum_{i \in B_m} o_i\Big),\qquad
        \mathrm{NLL}_n = -\sum_i \sum_c t_{ic} \log\max(p_{ic}, \epsilon),\qquad
        \mathrm{BS}_n = \sum_i \sum_c (p_{ic} - t_{ic})^2

    over the kept voxels :math:`i`. Top-label: :math:`r = \max_c p_c`, :math:`o` = correctness of the first maximal
    class (label map) or the target's probability of it (soft target). Classwise, row :math:`c`: :math:`r = p_c`,
    :math:`o = 1[y = c]` or :math:`q_c`. So ``calibration_error`` is
    ``Σ_m |h[..., 1] − h[..., 2]| / Σ_m h[..., 0]`` of the histograms summed over cases (classwise: per row, then
    the mean over rows), and ``nll_sum.sum() / voxels.sum()`` is ``negative_log_likelihood``. ``C == 1`` is the
    foreground probability, expanded to ``[1 − p, p]``; its Brier sum is the binary ``(p − q)²``.

    Args:
        probs: ``(N, C, *spatial)`` probabilities, or ``(N, C)`` for classification.
        target: ``(N, *spatial)`` integer labels or ``(N, C, *spatial)`` soft target.
        n_bins: number of equal-width bins.
        masks: name → bool ``(N, *spatial)``: one extra top-label histogram over each mask's voxels (e.g. from
            :func:`~softlabels.metrics.functional.regions.boundary_band`).
        ignore_index: label whose voxels are dropped from everything (label maps only).
        eps: NLL clamping floor in (0, 1), as in ``negative_log_likelihood``.
        validate_args: check the inputs' values (NaN/inf, range, sums to 1, labels); shapes are always checked.

    Returns:
        A :class:`CalibrationPass`: ``top_label (N, 1, n_bins, 3)``, ``classwise (N, R, n_bins, 3)``, ``masked``
        ``{name: (N, 1, n_bins, 3)}`` float64, ``nll_sum``/``brier_sum`` ``(N,)`` float64, ``voxels`` ``(N,)`` int64.

    Raises:
        ValueError: invalid option, shape or values (the message names the argument).
        TypeError: wrong type or dtype.

    Example:
        >>> from softlabels.metrics.functional import calibration_error
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> target = torch.tensor([0, 1, 1])
        >>> out = calibration_pass(probs, target, n_bins=10, masks={"first": torch.tensor([True, False, False])})
        >>> h = out.top_label.sum(0)[0]  # pooled over the cases: (n_bins, 3)
        >>> ece = (h[:, 1] - h[:, 2]).abs().sum() / h[:, 0].sum()
        >>> bool(torch.isclose(ece, calibration_error(probs, target, n_bins=10)))
        True
        >>> out.masked["first"][0, 0, 8].tolist(), out.voxels.tolist()  # bin (0.8, 0.9]: 1 voxel, conf 0.9, correct
        ([1.0, 0.8999999761581421, 1.0], [1, 1, 1])
    """
    _calibration_pass_arg_validation(n_bins, eps, ignore_index, masks)
    masks = {} if masks is None else dict(masks)
    _calibration_pass_tensor_validation(probs, target, masks, ignore_index, validate_args)
    sums, lay = _calibration_pass_update(
        probs, target, n_bins=n_bins, masks=masks, ignore_index=ignore_index, eps=float(eps)
    )
    return _calibration_pass_compute(sums, lay, list(masks))
