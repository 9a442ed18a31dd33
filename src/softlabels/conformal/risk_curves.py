"""Exact per-case risk curves of thresholded segmentation masks over a fixed grid of levels.

A structure's mask at level ``t`` is ``p >= t`` (``t = 1 − λ`` of Angelopoulos et al.: a larger ``t`` gives a smaller
mask). On the grid ``levels[g] = g / (G − 1)`` (float64, :func:`threshold_levels`) a voxel counts at level ``g`` iff
``p >= levels[g]``, i.e. iff its bucket ``b = bucketize(p, levels, right=True) − 1`` (the index of the largest
level ``≤ p``) is ``≥ g``. One pass over a case's voxels therefore gives, per structure, a histogram over the ``G``
buckets of

* the voxel count, and
* the reference weight ``w ∈ [0, 1]`` (one-hot labels, a rater's mask, a union / majority mask, or a soft
  reference),

and suffix sums of the two give the mask volume and the true-positive mass at *every* level at once, exactly. The
voxels are bucketed in chunks of about ``2^20`` values (converted to float64 one chunk at a time), so memory is
``O(chunk + K·G)`` per case whatever the volume size.

Losses (per case ``i``, structure ``k``, level ``t``), with ``M_t = {v : p_v ≥ t}``:

* ``"fnr"``: ``1 − Σ_{v∈M_t} w_v / Σ_v w_v``; ``0`` when ``Σ_v w_v = 0`` (an absent structure misses nothing).
  Non-decreasing in ``t``.
* ``"fdr"``: ``Σ_{v∈M_t} (1 − w_v) / |M_t|``; ``0`` when the mask is empty. Not monotone in general: conformal risk
  control uses its monotone upper bound :func:`monotone_upper`.

With one mask per rater (``truth`` of shape ``(N, R, C, *spatial)``) a case's loss is the mean of its ``R`` losses
(the expected loss against a rater drawn at random).

Reference: Angelopoulos, Bates, Fisch, Lei, Schuster, "Conformal Risk Control", ICLR 2024 (the FNR of a
segmentation, Section 3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from softlabels._options import look_up_option

__all__ = ["LOSSES", "case_curves", "monotone_upper", "threshold_levels"]

LOSSES: tuple[str, ...] = ("fnr", "fdr")
"""The per-case losses of a thresholded mask: false-negative rate and false-discovery rate.

Example:
    >>> LOSSES
    ('fnr', 'fdr')
"""

CHUNK = 1 << 20  # values bucketed at once: bounds the float64 / int64 temporaries to ~8 MB each


def threshold_levels(num_levels: int = 1001) -> Tensor:
    """The grid of threshold levels: ``linspace(0, 1, num_levels)`` in float64 (both ends included).

    Each level is the correctly rounded ``g / (G − 1)`` (``torch.linspace`` may differ in the last bit), so a level
    such as 0.6 is the float ``0.6`` a user would type.

    Args:
        num_levels: ``G >= 2``.

    Returns:
        ``(G,)`` float64 levels, ``levels[0] = 0`` (every voxel) and ``levels[-1] = 1``.

    Raises:
        ValueError: ``num_levels`` is not an int ``>= 2``.

    Example:
        >>> threshold_levels(5).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
        raise ValueError(f"`num_levels` of threshold_levels must be an int >= 2; got {num_levels!r}.")
    return torch.arange(num_levels, dtype=torch.float64) / (num_levels - 1)


def _check_unit(x: Tensor, arg: str, where: str) -> None:
    """Raise if ``x`` has NaN/inf or values outside [0, 1]."""
    if x.numel() == 0 or x.dtype == torch.bool:
        return
    lo, hi = torch.aminmax(x.detach())
    if x.is_floating_point() and not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise ValueError(f"`{arg}` of {where} must be finite; got NaN/inf values.")
    if float(lo) < 0.0 or float(hi) > 1.0:
        raise ValueError(f"`{arg}` of {where} must lie in [0, 1]; got min {float(lo):.6g}, max {float(hi):.6g}.")


