"""Brier score and negative log-likelihood (proper scoring rules), streaming, for hard or soft targets.

Both are means over the kept voxels (items) of a per-voxel score; the state is a float64 sum and an int64 count per
case, so batches, cases and processes add up exactly.

References:
    Brier. Verification of Forecasts Expressed in Terms of Probability. Monthly Weather Review, 1950.
    Gneiting, Raftery. Strictly Proper Scoring Rules, Prediction, and Estimation. JASA 2007.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from softlabels.metrics.functional._inputs import check_inputs, format_inputs

_CHUNK_ELEMENTS = 1 << 22


class ScoreSums(NamedTuple):
    """Per-case float64 sums ``(N,)`` of a per-voxel score and int64 counts ``(N,)`` of the voxels kept."""

    total: Tensor
    n_voxels: Tensor


def _proper_score_arg_validation(eps: float, where: str) -> None:
    """Check the NLL clamping constant."""
    if isinstance(eps, bool) or not isinstance(eps, float | int) or not 0.0 < float(eps) < 1.0:
        raise ValueError(f"`eps` of {where} must be a float in (0, 1); got {eps!r}.")


def _proper_score_tensor_validation(
    probs: Tensor, target: Tensor, mask: Tensor | None, ignore_index: int | None, *, where: str, check_values: bool
) -> None:
    """Check shapes and dtypes, and values if ``check_values``."""
    check_inputs(probs, target, mask=mask, ignore_index=ignore_index, where=where, check_values=check_values)


def _voxel_scores(p: Tensor, t: Tensor, soft: bool, kind: str, eps: float) -> Tensor:
    """Per-voxel Brier (Σ_c (p_c − t_c)²) or NLL (−Σ_c t_c log max(p_c, eps)) in float64, ``(N, V)``."""
    p = p.double()
    if kind == "brier":
        if soft:
            return (p - t.double()).square().sum(1)
        return p.square().sum(1) - 2.0 * p.gather(1, t.unsqueeze(1)).squeeze(1) + 1.0
    logp = p.clamp_min(eps).log()
    if soft:
        return -(t.double() * logp).sum(1)
    return -logp.gather(1, t.unsqueeze(1)).squeeze(1)


def _proper_score_update(
    probs: Tensor,
    target: Tensor,
    *,
    kind: str,
    eps: float = 1e-12,
    mask: Tensor | None = None,
    ignore_index: int | None = None,
) -> ScoreSums:
    """Per-case sums and counts of the per-voxel Brier score (``kind="brier"``) or NLL (``kind="nll"``)."""
    binary = probs.shape[1] == 1
    f = format_inputs(probs, target, mask=mask, ignore_index=ignore_index)
    n, c, v = f.probs.shape
    total = torch.zeros(n, dtype=torch.float64, device=probs.device)
    count = torch.zeros(n, dtype=torch.int64, device=probs.device)
    step = max(1, _CHUNK_ELEMENTS // max(1, n * c))
    for start in range(0, v, step):
        sl = slice(start, start + step)
        t = f.target[:, :, sl] if f.soft else f.target[:, sl]
        score = _voxel_scores(f.probs[:, :, sl], t, f.soft, kind, eps)
        if f.keep is None:
            total += score.sum(1)
            count += score.shape[1]
        else:
            keep = f.keep[:, sl]
            total += torch.where(keep, score, torch.zeros_like(score)).sum(1)
            count += keep.sum(1)
    if binary and kind == "brier":  # C == 1: the binary Brier (p − q)², not the two-class sum 2·(p − q)²
        total = total / 2.0
    return ScoreSums(total, count)


def _proper_score_compute(sums: ScoreSums) -> Tensor:
    """Mean score over all kept voxels (NaN if none) from summed states of any leading shape."""
    return sums.total.sum() / sums.n_voxels.sum()


def brier_score(
    probs: Tensor,
    target: Tensor,
    *,
    mask: Tensor | None = None,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Brier score: the mean over voxels (items) of the squared error summed over classes.

    .. math:: \mathrm{BS} = \frac{1}{n}\sum_{i} \sum_{c=1}^{C} (p_{ic} - t_{ic})^2

    with :math:`t` the one-hot label or the soft target. Binary inputs (``C == 1``, the foreground probability) give
    the binary Brier score :math:`(p - q)^2`. Range ``[0, 2]`` (``[0, 1]`` binary); lower is better.

    Args:
        probs: ``(N, C, *spatial)`` probabilities.
        target: ``(N, *spatial)`` integer labels or ``(N, C, *spatial)`` soft target.
        mask: ``(N, *spatial)`` bool voxel selection.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values.

    Returns:
        A float64 scalar (NaN if no voxel is kept).

    Example:
        >>> round(brier_score(torch.tensor([[0.8, 0.2], [0.5, 0.5]]), torch.tensor([0, 1])).item(), 6)
        0.29
    """
    _proper_score_tensor_validation(probs, target, mask, ignore_index, where="brier_score", check_values=validate_args)
    return _proper_score_compute(
        _proper_score_update(probs, target, kind="brier", mask=mask, ignore_index=ignore_index)
    )


def negative_log_likelihood(
    probs: Tensor,
    target: Tensor,
    *,
    eps: float = 1e-12,
    mask: Tensor | None = None,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Negative log-likelihood (cross-entropy) of the target under the predicted probabilities.

    .. math:: \mathrm{NLL} = -\frac{1}{n}\sum_i \sum_c t_{ic}\,\log \max(p_{ic}, \epsilon)

    Clamping: probabilities below ``eps`` (default 1e-12) count as ``eps``, so a probability of exactly 0 on the
    target (common in float32 softmax) costs ``−log eps ≈ 27.6`` instead of ``inf``; nothing else is altered. With
    soft targets this is the cross-entropy ``H(q) + KL(q‖p)``; ``C == 1`` gives the binary cross-entropy.

    Args:
        probs: ``(N, C, *spatial)`` probabilities.
        target: ``(N, *spatial)`` integer labels or ``(N, C, *spatial)`` soft target.
        eps: clamping floor in (0, 1).
        mask: ``(N, *spatial)`` bool voxel selection.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values.

    Returns:
        A float64 scalar (NaN if no voxel is kept).

    Example:
        >>> round(negative_log_likelihood(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1])).item(), 6)
        0.490415
    """
    _proper_score_arg_validation(eps, "negative_log_likelihood")
    _proper_score_tensor_validation(
        probs, target, mask, ignore_index, where="negative_log_likelihood", check_values=validate_args
    )
    sums = _proper_score_update(probs, target, kind="nll", eps=float(eps), mask=mask, ignore_index=ignore_index)
    return _proper_score_compute(sums)
