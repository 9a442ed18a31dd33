"""Multi-rater segmentation metrics: QUBIQ thresholded Dice, generalized energy distance, leave-one-rater-out.

A soft reference is the rater mean ``(N, C, *spatial)`` (binary ``(N, 1, *spatial)``: the foreground fraction); a
label map ``(N, *spatial)`` counts as its one-hot. ``C == 1`` means the classes ``[1 − p, p]``; ``C' = C − 1`` without
the background (1 for binary), else ``C`` (2 for binary). Rater/sample stacks are ``(R, N, *spatial)`` label maps.
Binarisation is **strict**, ``value > τ`` in the map's dtype (``τ`` rounded to it): a rater mean of exactly ``τ``
(3 of 10 raters at ``τ = 0.3``) is out, and ``τ = 0.5`` needs a strict majority. Inputs without voxels are no data:
``N = 0`` gives empty results, a spatial size 0 NaN for every case (not "both empty"), and the streaming twins'
``update`` of such a batch changes nothing.

References:
    Menze et al. QUBIQ: Quantification of Uncertainties in Biomedical Image Quantification Challenge. MICCAI 2020/21.
    Silva, Oliveira. Using Soft Labels to Model Uncertainty in Medical Image Segmentation. arXiv 2109.12622, 2021.
    Kohl et al. A Probabilistic U-Net for Segmentation of Ambiguous Images. NeurIPS 2018.
    Wang, Blaschko et al. Dice Semimetric Losses: Optimizing the Dice Score with Soft Labels. MICCAI 2023.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from torch.nn.functional import one_hot

from softlabels._options import look_up_option
from softlabels.metrics.functional._inputs import check_inputs, format_inputs, nan_without_voxels

Empty = Literal["one", "nan"]
Score = Literal["thresholded_dice", "soft_dice"]
Pairs = Literal["distinct", "all"]
QUBIQ_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_CHUNK_ELEMENTS = 1 << 22


class ThresholdStats(NamedTuple):
    """Int64 ``(N, T, C')`` voxel counts per threshold: ``|A ∩ B|`` and ``|A| + |B|`` of the two binary masks."""

    intersection: Tensor
    total: Tensor


class LeaveOneRaterOut(NamedTuple):
    """Leave-one-rater-out scores: ``model (N,)`` averaged over the R references, ``raters (R, N)``.

    Example:
        >>> LeaveOneRaterOut(model=torch.tensor([0.9]), raters=torch.tensor([[0.8], [0.7]])).raters.shape
        torch.Size([2, 1])
    """

    model: Tensor
    raters: Tensor


def _thresholded_dice_arg_validation(
    where: str, thresholds: Sequence[float], include_background: bool, empty: str
) -> tuple[float, ...]:
    """Check the options; return the thresholds as a tuple of floats."""
    if not isinstance(include_background, bool):
        raise ValueError(f"`include_background` of {where} must be a bool; got {include_background!r}.")
    look_up_option("empty", empty, ("one", "nan"), where=where)
    ok = isinstance(thresholds, Sequence) and not isinstance(thresholds, str) and len(thresholds) > 0
    values = list(thresholds) if ok else []
    ok = ok and all(isinstance(t, float | int) and not isinstance(t, bool) and 0 <= t < 1 for t in values)
    if not ok or any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"`thresholds` of {where} must be increasing numbers in [0, 1); got {thresholds!r}.")
    return tuple(float(t) for t in values)


def _thresholded_dice_tensor_validation(
    probs: Tensor, target: Tensor, *, where: str, check_values: bool, num_classes: int | None = None, name: str = ""
) -> None:
    """Check ``probs (N, C, *spatial)`` and the soft (or label-map) reference (called ``name`` in errors)."""
    try:
        check_inputs(probs, target, mask=None, ignore_index=None, where=where, check_values=check_values)
    except (TypeError, ValueError) as err:  # name the argument as the caller knows it
        raise type(err)(str(err).replace("`target`", f"`{name or 'target'}`")) from None
    if probs.ndim < 3:
        raise ValueError(f"`probs` of {where} must have shape (N, C, *spatial); got {tuple(probs.shape)}.")
    if num_classes is not None and probs.shape[1] != num_classes:
        raise ValueError(f"`probs` of {where} must have num_classes={num_classes} channels; got {probs.shape[1]}.")


