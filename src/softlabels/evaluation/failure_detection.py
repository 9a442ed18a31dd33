r"""Failure detection: per-case confidence scores, and how well they rank cases by their quality.

A confidence score condenses a case's probabilities into one number (higher = more confident) so that the cases
most likely to have failed can be flagged for review. How well a score does that is measured against the per-case
quality ``q`` (Dice in [0, 1], or correctness 0/1) through the loss ``ℓ = 1 − q``:

- the risk–coverage curve: accept the ``k`` most confident of ``n`` cases (coverage ``k/n``); the selective risk is
  the mean loss of the accepted cases;
- AURC, its mean over ``k`` (Geifman, Uziel, El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural
  Classifiers", ICLR 2019), and e-AURC, the AURC in excess of the oracle that accepts the lowest losses first;
- AUGRC, the mean over ``k`` of the generalized risk ``(k/n) · risk(k)``: the loss of the accepted cases per case
  (Traub et al., "Overcoming Common Flaws in the Evaluation of Selective Classification Systems", NeurIPS 2024);
- the AUROC of telling failures (``q`` below a level) from the rest by their low confidence, and Spearman's ρ
  between confidence and quality.

**Ties.** Cases with equal confidence cannot be ordered by the score, so every curve value is the expectation over
a uniformly random order within each group of tied cases: the expected total loss of the ``k`` most confident cases
is the total loss before the group plus ``(k − a)`` times the group's mean loss (``a`` cases before the group). The
generalized risk is therefore exact at the group boundaries and linear in between, and every value is the same
whatever the order of the cases in the input (computed bit for bit from the cases sorted by confidence, then loss).

**Against the papers.** Traub et al. define the generalized risk as ``P(failure ∧ accepted)`` and AUGRC as its
integral over coverage, ``∫ coverage · selective risk``; with a continuous loss (``1 − Dice``) the loss takes the
place of the 0/1 failure indicator, as in their reference code (fd-shifts), which integrates the piecewise-linear
curve through ``(0, 0)`` and the tie-group boundaries by the trapezoidal rule. The mean over ``k`` used here is the
right Riemann sum of that same curve; it exceeds the trapezoidal value by exactly ``mean(ℓ) / (2n)``. For the AURC
fd-shifts interpolates the selective risk linearly between tie groups; here it is the expectation over tie orders.

The segmentation scores follow the confidence aggregations compared by Zenk et al., "Comparative Benchmarking of
Failure Detection Methods in Medical Image Segmentation: Unveiling the Role of Confidence Aggregation", MedIA 2025.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from softlabels._checks import check_distribution
from softlabels.metrics.functional.regions import boundary_band

__all__ = [
    "CLASSIFICATION_CONFIDENCES",
    "SEGMENTATION_CONFIDENCES",
    "augrc",
    "aurc",
    "classification_confidences",
    "e_aurc",
    "failure_auroc",
    "failure_detection_table",
    "risk_coverage_curve",
    "segmentation_confidences",
    "spearman",
]

SEGMENTATION_CONFIDENCES: tuple[str, ...] = (
    "mean_max_prob_foreground",
    "mean_entropy_foreground",
    "mean_max_prob_boundary",
    "mean_entropy_boundary",
    "volume_agreement",
    "mask_agreement",
    "mean_max_prob",
)
"""The keys of :func:`segmentation_confidences`, in order."""

CLASSIFICATION_CONFIDENCES: tuple[str, ...] = ("max_prob", "margin", "negative_entropy")
"""The keys of :func:`classification_confidences`, in order."""


# ---------------------------------------------------------------------------------------------------------------
# Per-case confidence scores
# ---------------------------------------------------------------------------------------------------------------


def _as_probs(probs: Any, where: str, min_ndim: int, max_ndim: int, layout: str) -> Tensor:
    """``probs`` as a floating tensor of ``min_ndim``–``max_ndim`` dimensions holding distributions over axis 1."""
    if isinstance(probs, np.ndarray):
        probs = torch.from_numpy(probs)
    if not isinstance(probs, Tensor) or not probs.is_floating_point():
        kind = f"a {probs.dtype} tensor" if isinstance(probs, Tensor) else type(probs).__name__
        raise TypeError(f"`probs` of {where} must be a floating tensor or array; got {kind}.")
    if not min_ndim <= probs.ndim <= max_ndim or probs.shape[1] == 0:
        raise ValueError(f"`probs` of {where} must have shape {layout}; got {tuple(probs.shape)}.")
    check_distribution(probs, "probs", where)
    return probs


def _real(value: object) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _check_level(value: object, arg: str, where: str, *, positive: bool = False) -> float:
    """A real number in [0, 1] (``positive``: a real number > 0), as a float."""
    x = _real(value)
    if x is not None and (x > 0 if positive else 0.0 <= x <= 1.0):
        return x
    allowed = "a positive number" if positive else "a number in [0, 1]"
    raise ValueError(f"`{arg}` of {where} must be {allowed}; got {value!r}.")


def _channel(p: Tensor, c: int) -> Tensor:
    """A float64 copy of channel ``c`` of one case, safe to modify in place (``C == 1``: channel 1 is ``1 − p``)."""
    if c == 1 and p.shape[0] == 1:
        return p[0].to(torch.float64, copy=True).neg_().add_(1.0)
    return p[c].to(torch.float64, copy=True)


def _max_prob(p: Tensor) -> Tensor:
    """Per-voxel maximum probability of one case, float64 (``C == 1``: ``max(p, 1 − p) = ½ + |p − ½|``)."""
    if p.shape[0] == 1:
        return _channel(p, 0).sub_(0.5).abs_().add_(0.5)
    return p.amax(0).to(torch.float64)


def _entropy(p: Tensor) -> Tensor:
    """Per-voxel entropy over ``log max(C, 2)`` of one case, float64, one channel at a time (two float64 maps)."""
    total = torch.zeros(p.shape[1:], dtype=torch.float64, device=p.device)
    for c in range(max(p.shape[0], 2)):
        x = _channel(p, c)
        total.sub_(torch.special.xlogy(x, x, out=x))
    return total.div_(math.log(max(p.shape[0], 2)))


def _mean_over(values: Tensor, region: Tensor) -> float:
    """Mean of ``values`` over ``region``; over all voxels when the region is empty."""
    return float(values[region].mean()) if bool(region.any()) else float(values.mean())


def _agreement(fg: Tensor, low: float, high: float) -> float:
    """Dice between ``{fg ≥ low}`` and ``{fg ≥ high}``; 1 when both are empty."""
    wide, narrow = fg >= low, fg >= high
    n_wide, n_narrow = int(wide.sum()), int(narrow.sum())
    return 1.0 if n_wide + n_narrow == 0 else 2.0 * int((wide & narrow).sum()) / (n_wide + n_narrow)


def _case_confidences(p: Tensor, threshold: float, low: float, high: float, width: float) -> tuple[float, ...]:
    """The seven scores of one case ``(C, *spatial)``, in the order of :data:`SEGMENTATION_CONFIDENCES`.

    One float64 map at a time is kept (two while the entropy sums its channels), each freed once summarised.
    """
    # F: argmax ≠ 0, ties to the lower class as torch.argmax; C == 1: p > threshold
    foreground = p[0] > threshold if p.shape[0] == 1 else p[1:].amax(0) > p[0]
    band = boundary_band(foreground.unsqueeze(0), width=width)[0]
    top = _max_prob(p)
    top_f, top_b, top_all = _mean_over(top, foreground), _mean_over(top, band), float(top.mean())
    del top
    entropy = _entropy(p)
    entropy_f, entropy_b = _mean_over(entropy, foreground), _mean_over(entropy, band)
    del entropy
    fg = p[0].to(torch.float64) if p.shape[0] == 1 else _channel(p, 0).neg_().add_(1.0)
    size, expected = float(foreground.sum()), float(fg.sum())
    volume = 1.0 - abs(expected - size) / max(expected, size, 1.0)
    return top_f, -entropy_f, top_b, -entropy_b, volume, _agreement(fg, low, high), top_all


def segmentation_confidences(
    probs: Tensor | np.ndarray,
    *,
    threshold: float = 0.5,
    low: float = 0.25,
    high: float = 0.75,
    boundary_width: float = 2,
) -> dict[str, Tensor]:
    r"""Per-case confidence scores of a segmentation (higher = more confident), 2D or 3D.

    ``probs`` is ``(N, C, *spatial)``: with ``C == 1`` the foreground probability ``p``, else a softmax over ``C``
    classes with class 0 the background. Per voxel: the maximum probability ``m = max_c p_c`` (``C == 1``:
    ``max(p, 1 − p)``), the normalised entropy ``h = −Σ_c p_c log p_c / log max(C, 2)`` (``C == 1``: the binary
    entropy) and the foreground probability ``f = 1 − p_0`` (``C == 1``: ``p``). The predicted foreground is
    ``F = {argmax ≠ 0}`` (``C == 1``: ``p > threshold``, so ``threshold=0.5`` gives the mask the package's Dice
    scores) and its boundary band ``B`` the voxels within ``boundary_width`` voxels (Euclidean) of F's border, inside
    or outside (:func:`~softlabels.metrics.functional.regions.boundary_band`). Per case:

    .. math::
        \begin{aligned}
        \text{mean\_max\_prob\_foreground} &= \overline{m}_F, \quad
        \text{mean\_entropy\_foreground} = -\overline{h}_F, \quad
        \text{mean\_max\_prob\_boundary} = \overline{m}_B, \quad
        \text{mean\_entropy\_boundary} = -\overline{h}_B, \\
        \text{volume\_agreement} &= 1 - \frac{|\sum_v f_v - |F||}{\max(\sum_v f_v, |F|, 1)}, \quad
        \text{mask\_agreement} = \operatorname{Dice}(\{f \ge \text{low}\}, \{f \ge \text{high}\}), \quad
        \text{mean\_max\_prob} = \overline{m}
        \end{aligned}

    The entropies are negated so that every score grows with confidence. An empty F (or an empty band: F empty or
    the whole image) makes its means fall back to the whole image; two empty masks agree (``mask_agreement`` 1).
    The scores aggregate voxel confidence over the predicted structure, its border and its volume, the choices
    compared by Zenk et al., "Comparative Benchmarking of Failure Detection Methods in Medical Image Segmentation",
    MedIA 2025. One case at a time, with at most two float64 maps of one channel's size at once.

    Args:
        probs: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` probabilities (a tensor or a NumPy array).
        threshold: the foreground level of ``C == 1``.
        low: the lower level of ``mask_agreement``.
        high: the higher level of ``mask_agreement`` (``> low``).
        boundary_width: the half-width of the boundary band, in voxels.

    Returns:
        ``{name: float64 (N,)}`` for the names of :data:`SEGMENTATION_CONFIDENCES`.

    Raises:
        TypeError: ``probs`` not floating.
        ValueError: ``probs`` of the wrong shape or not probabilities; a level outside [0, 1]; ``low ≥ high``;
            ``boundary_width`` not positive.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.8, 0.7, 0.4, 0.2, 0.1]]]])
        >>> scores = segmentation_confidences(p, boundary_width=1)
        >>> round(scores["mean_max_prob_foreground"].item(), 4), round(scores["mean_max_prob_boundary"].item(), 4)
        (0.8, 0.65)
        >>> round(scores["volume_agreement"].item(), 4), round(scores["mask_agreement"].item(), 4)
        (0.9677, 0.6667)
    """
    where = "segmentation_confidences"
    probs = _as_probs(probs, where, 4, 5, "(N, C, H, W) or (N, C, D, H, W)")
    threshold = _check_level(threshold, "threshold", where)
    low, high = _check_level(low, "low", where), _check_level(high, "high", where)
    if not low < high:
        raise ValueError(f"`low` of {where} must be below `high`; got low={low}, high={high}.")
    width = _check_level(boundary_width, "boundary_width", where, positive=True)
    rows = [_case_confidences(probs[i], threshold, low, high, width) for i in range(probs.shape[0])]
    values = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(SEGMENTATION_CONFIDENCES))
    return {name: values[:, j].contiguous() for j, name in enumerate(SEGMENTATION_CONFIDENCES)}


def classification_confidences(probs: Tensor | np.ndarray) -> dict[str, Tensor]:
    r"""Per-case confidence scores of a classifier (higher = more confident).

    .. math::
        \text{max\_prob} = p_{(1)}, \qquad \text{margin} = p_{(1)} - p_{(2)}, \qquad
        \text{negative\_entropy} = \sum_c p_c \log p_c

    with ``p_(1) ≥ p_(2)`` the two largest probabilities (natural log, ``0 log 0 = 0``). The usual baselines of
    selective classification (e.g. Traub et al., NeurIPS 2024).

    Args:
        probs: ``(N, C)`` probabilities, ``C ≥ 2`` (a tensor or a NumPy array).

    Returns:
        ``{name: float64 (N,)}`` for the names of :data:`CLASSIFICATION_CONFIDENCES`.

    Raises:
        TypeError: ``probs`` not floating.
        ValueError: ``probs`` not ``(N, C ≥ 2)`` probabilities summing to 1.

    Example:
        >>> scores = classification_confidences(torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]))
        >>> [round(v, 4) for v in scores["margin"].tolist()], scores["negative_entropy"][1].item()
        ([0.2, 1.0], 0.0)
    """
    where = "classification_confidences"
    probs = _as_probs(probs, where, 2, 2, "(N, C)")
    if probs.shape[1] < 2:
        raise ValueError(f"`probs` of {where} must have C ≥ 2 classes (pass [1 − p, p]); got {tuple(probs.shape)}.")
    p = probs.double()
    top2 = p.topk(2, dim=1).values
    return {
        "max_prob": top2[:, 0].contiguous(),
        "margin": top2[:, 0] - top2[:, 1],
        "negative_entropy": torch.special.xlogy(p, p).sum(1),
    }


# ---------------------------------------------------------------------------------------------------------------
# Evaluation of a confidence against a per-case loss or quality
# ---------------------------------------------------------------------------------------------------------------


def _vector(x: Any, arg: str, where: str, *, finite: bool = True) -> np.ndarray:
    """``x`` (tensor, array, sequence) as a non-empty 1-D float64 array; finite unless told otherwise."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{arg}` of {where} must be a numeric array or tensor; got {type(x).__name__}.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"`{arg}` of {where} must be 1-D with at least one value; got shape {arr.shape}.")
    if finite and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"`{arg}` of {where} must be finite; got {bad} NaN/inf value(s).")
    return arr


