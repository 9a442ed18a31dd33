"""Classification metrics: top-k accuracy and the compactness of penultimate-layer embeddings.

Both reduce to fixed-size sums (int64 counts, float64 moments), so batches and processes add up exactly.

References:
    Müller, Kornblith, Hinton. When Does Label Smoothing Help? NeurIPS 2019.
    Zhang, Jiang, Hou, Cheng. Delving Deep into Label Smoothing. IEEE TIP, 2021.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from softlabels.metrics.functional._inputs import check_inputs, format_inputs


class TopKCounts(NamedTuple):
    """Int64 scalars: items whose target is among the top ``k`` classes, and items seen."""

    correct: Tensor
    total: Tensor


class ClassMoments(NamedTuple):
    """Per-class float64 ``Σ f`` ``(C, D)``, float64 ``Σ ‖f‖²`` ``(C,)`` and int64 counts ``(C,)``."""

    feature_sum: Tensor
    sq_norm_sum: Tensor
    n_items: Tensor


def _is_int(x: object) -> bool:
    """Whether ``x`` is an int and not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def _top_k_accuracy_arg_validation(where: str, k: int) -> None:
    """Check ``k``."""
    if not _is_int(k) or k < 1:
        raise ValueError(f"`k` of {where} must be an int >= 1; got {k!r}.")


def _top_k_accuracy_tensor_validation(probs: Tensor, target: Tensor, *, k: int, where: str, check_values: bool) -> None:
    """Check ``probs (N, C)`` and hard labels ``target (N,)``; ``k`` must not exceed the number of classes."""
    if isinstance(probs, Tensor) and isinstance(target, Tensor) and target.ndim == 2 and target.shape == probs.shape:
        raise ValueError(
            f"`target` of {where} must be hard labels of shape (N,); got a soft target of shape {tuple(target.shape)}. "
            "Accuracy needs one correct class per item: pass `target.argmax(1)` if that is what you mean."
        )
    check_inputs(probs, target, mask=None, ignore_index=None, where=where, check_values=check_values)
    if probs.ndim != 2:
        raise ValueError(f"`probs` of {where} must have shape (N, C); got {tuple(probs.shape)}.")
    if k > max(probs.shape[1], 2):
        raise ValueError(f"`k` of {where} must be <= the number of classes {max(probs.shape[1], 2)}; got {k}.")


def _top_k_accuracy_update(probs: Tensor, target: Tensor, *, k: int) -> TopKCounts:
    """Count the items whose target ranks among the first ``k`` (descending probability, ties: lower index first)."""
    f = format_inputs(probs, target, mask=None, ignore_index=None)
    p, t = f.probs[..., 0], f.target[:, 0]  # (N, C), (N,)
    p_target = p.gather(1, t.unsqueeze(1))
    before = torch.arange(p.shape[1], device=p.device).unsqueeze(0) < t.unsqueeze(1)
    rank = (p > p_target).sum(1) + ((p == p_target) & before).sum(1)
    return TopKCounts((rank < k).sum(), torch.tensor(p.shape[0], dtype=torch.int64, device=p.device))


def _top_k_accuracy_compute(counts: TopKCounts) -> Tensor:
    """Float64 ``correct / total`` (NaN if no item)."""
    return counts.correct.double() / counts.total


def top_k_accuracy(probs: Tensor, target: Tensor, *, k: int = 1, validate_args: bool = True) -> Tensor:
    r"""Top-k accuracy: the fraction of items whose target class is among the ``k`` most probable classes.

    .. math:: \mathrm{acc}_k = \frac{1}{N}\sum_i \mathbb{1}\big[\mathrm{rank}_i(y_i) < k\big],\quad
        \mathrm{rank}_i(y) = |\{c : p_{ic} > p_{iy}\}| + |\{c < y : p_{ic} = p_{iy}\}|

    Ties are broken deterministically in favour of the **lower class index** (a stable descending sort), so ``k = 1``
    equals ``probs.argmax(1) == target`` (``torch.argmax`` returns the first maximum). ``C == 1`` is the binary
    foreground probability (classes ``[1 − p, p]``). Soft targets are rejected: accuracy needs one correct class.

    Args:
        probs: ``(N, C)`` probabilities.
        target: ``(N,)`` integer labels.
        k: number of top classes that count, ``1 <= k <= C``.
        validate_args: check input values.

    Returns:
        A float64 scalar in ``[0, 1]`` (NaN if ``N == 0``); higher is better. The error is ``1 − acc``.

    Raises:
        ValueError: bad ``k``, shape, values or a soft target (``TypeError``: bad type or dtype).

    Example:
        >>> probs = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6]])
        >>> target = torch.tensor([1, 1, 0])
        >>> top_k_accuracy(probs, target).item(), round(top_k_accuracy(probs, target, k=2).item(), 4)
        (0.0, 0.6667)
    """
    _top_k_accuracy_arg_validation("top_k_accuracy", k)
    _top_k_accuracy_tensor_validation(probs, target, k=k, where="top_k_accuracy", check_values=validate_args)
    return _top_k_accuracy_compute(_top_k_accuracy_update(probs, target, k=k))


def _embedding_compactness_arg_validation(where: str, num_classes: int, num_features: int | None = None) -> None:
    """Check ``num_classes`` (and ``num_features`` of the streaming class)."""
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"`num_classes` of {where} must be an int >= 2; got {num_classes!r}.")
    if num_features is not None and (not _is_int(num_features) or num_features < 1):
        raise ValueError(f"`num_features` of {where} must be an int >= 1; got {num_features!r}.")