def _class_maps(probs: Tensor, target: Tensor, include_background: bool) -> tuple[Tensor, Tensor]:
    """``(N, C', V)`` prediction and reference maps in their own dtypes (a label map becomes its one-hot)."""
    f = format_inputs(probs, target, mask=None, ignore_index=None)
    ref = f.target if f.soft else one_hot(f.target, f.probs.shape[1]).movedim(-1, 1)
    start = 0 if include_background else 1
    return f.probs[:, start:], ref[:, start:].to(f.target.dtype if f.soft else f.probs.dtype)


def _thresholded_dice_update(
    probs: Tensor, target: Tensor, *, thresholds: Sequence[float], include_background: bool
) -> ThresholdStats:
    """Binarise both maps at every ``τ`` (strict ``> τ``) and count ``|A ∩ B|``, ``|A| + |B|`` per case and class."""
    p, q = _class_maps(probs, target, include_background)
    inter, total = [], []
    for tau in thresholds:
        a, b = p > tau, q > tau
        inter.append((a & b).sum(-1))
        total.append(a.sum(-1) + b.sum(-1))
    return ThresholdStats(torch.stack(inter, 1), torch.stack(total, 1))


def _dice_per_threshold_compute(stats: ThresholdStats, empty: str) -> Tensor:
    """Float64 ``(N, T, C')`` Dice ``2|A ∩ B| / (|A| + |B|)``; both masks empty → 1 or NaN per ``empty``."""
    dice = 2.0 * stats.intersection.double() / stats.total.double()
    return torch.where(stats.total == 0, 1.0 if empty == "one" else math.nan, dice)


def _thresholded_dice_compute(per_threshold: Tensor) -> Tensor:
    """Mean over the threshold axis 1, skipping NaN (all NaN → NaN)."""
    return torch.nanmean(per_threshold, dim=1)


def _thresholded_dice_reduce(stats: ThresholdStats, empty: str) -> dict[str, Tensor]:
    """State increments: per-class ``(C',)`` and per-threshold ``(T, C')`` sums over cases and counts (NaN left out)."""
    per_threshold = _dice_per_threshold_compute(stats, empty)
    per_case = _thresholded_dice_compute(per_threshold)
    ok_case, ok_thr = ~per_case.isnan(), ~per_threshold.isnan()
    return {
        "score_sum": torch.where(ok_case, per_case, 0.0).sum(0),
        "n_cases": ok_case.sum(0),
        "curve_sum": torch.where(ok_thr, per_threshold, 0.0).sum(0),
        "curve_count": ok_thr.sum(0),
        "n_both_empty": (stats.total == 0).sum(0),
    }


def _mean_compute(total: Tensor, count: Tensor) -> Tensor:
    """Float64 ``total / count`` (NaN where the count is 0)."""
    return total.double() / count


def thresholded_dice(
    probs: Tensor,
    target: Tensor,
    *,
    thresholds: Sequence[float] = QUBIQ_THRESHOLDS,
    include_background: bool = False,
    empty: Empty = "one",
    validate_args: bool = True,
) -> Tensor:
    r"""QUBIQ score: Dice of the prediction and the soft reference, both binarised at each threshold, averaged.

    .. math:: \mathrm{TD} = \frac{1}{T}\sum_{\tau} \frac{2\,|\{p > \tau\} \cap \{q > \tau\}|}{|\{p > \tau\}|
        + |\{q > \tau\}|}

    per case and class, :math:`q` the rater mean, strict ``> τ`` in the map's dtype. Both masks empty at a ``τ``:
    Dice 1 (``empty="one"``, counted by the class twin) or NaN, left out of the mean over thresholds.

    Args:
        probs: ``(N, C, *spatial)`` probabilities (``C == 1``: foreground probability).
        target: ``(N, C, *spatial)`` soft reference (rater mean) or ``(N, *spatial)`` integer labels.
        thresholds: strictly increasing, in ``[0, 1)``; default ``0.1, 0.2, …, 0.9`` (QUBIQ).
        include_background: keep class 0.
        empty: ``"one"`` or ``"nan"`` when both masks are empty.
        validate_args: check input values.

    Returns:
        Float64 ``(N, C')`` (NaN for a case without voxels).

    Raises:
        ValueError: bad option, shape or value (``TypeError``: bad type or dtype).

    Example:
        >>> p, q = torch.tensor([[[0.05, 0.35, 0.65, 0.95]]]), torch.tensor([[[0.0, 0.0, 2 / 3, 1.0]]])
        >>> round(thresholded_dice(p, q).item(), 4), thresholded_dice(p, p).tolist()
        (0.9333, [[1.0]])
    """
    thr = _thresholded_dice_arg_validation("thresholded_dice", thresholds, include_background, empty)
    _thresholded_dice_tensor_validation(probs, target, where="thresholded_dice", check_values=validate_args)
    stats = _thresholded_dice_update(probs, target, thresholds=thr, include_background=include_background)
    return nan_without_voxels(_thresholded_dice_compute(_dice_per_threshold_compute(stats, empty)), probs)