def _pair(first: Any, second: Any, names: tuple[str, str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D finite float64 arrays of the same length."""
    a, b = _vector(first, names[0], where), _vector(second, names[1], where)
    if a.shape != b.shape:
        raise ValueError(f"`{names[0]}` and `{names[1]}` of {where} must have the same length; got {a.size}, {b.size}.")
    return a, b


def _expected_cumulative_loss(confidence: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """``E[S_k]``, ``k = 1..n``: expected total loss of the ``k`` most confident cases, ties in random order."""
    order = np.lexsort((loss, -confidence))  # confidence descending, then loss ascending: input order is irrelevant
    conf, ls = confidence[order], loss[order]
    n = ls.size
    total = np.cumsum(ls)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = conf[1:] != conf[:-1]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    a = starts[group]  # cases before the group
    b = np.append(starts[1:], n)[group]  # cases up to the group's end
    before = np.where(a > 0, total[a - 1], 0.0)
    through = total[b - 1]
    k = np.arange(1, n + 1)
    interpolated = before + (k - a) * (through - before) / (b - a)
    constant = (np.minimum.reduceat(ls, starts) == np.maximum.reduceat(ls, starts))[group]
    return np.where(constant | (k == b), total, interpolated)  # exact where the order within the group is moot


def risk_coverage_curve(confidence: Any, loss: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""The risk–coverage curve: the mean loss of the ``k`` most confident cases at coverage ``k/n``.

    .. math:: \text{coverage}_k = \frac{k}{n}, \qquad \text{risk}_k = \frac{1}{k}\,\mathbb{E}\Big[\sum_{i \le k}
        \ell_{\pi(i)}\Big], \qquad k = 1, \dots, n

    with ``π`` the cases by confidence descending; the expectation is over a uniformly random order within each
    group of tied confidences (module docstring: exact at the group boundaries, the total loss linear in between,
    independent of the input order). Geifman, Uziel, El-Yaniv, ICLR 2019.

    Args:
        confidence: ``(n,)`` per-case confidence, higher = more confident.
        loss: ``(n,)`` per-case loss, e.g. ``1 − Dice`` or the 0/1 error.

    Returns:
        ``(coverage, selective_risk)``, two float64 ``(n,)`` arrays.

    Raises:
        ValueError: not 1-D, empty, of different lengths, or not finite.

    Example:
        >>> coverage, risk = risk_coverage_curve([0.9, 0.5, 0.5], [0.0, 1.0, 0.0])
        >>> coverage.tolist(), risk.tolist()
        ([0.3333333333333333, 0.6666666666666666, 1.0], [0.0, 0.25, 0.3333333333333333])
    """
    conf, ls = _pair(confidence, loss, ("confidence", "loss"), "risk_coverage_curve")
    k = np.arange(1, ls.size + 1)
    return k / ls.size, _expected_cumulative_loss(conf, ls) / k


def aurc(confidence: Any, loss: Any) -> float:
    r"""Area under the risk–coverage curve: the mean selective risk over the coverages ``k/n`` (lower is better).

    .. math:: \mathrm{AURC} = \frac{1}{n} \sum_{k=1}^{n} \text{risk}_k

    Ties as :func:`risk_coverage_curve` (the expectation over random tie orders). Geifman, Uziel, El-Yaniv,
    "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers", ICLR 2019.

    Args:
        confidence: ``(n,)`` per-case confidence, higher = more confident.
        loss: ``(n,)`` per-case loss.

    Returns:
        The AURC, in the units of the loss.

    Raises:
        ValueError: as :func:`risk_coverage_curve`.

    Example:
        >>> aurc([0.9, 0.1], [0.0, 1.0]), aurc([0.1, 0.9], [0.0, 1.0])
        (0.25, 0.75)
    """
    conf, ls = _pair(confidence, loss, ("confidence", "loss"), "aurc")
    return float(np.mean(_expected_cumulative_loss(conf, ls) / np.arange(1, ls.size + 1)))


def e_aurc(confidence: Any, loss: Any) -> float:
    r"""Excess AURC: the AURC minus that of the oracle that accepts the lowest losses first (≥ 0; 0 is perfect).

    .. math:: \text{e-AURC} = \mathrm{AURC}(\text{confidence}, \ell) - \mathrm{AURC}(-\ell, \ell)

    Every order of the cases has an AURC at least the oracle's, so the tie-averaged AURC does too. A confidence
    that orders the cases as ``−ℓ`` does (e.g. the quality ``q`` when ``ℓ = 1 − q``) gives exactly 0. Geifman,
    Uziel, El-Yaniv, ICLR 2019.

    Args:
        confidence: ``(n,)`` per-case confidence, higher = more confident.
        loss: ``(n,)`` per-case loss.

    Returns:
        The e-AURC.

    Raises:
        ValueError: as :func:`risk_coverage_curve`.

    Example:
        >>> e_aurc([0.9, 0.1], [0.0, 1.0]), e_aurc([0.1, 0.9], [0.0, 1.0])
        (0.0, 0.5)
    """
    conf, ls = _pair(confidence, loss, ("confidence", "loss"), "e_aurc")
    k = np.arange(1, ls.size + 1)
    excess = _expected_cumulative_loss(conf, ls) / k - _expected_cumulative_loss(-ls, ls) / k
    return float(np.mean(excess))


def augrc(confidence: Any, loss: Any) -> float:
    r"""Area under the generalized risk–coverage curve: the mean loss of the accepted cases per case.

    .. math:: \mathrm{AUGRC} = \frac{1}{n} \sum_{k=1}^{n} \frac{k}{n}\,\text{risk}_k
        = \frac{1}{n^2} \sum_{k=1}^{n} \mathbb{E}\Big[\sum_{i \le k} \ell_{\pi(i)}\Big]

    The generalized risk at coverage ``k/n`` estimates ``P(failure ∧ accepted)`` (Traub et al., "Overcoming Common
    Flaws in the Evaluation of Selective Classification Systems", NeurIPS 2024); with a continuous loss such as
    ``1 − Dice`` the loss replaces the 0/1 failure, so AUGRC is the average loss of undetected failures over all
    coverages. Ties as :func:`risk_coverage_curve`. The trapezoidal rule of the authors' code gives
    ``AUGRC − mean(ℓ) / (2n)`` (module docstring).

    Args:
        confidence: ``(n,)`` per-case confidence, higher = more confident.
        loss: ``(n,)`` per-case loss.

    Returns:
        The AUGRC, in the units of the loss.

    Raises:
        ValueError: as :func:`risk_coverage_curve`.

    Example:
        >>> augrc([0.9, 0.1], [0.0, 1.0]), augrc([0.1, 0.9], [0.0, 1.0])
        (0.25, 0.5)
    """
    conf, ls = _pair(confidence, loss, ("confidence", "loss"), "augrc")
    return float(np.mean(_expected_cumulative_loss(conf, ls) / ls.size))


def failure_auroc(confidence: Any, failed: Any) -> float:
    r"""AUROC of detecting failed cases by their low confidence: the chance a failure is less confident than a success.

    .. math:: \mathrm{AUROC} = P(c_{\text{failed}} < c_{\text{ok}}) + \tfrac{1}{2}\,P(c_{\text{failed}} = c_{\text{ok}})

    over all (failed, not failed) pairs: the ROC AUC with score ``−confidence`` and ``failed`` as positive, ties
    counted ½ (Mann–Whitney with average ranks). 0.5 is chance, 1 a perfect separation; NaN when all cases failed
    or none did. Used for segmentation failures (Dice below a level) by Zenk et al., MedIA 2025.

    Args:
        confidence: ``(n,)`` per-case confidence, higher = more confident.
        failed: ``(n,)`` bool (or 0/1): the case failed.

    Returns:
        The AUROC, or NaN with a single class.

    Raises:
        ValueError: not 1-D, empty, of different lengths, not finite, or ``failed`` not 0/1.

    Example:
        >>> failure_auroc([0.9, 0.8, 0.3, 0.8], [False, False, True, True])
        0.875
    """
    where = "failure_auroc"
    conf, fail = _pair(confidence, failed, ("confidence", "failed"), where)
    if not np.isin(fail, (0.0, 1.0)).all():
        raise ValueError(f"`failed` of {where} must be bool or 0/1; got values {np.unique(fail)[:5].tolist()}.")
    positive = fail == 1.0
    n_fail, n_ok = int(positive.sum()), int((~positive).sum())
    if n_fail == 0 or n_ok == 0:
        return math.nan
    ranks = rankdata(conf)  # ascending confidence, average ranks for ties
    return float((ranks[~positive].sum() - n_ok * (n_ok + 1) / 2) / (n_ok * n_fail))


def spearman(confidence: Any, quality: Any) -> float:
    r"""Spearman's rank correlation between confidence and quality (average ranks for ties).

    .. math:: \rho = \operatorname{corr}\big(\operatorname{rank}(c), \operatorname{rank}(q)\big)

    the Pearson correlation of the ranks; NaN when either is constant (or ``n = 1``). Spearman, "The Proof and
    Measurement of Association between Two Things", Am. J. Psychol., 1904.

    Args:
        confidence: ``(n,)`` per-case confidence.
        quality: ``(n,)`` per-case quality, e.g. Dice.

    Returns:
        ρ in [−1, 1], or NaN.

    Raises:
        ValueError: not 1-D, empty, of different lengths, or not finite.

    Example:
        >>> spearman([0.1, 0.4, 0.3], [0.2, 0.9, 0.7]), spearman([0.1, 0.4, 0.3], [1.0, 0.1, 0.5])
        (1.0, -1.0)
    """
    conf, q = _pair(confidence, quality, ("confidence", "quality"), "spearman")
    x, y = rankdata(conf), rankdata(q)
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if denominator == 0.0:
        return math.nan
    return float(np.clip(np.dot(x, y) / denominator, -1.0, 1.0))


def _table_row(name: str, conf: np.ndarray, q: np.ndarray, failure_below: float) -> dict[str, Any]:
    """One row of :func:`failure_detection_table` for cases with a quality."""
    if q.size == 0:
        return {"confidence": name} | dict.fromkeys(("aurc", "e_aurc", "augrc", "auroc", "spearman"), math.nan)
    loss = 1.0 - q
    return {
        "confidence": name,
        "aurc": aurc(conf, loss),
        "e_aurc": e_aurc(conf, loss),
        "augrc": augrc(conf, loss),
        "auroc": failure_auroc(conf, q < failure_below),
        "spearman": spearman(conf, q),
    }


def failure_detection_table(
    confidences: Mapping[str, Any],
    quality: Any,
    *,
    failure_below: float = 0.5,
) -> list[dict[str, Any]]:
    """Evaluate several confidence scores against one per-case quality: one row per score.

    The loss is ``1 − quality`` (quality: Dice in [0, 1], or correctness 0/1) and a case failed when
    ``quality < failure_below``. Each row holds :func:`aurc`, :func:`e_aurc`, :func:`augrc` (lower is better),
    :func:`failure_auroc` and :func:`spearman` (higher is better). Cases whose quality is NaN (e.g. no Dice: empty
    reference and prediction, scored NaN) are dropped for every score, whatever their confidence; with none left
    the row is all NaN. Zenk et al., MedIA 2025 (risk–coverage analysis); Traub et al., NeurIPS 2024 (AUGRC).

    Args:
        confidences: ``{name: (n,) confidence}``, e.g. the result of :func:`segmentation_confidences`.
        quality: ``(n,)`` per-case quality in [0, 1]; NaN = no quality.
        failure_below: the quality below which a case counts as failed.

    Returns:
        ``[{"confidence": name, "aurc", "e_aurc", "augrc", "auroc", "spearman"}, ...]`` in the order of
        ``confidences``.

    Raises:
        ValueError: a quality outside [0, 1] or infinite, a confidence of another length or not finite on a kept
            case, or ``failure_below`` not a finite number.

    Example:
        >>> quality = [0.9, 0.8, 0.2, float("nan")]
        >>> rows = failure_detection_table({"good": [3.0, 2.0, 1.0, 0.0], "bad": [1.0, 2.0, 3.0, 0.0]}, quality)
        >>> [(r["confidence"], r["e_aurc"] == 0.0, r["auroc"], r["spearman"]) for r in rows]
        [('good', True, 1.0, 1.0), ('bad', False, 0.0, -1.0)]
    """
    where = "failure_detection_table"
    level = _real(failure_below)
    if level is None:
        raise ValueError(f"`failure_below` of {where} must be a finite number; got {failure_below!r}.")
    if not isinstance(confidences, Mapping):
        kind = type(confidences).__name__
        raise TypeError(f"`confidences` of {where} must be a mapping of name to array; got {kind}.")
    q = _vector(quality, "quality", where, finite=False)
    keep = ~np.isnan(q)
    q = q[keep]
    if not (np.isfinite(q) & (q >= 0.0) & (q <= 1.0)).all():
        raise ValueError(f"`quality` of {where} must be in [0, 1] (or NaN); got min {q.min():.6g}, max {q.max():.6g}.")
    rows = []
    for name, values in confidences.items():
        conf = _vector(values, f"confidences[{name!r}]", where, finite=False)
        if conf.shape != keep.shape:
            raise ValueError(f"`confidences[{name!r}]` of {where} must have {keep.size} values; got {conf.size}.")
        conf = conf[keep]
        if not np.isfinite(conf).all():
            raise ValueError(f"`confidences[{name!r}]` of {where} must be finite where `quality` is not NaN.")
        rows.append(_table_row(str(name), conf, q, level))
    return rows