def _check_inputs(probs: object, truth: object, where: str) -> tuple[Tensor, Tensor]:
    """Validate ``probs`` and ``truth``; return ``truth`` as ``(N, R, C, *spatial)`` (``R = 1`` without raters)."""
    if not isinstance(probs, Tensor) or not isinstance(truth, Tensor):
        bad = "probs" if not isinstance(probs, Tensor) else "truth"
        got = probs if bad == "probs" else truth
        raise TypeError(f"`{bad}` of {where} must be a torch.Tensor; got {type(got).__name__}.")
    if not probs.is_floating_point() or probs.ndim < 2:
        raise ValueError(
            f"`probs` of {where} must be a floating tensor (N, C, *spatial); got {probs.dtype} {tuple(probs.shape)}."
        )
    if truth.is_complex():
        raise TypeError(f"`truth` of {where} must be real (float, int or bool); got {truth.dtype}.")
    if truth.shape == probs.shape:
        truth = truth.unsqueeze(1)
    elif not (truth.ndim == probs.ndim + 1 and truth.shape[0] == probs.shape[0] and truth.shape[2:] == probs.shape[1:]):
        raise ValueError(
            f"`truth` of {where} must have the shape of `probs` {tuple(probs.shape)} or (N, R, C, *spatial) with "
            f"one mask per rater; got {tuple(truth.shape)}."
        )
    _check_unit(probs, "probs", where)
    _check_unit(truth, "truth", where)
    return probs, truth


def structure_channels(num_classes: int, include_background: bool) -> tuple[int, ...]:
    """The probability channels of the structures: ``(0,)`` for one channel, else ``1..C−1`` (``0..C−1`` with bg)."""
    if num_classes == 1:
        return (0,)
    return tuple(range(0 if include_background else 1, num_classes))