def dice_per_threshold(
    probs: Tensor,
    target: Tensor,
    *,
    thresholds: Sequence[float] = QUBIQ_THRESHOLDS,
    include_background: bool = False,
    empty: Empty = "one",
    validate_args: bool = True,
) -> Tensor:
    r"""Dice of prediction and soft reference binarised at each threshold (the Dice-vs-threshold curve).

    .. math:: D_\tau = 2\,|\{p > \tau\} \cap \{q > \tau\}| \,/\, (|\{p > \tau\}| + |\{q > \tau\}|)

    Conventions as :func:`thresholded_dice`, which is the NaN-skipping mean of this over axis 1.

    Args:
        probs: ``(N, C, *spatial)`` probabilities.
        target: ``(N, C, *spatial)`` soft reference or ``(N, *spatial)`` integer labels.
        thresholds: strictly increasing, in ``[0, 1)``.
        include_background: keep class 0.
        empty: ``"one"`` or ``"nan"`` when both masks are empty.
        validate_args: check input values.

    Returns:
        Float64 ``(N, T, C')`` (NaN for a case without voxels).

    Example:
        >>> p = torch.tensor([[[0.05, 0.35, 0.65, 0.95]]])
        >>> dice_per_threshold(p, torch.tensor([[[0.0, 0.0, 2 / 3, 1.0]]]), thresholds=(0.3, 0.5)).tolist()
        [[[0.8], [1.0]]]
    """
    thr = _thresholded_dice_arg_validation("dice_per_threshold", thresholds, include_background, empty)
    _thresholded_dice_tensor_validation(probs, target, where="dice_per_threshold", check_values=validate_args)
    stats = _thresholded_dice_update(probs, target, thresholds=thr, include_background=include_background)
    return nan_without_voxels(_dice_per_threshold_compute(stats, empty), probs)


def _check_label_stack(x: Tensor, name: str, where: str, *, min_count: int, n_labels: int = 0) -> None:
    """Raise unless ``x`` is an int ``(K, N, *spatial)`` stack, ``K >= min_count``, labels ``< n_labels`` (if > 0)."""
    if not isinstance(x, Tensor) or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"`{name}` of {where} must be an integer label tensor; got {getattr(x, 'dtype', type(x))}.")
    if x.ndim < 3 or x.shape[0] < min_count:
        raise ValueError(f"`{name}` of {where} must be (K, N, *spatial) with K >= {min_count}; got {tuple(x.shape)}.")
    lo, hi = torch.aminmax(x) if n_labels and x.numel() else (0, 0)
    if int(lo) < 0 or int(hi) >= max(n_labels, 1):
        raise ValueError(
            f"`{name}` of {where} must hold labels in [0, {n_labels - 1}]; got min {int(lo)}, max {int(hi)}."
        )