def _embedding_compactness_tensor_validation(
    features: Tensor, target: Tensor, *, num_classes: int, where: str, check_values: bool, num_features: int = 0
) -> None:
    """Check ``features (N, D)`` (``D == num_features`` if given) and labels ``target (N,)`` in ``[0, C − 1]``."""
    if not isinstance(features, Tensor) or not features.is_floating_point():
        raise TypeError(f"`features` of {where} must be a floating tensor; got {getattr(features, 'dtype', features)}.")
    if (
        not isinstance(target, Tensor)
        or target.is_floating_point()
        or target.is_complex()
        or target.dtype == torch.bool
    ):
        raise TypeError(f"`target` of {where} must be an integer label tensor; got {getattr(target, 'dtype', target)}.")
    if features.ndim != 2 or features.shape[1] < 1 or (num_features and features.shape[1] != num_features):
        want = f"(N, {num_features})" if num_features else "(N, D) with D >= 1"
        raise ValueError(f"`features` of {where} must have shape {want}; got {tuple(features.shape)}.")
    if target.shape != features.shape[:1] or target.device != features.device:
        raise ValueError(
            f"`target` of {where} must have shape ({features.shape[0]},) on {features.device} to match `features`; "
            f"got {tuple(target.shape)} on {target.device}."
        )
    if check_values and features.numel() > 0:
        if not torch.isfinite(features).all():
            raise ValueError(f"`features` of {where} must be finite; got {int((~features.isfinite()).sum())} NaN/inf.")
        lo, hi = torch.aminmax(target)
        if int(lo) < 0 or int(hi) >= num_classes:
            raise ValueError(
                f"`target` of {where} must hold labels in [0, {num_classes - 1}]; got min {int(lo)}, max {int(hi)}."
            )


def _embedding_compactness_update(features: Tensor, target: Tensor, *, num_classes: int) -> ClassMoments:
    """Per-class float64 sums of the features and of their squared norms, and int64 counts."""
    f, t = features.double(), target.long()
    d = features.shape[1]
    feature_sum = torch.zeros(num_classes, d, dtype=torch.float64, device=f.device).index_add_(0, t, f)
    sq_norm_sum = torch.zeros(num_classes, dtype=torch.float64, device=f.device).index_add_(0, t, f.square().sum(1))
    return ClassMoments(feature_sum, sq_norm_sum, torch.bincount(t, minlength=num_classes))


def _embedding_compactness_compute(moments: ClassMoments, where: str) -> Tensor:
    """Float64 ratio of the mean within-class variance to the mean squared distance between class centroids."""
    keep = moments.n_items > 0
    n_kept = int(keep.sum())
    if n_kept < 2:
        raise ValueError(f"{where} needs samples of at least 2 classes; got samples of {n_kept} class(es).")
    n = moments.n_items[keep].double()
    centroids = moments.feature_sum[keep] / n.unsqueeze(1)
    intra = (moments.sq_norm_sum[keep] / n - centroids.square().sum(1)).mean()
    spread = (centroids - centroids.mean(0)).square().sum()  # Σ_{c<k} ‖μ_c − μ_k‖² = K · spread
    return intra / (2.0 * spread / (n_kept - 1))


def embedding_compactness(features: Tensor, target: Tensor, *, num_classes: int, validate_args: bool = True) -> Tensor:
    r"""Embedding compactness: mean within-class variance over mean squared distance between class centroids.

    .. math:: \rho = \frac{\frac{1}{K}\sum_{c} \frac{1}{n_c}\sum_{i: y_i = c} \lVert f_i - \mu_c \rVert^2}
        {\binom{K}{2}^{-1} \sum_{c < k} \lVert \mu_c - \mu_k \rVert^2}

    over the ``K`` classes that have samples (classes without samples are excluded; ``K >= 2`` is required), with
    :math:`\mu_c` the class centroid. Each class weighs the same in the numerator. The within-class variance is
    computed in float64 as :math:`\frac{1}{n_c}\sum\lVert f\rVert^2 - \lVert\mu_c\rVert^2` (the streaming form), so
    features with a large common offset lose precision. Lower is more compact (tighter, better separated clusters,
    as label smoothing produces; Müller et al. 2019, Zhang et al. 2021). ``inf`` if all centroids coincide.

    Args:
        features: ``(N, D)`` penultimate-layer embeddings.
        target: ``(N,)`` integer labels.
        num_classes: number of classes ``C >= 2``.
        validate_args: check input values.

    Returns:
        A float64 scalar ``>= 0``; lower is better.

    Raises:
        ValueError: bad option, shape or values, or fewer than 2 classes with samples (``TypeError``: bad dtype).

    Example:
        >>> features = torch.tensor([[0.0, 1.0], [0.0, -1.0], [4.0, 1.0], [4.0, -1.0]])
        >>> embedding_compactness(features, torch.tensor([0, 0, 1, 1]), num_classes=3).item()
        0.0625
    """
    where = "embedding_compactness"
    _embedding_compactness_arg_validation(where, num_classes)
    _embedding_compactness_tensor_validation(
        features, target, num_classes=num_classes, where=where, check_values=validate_args
    )
    return _embedding_compactness_compute(
        _embedding_compactness_update(features, target, num_classes=num_classes), where
    )