def _block_histograms(p: Tensor, w: Tensor, levels: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Histograms of a block of cases, their voxels bucketed ``step`` at a time (see :func:`_histograms`)."""
    n, k, v = p.shape
    r, g = w.shape[1], levels.numel()
    counts = torch.zeros(n * k * g, dtype=torch.int64, device=p.device)
    weights = torch.zeros(n * r * k * g, dtype=torch.float64, device=p.device)
    base_p = (torch.arange(n * k, device=p.device) * g).view(n, k, 1)
    base_w = (torch.arange(n * r * k, device=p.device) * g).view(n, r, k, 1)
    for start in range(0, v, step):
        values = p[..., start : start + step].to(torch.float64).contiguous()
        bucket = torch.bucketize(values, levels, right=True) - 1
        counts += torch.bincount((base_p + bucket).reshape(-1), minlength=n * k * g)
        chunk = w[..., start : start + step].to(torch.float64)
        flat = (base_w + bucket.unsqueeze(1)).reshape(-1)
        weights += torch.bincount(flat, weights=chunk.reshape(-1), minlength=n * r * k * g)
    return counts.view(n, k, g).to(torch.float64), weights.view(n, r, k, g)


def _histograms(p: Tensor, w: Tensor, levels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-bucket voxel counts ``(N, K, G)`` and weight sums ``(N, R, K, G)`` of ``p (N, K, V)``, ``w (N, R, K, V)``.

    About ``CHUNK`` values are bucketed at a time (float64 / int64 temporaries of bounded size). A case's voxels are
    cut into the same runs of ``CHUNK // (K·R)`` whatever the batch, so its histograms (float sums included) do
    not depend on the cases it comes with; the count histogram is an exact int64 ``bincount``.
    """
    n, k, v = p.shape
    r, g = w.shape[1], levels.numel()
    step = max(1, CHUNK // (k * r))
    block = max(1, CHUNK // (k * r * max(1, min(v, step))))
    if n == 0:
        return torch.zeros(0, k, g, dtype=torch.float64, device=p.device), torch.zeros(
            0, r, k, g, dtype=torch.float64, device=p.device
        )
    parts = [_block_histograms(p[i : i + block], w[i : i + block], levels, step) for i in range(0, n, block)]
    return torch.cat([c for c, _ in parts]), torch.cat([h for _, h in parts])


def _suffix_sum(x: Tensor) -> Tensor:
    """``out[..., g] = Σ_{b >= g} x[..., b]``: non-increasing in ``g`` for ``x >= 0``, also in floating point."""
    return x.flip(-1).cumsum(-1).flip(-1)


def case_curves(
    probs: Tensor,
    truth: Tensor,
    *,
    loss: str = "fnr",
    num_levels: int = 1001,
    include_background: bool = False,
) -> dict[str, Tensor]:
    r"""Per-case, per-structure loss and mask volume of the masks ``p >= t`` at every level ``t`` of the grid, exactly.

    .. math::

        \mathrm{FNR}_i(t) = 1 - \frac{\sum_v w_v [p_v \ge t]}{\sum_v w_v}, \qquad
        \mathrm{FDR}_i(t) = \frac{\sum_v (1 - w_v) [p_v \ge t]}{\sum_v [p_v \ge t]}

    (``0`` when the denominator is ``0``), from per-bucket histograms over ``levels = linspace(0, 1, G)`` (see the
    module docstring). Structures: the foreground channels ``1..C−1`` (``0..C−1`` with ``include_background``); a
    one-channel ``probs`` (``C = 1``) is the foreground probability of a binary task and its one structure.

    Reference: Angelopoulos, Bates, Fisch, Lei, Schuster, "Conformal Risk Control", ICLR 2024.

    Args:
        probs: per-class probabilities ``(N, C, *spatial)`` in [0, 1] (any floating dtype and device).
        truth: reference weights in [0, 1] (float, int or bool): ``(N, C, *spatial)``, or ``(N, R, C, *spatial)``
            with one mask per rater, whose ``R`` losses are averaged per case.
        loss: ``"fnr"`` or ``"fdr"`` (:data:`LOSSES`).
        num_levels: ``G``, the grid size (:func:`threshold_levels`).
        include_background: count channel 0 as a structure (ignored when ``C = 1``).

    Returns:
        float64 tensors on the device of ``probs``: ``"loss"`` ``(N, K, G)``; ``"volume"`` ``(N, K, G)``, the mask
        size in voxels; ``"positives"`` ``(N, K)``, ``Σ_v w_v`` (the mean over raters).

    Raises:
        TypeError: a non-tensor input.
        ValueError: a bad option, NaN/inf or values outside [0, 1], or mismatched shapes.

    Example:
        >>> p = torch.tensor([[[0.9, 0.6, 0.2, 0.1]]])  # (N=1, C=1, 4 voxels)
        >>> y = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
        >>> out = case_curves(p, y, num_levels=11)
        >>> out["loss"][0, 0, [0, 3, 7, 10]].tolist()  # t = 0, 0.3, 0.7, 1
        [0.0, 0.33333333333333337, 0.6666666666666667, 1.0]
        >>> out["volume"][0, 0, [0, 3, 7, 10]].tolist(), out["positives"].tolist()
        ([4.0, 2.0, 1.0, 0.0], [[3.0]])
        >>> case_curves(p, y, loss="fdr", num_levels=11)["loss"][0, 0, [0, 2, 10]].tolist()
        [0.25, 0.0, 0.0]
    """
    where = "case_curves"
    look_up_option("loss", loss, LOSSES, where=where)
    if not isinstance(include_background, bool):
        raise TypeError(f"`include_background` of {where} must be a bool; got {type(include_background).__name__}.")
    levels = threshold_levels(num_levels)
    probs, truth = _check_inputs(probs, truth, where)
    first = structure_channels(probs.shape[1], include_background)[0]
    p = probs.detach()[:, first:].flatten(2)
    w = truth.detach()[:, :, first:].flatten(3)
    counts, weights = _histograms(p, w, levels.to(p.device))
    volume = _suffix_sum(counts)  # (N, K, G)
    hits = _suffix_sum(weights)  # (N, R, K, G): the reference mass inside each mask
    positives = hits[..., 0]  # level 0 keeps every voxel
    if loss == "fnr":
        pos = positives.unsqueeze(-1)
        per_rater = torch.where(pos > 0, 1.0 - hits / pos.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    else:
        vol = volume.unsqueeze(1)
        per_rater = torch.where(vol > 0, (vol - hits).clamp_min(0.0) / vol.clamp_min(1.0), 0.0)
    return {"loss": per_rater.mean(1), "volume": volume, "positives": positives.mean(1)}


def monotone_upper(loss_curves: Tensor, *, loss: str) -> Tensor:
    r"""The smallest upper bound of each loss curve that is monotone in the level, as conformal risk control needs.

    .. math::

        \tilde L(t_g) = \max_{g' \ge g} L(t_{g'}) \quad (\text{fdr}), \qquad \tilde L = L \quad (\text{fnr})

    For ``"fdr"`` the bound is non-increasing in ``t`` and ``≥ L``; ``"fnr"`` is already non-decreasing in ``t`` and
    is returned unchanged (a copy).

    Args:
        loss_curves: ``(..., G)`` losses over the grid of levels (the last axis).
        loss: ``"fnr"`` or ``"fdr"``.

    Returns:
        A tensor of the shape, dtype and device of ``loss_curves``.

    Example:
        >>> monotone_upper(torch.tensor([0.3, 0.1, 0.2, 0.0]), loss="fdr").tolist()
        [0.30000001192092896, 0.20000000298023224, 0.20000000298023224, 0.0]
    """
    look_up_option("loss", loss, LOSSES, where="monotone_upper")
    if not isinstance(loss_curves, Tensor) or loss_curves.ndim < 1:
        raise ValueError(
            f"`loss_curves` of monotone_upper must be a tensor (..., G); got {type(loss_curves).__name__}."
        )
    if loss == "fnr":
        return loss_curves.clone()
    return loss_curves.flip(-1).cummax(-1).values.flip(-1)