def _generalized_energy_distance_arg_validation(
    where: str, num_classes: int, include_background: bool, pairs: str
) -> None:
    """Check the options of the generalized energy distance."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` of {where} must be an int >= 2; got {num_classes!r}.")
    if not isinstance(include_background, bool):
        raise ValueError(f"`include_background` of {where} must be a bool; got {include_background!r}.")
    look_up_option("pairs", pairs, ("distinct", "all"), where=where)


def _generalized_energy_distance_tensor_validation(
    samples: Tensor, raters: Tensor, *, num_classes: int, pairs: str, where: str, check_values: bool
) -> None:
    """Check ``samples (M, N, *spatial)`` and ``raters (R, N, *spatial)``."""
    n_labels = num_classes if check_values else 0
    _check_label_stack(samples, "samples", where, min_count=1, n_labels=n_labels)
    _check_label_stack(raters, "raters", where, min_count=2 if pairs == "distinct" else 1, n_labels=n_labels)
    if samples.shape[1:] != raters.shape[1:] or samples.device != raters.device:
        raise ValueError(f"`samples`, `raters` of {where} must share (N, *spatial) and device; got {samples.shape}.")


def _pairwise_iou_distance(maps: Tensor, num_classes: int, include_background: bool) -> Tensor:
    """Float64 ``(N, K, K)`` ``1 − mean_c IoU_c`` of every pair of the ``(K, N, *spatial)`` maps (∅ vs ∅: IoU 1)."""
    k, n = maps.shape[:2]
    flat = maps.reshape(k, n, math.prod(maps.shape[2:])).transpose(0, 1)
    labels = torch.arange(0 if include_background else 1, num_classes, device=maps.device).view(1, -1, 1, 1)
    inter = torch.zeros(n, labels.shape[1], k, k, dtype=torch.float64, device=maps.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, n * k * labels.shape[1]))
    for start in range(0, flat.shape[-1], step):
        one_hot = (flat[:, None, :, start : start + step] == labels).double()
        inter += one_hot @ one_hot.transpose(-1, -2)  # exact: 0/1 products summed in float64
    size = inter.diagonal(dim1=-2, dim2=-1)
    union = size.unsqueeze(-1) + size.unsqueeze(-2) - inter
    return 1.0 - torch.where(union == 0, 1.0, inter / union).mean(1)


def _generalized_energy_distance_update(
    samples: Tensor, raters: Tensor, *, num_classes: int, include_background: bool, pairs: str
) -> Tensor:
    """Float64 ``(N,)`` squared GED per case; within-set means over distinct (0 for one map) or all ordered pairs."""
    m, r = samples.shape[0], raters.shape[0]
    d = _pairwise_iou_distance(torch.cat([samples, raters]), num_classes, include_background)
    n_ss, n_yy = (k * k if pairs == "all" else max(k * (k - 1), 1) for k in (m, r))
    return 2.0 * d[:, :m, m:].mean((1, 2)) - d[:, :m, :m].sum((1, 2)) / n_ss - d[:, m:, m:].sum((1, 2)) / n_yy


def generalized_energy_distance(
    samples: Tensor,
    raters: Tensor,
    *,
    num_classes: int = 2,
    include_background: bool = False,
    pairs: Pairs = "all",
    validate_args: bool = True,
) -> Tensor:
    r"""Squared generalized energy distance between model samples and rater segmentations, per case.

    .. math:: D^2_{\mathrm{GED}} = 2\,\mathbb{E}[d(S, Y)] - \mathbb{E}[d(S, S')] - \mathbb{E}[d(Y, Y')],
        \qquad d(a, b) = 1 - \frac{1}{C'}\sum_{c} \mathrm{IoU}_c(a, b)

    IoU of two empty masks is 1. :math:`\mathbb{E}[d(S, Y)]` is over all ``M × R`` pairs; with ``pairs="distinct"``
    the within-set ones are over ordered pairs ``i ≠ j`` (0 if ``M == 1``; unbiased, can be slightly negative);
    ``pairs="all"`` includes ``i = j`` like Kohl et al.'s code (a V-statistic, ``>= 0``: Jaccard is a PD kernel).

    Args:
        samples: ``(M, N, *spatial)`` integer label maps, ``M >= 1`` model samples per case.
        raters: ``(R, N, *spatial)`` integer label maps, ``R >= 2`` (``>= 1`` with ``pairs="all"``).
        num_classes: number of labels (``>= 2``).
        include_background: keep class 0 in the mean IoU.
        pairs: ``"distinct"`` or ``"all"``.
        validate_args: check label values.

    Returns:
        Float64 ``(N,)``; lower is better (NaN for a case without voxels).

    Raises:
        ValueError: bad option, shape or label (``TypeError``: non-integer maps).

    Example:
        >>> raters = torch.tensor([[[0, 1, 1, 0]], [[0, 1, 0, 0]]])
        >>> generalized_energy_distance(raters, raters).tolist()
        [0.0]
        >>> generalized_energy_distance(raters, raters, pairs="distinct").tolist()
        [-0.5]
    """
    where = "generalized_energy_distance"
    _generalized_energy_distance_arg_validation(where, num_classes, include_background, pairs)
    _generalized_energy_distance_tensor_validation(
        samples, raters, num_classes=num_classes, pairs=pairs, where=where, check_values=validate_args
    )
    values = _generalized_energy_distance_update(
        samples, raters, num_classes=num_classes, include_background=include_background, pairs=pairs
    )
    return nan_without_voxels(values, samples)


def _soft_dice(probs: Tensor, target: Tensor, include_background: bool, empty: str) -> Tensor:
    """Float64 ``(N, C')`` Dice-semimetric soft Dice ``(Σx + Σy − Σ|x − y|) / (Σx + Σy)``; ``0/0`` → 1 or NaN."""
    x, y = (t.double() for t in _class_maps(probs, target, include_background))
    total = x.sum(-1) + y.sum(-1)
    dice = (total - (x - y).abs().sum(-1)) / total
    return torch.where(total == 0, 1.0 if empty == "one" else math.nan, dice)


def _case_score(
    probs: Tensor, target: Tensor, score: str, thresholds: tuple[float, ...], include_background: bool, empty: str
) -> Tensor:
    """Float64 ``(N,)`` score averaged over the kept classes (NaN skipped)."""
    if score == "soft_dice":
        per_class = _soft_dice(probs, target, include_background, empty)
    else:
        stats = _thresholded_dice_update(probs, target, thresholds=thresholds, include_background=include_background)
        per_class = _thresholded_dice_compute(_dice_per_threshold_compute(stats, empty))
    return torch.nanmean(per_class, dim=1)


def leave_one_rater_out(
    probs: Tensor,
    raters: Tensor,
    *,
    score: Score = "thresholded_dice",
    thresholds: Sequence[float] = QUBIQ_THRESHOLDS,
    include_background: bool = False,
    empty: Empty = "one",
    validate_args: bool = True,
) -> LeaveOneRaterOut:
    r"""Physician vs physicians: score the model and each rater against the mean of the *other* raters.

    .. math:: q^{(-r)} = \frac{1}{R-1}\sum_{s \ne r} \mathrm{onehot}(y_s),\quad
        \mathrm{rater}_r = S(\mathrm{onehot}(y_r), q^{(-r)}),\quad
        \mathrm{model} = \frac{1}{R}\sum_r S(p, q^{(-r)})

    ``S`` is :func:`thresholded_dice` or the Dice-semimetric soft Dice ``(Σx + Σy − Σ|x − y|) / (Σx + Σy)``, averaged
    over the kept classes; NaN (``empty="nan"``) is skipped in the means. References are in the dtype of ``probs``.

    Args:
        probs: ``(N, C, *spatial)`` probabilities (``C == 1``: foreground probability).
        raters: ``(R, N, *spatial)`` integer label maps, ``R >= 2``.
        score: ``"thresholded_dice"`` or ``"soft_dice"``.
        thresholds: thresholds of the thresholded Dice.
        include_background: keep class 0.
        empty: value of Dice when both maps are empty, ``"one"`` or ``"nan"``.
        validate_args: check input values.

    Returns:
        :class:`LeaveOneRaterOut` with float64 ``model (N,)`` and ``raters (R, N)`` (NaN for a case without voxels).

    Example:
        >>> raters = torch.tensor([[[1, 1, 0, 0]], [[1, 1, 1, 0]], [[1, 0, 0, 0]]])
        >>> probs = torch.tensor([[[0.9, 0.7, 0.2, 0.0]]])
        >>> out = leave_one_rater_out(probs, raters, score="soft_dice")
        >>> [round(v, 4) for v in out.raters[:, 0].tolist()], round(out.model.item(), 4)
        ([0.75, 0.6667, 0.5714], 0.8426)
    """
    where = "leave_one_rater_out"
    look_up_option("score", score, ("thresholded_dice", "soft_dice"), where=where)
    thr = _thresholded_dice_arg_validation(where, thresholds, include_background, empty)
    _check_label_stack(raters, "raters", where, min_count=2)
    _thresholded_dice_tensor_validation(probs, raters[0], where=where, check_values=validate_args, name="raters[r]")
    _check_label_stack(raters, "raters", where, min_count=2, n_labels=max(probs.shape[1], 2) if validate_args else 0)
    c = probs.shape[1]  # one-hot rater maps (R, N, C, *spatial); C == 1: the foreground indicator
    maps = ((raters == 1).unsqueeze(2) if c == 1 else one_hot(raters.long(), c).movedim(-1, 2)).to(probs.dtype)
    counts, n_raters = maps.sum(0), maps.shape[0]
    model, rater_scores = [], []
    for r in range(n_raters):
        ref = (counts - maps[r]) / (n_raters - 1)
        model.append(_case_score(probs, ref, score, thr, include_background, empty))
        rater_scores.append(_case_score(maps[r], ref, score, thr, include_background, empty))
    model_score = nan_without_voxels(torch.nanmean(torch.stack(model), dim=0), probs)
    return LeaveOneRaterOut(model_score, nan_without_voxels(torch.stack(rater_scores), probs))
