"""Fusing several raters' hard label maps into one target: mean, weighted mean, majority (docs/methods.md §3.5)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.targets.label_checks import _check_labels, _check_num_classes
from softlabels.targets.smoothing import _one_hot

__all__ = ["FuseRatersd", "fuse_raters"]

FusionMethod = Literal["mean", "weighted", "majority"]


def _stack_raters(raters: object, num_classes: int, where: str) -> Tensor:
    if isinstance(raters, Tensor):
        stacked = raters
    elif isinstance(raters, Sequence) and not isinstance(raters, str):
        if not raters or not all(isinstance(r, Tensor) for r in raters):
            raise TypeError(f"`raters` of {where} must be a non-empty list of tensors (N, *spatial); got {raters!r}.")
        shapes = {tuple(r.shape) for r in raters}
        if len(shapes) != 1:
            raise ValueError(f"`raters` of {where} must all have the same shape; got shapes {sorted(shapes)}.")
        stacked = torch.stack(list(raters))
    else:
        kind = type(raters).__name__
        raise TypeError(f"`raters` of {where} must be a tensor (R, N, *spatial) or a list; got {kind}.")
    if stacked.ndim not in (2, 4, 5) or stacked.shape[0] < 1:
        raise ValueError(
            f"`raters` of {where} must have shape (R, N, H, W) or (R, N, D, H, W) (segmentation) or (R, N) "
            f"(classification); got {tuple(stacked.shape)}."
        )
    return _check_labels(stacked, num_classes, where, spatial=False, name="raters")  # no flattening copy


def _votes(stacked: Tensor, num_classes: int, weights: Tensor | None = None) -> Tensor:
    """Per-class (weighted) vote counts ``(N, C, *spatial)`` of rater maps ``(R, N, *spatial)``, by ``scatter_add_``.

    ``weights`` is ``(R, N)`` or ``None`` (every vote counts 1). No per-rater one-hot map is built.
    """
    num_raters, n = stacked.shape[:2]
    spatial = stacked.shape[2:]
    dtype = torch.get_default_dtype()
    counts = torch.zeros((n, num_classes, *spatial), dtype=dtype, device=stacked.device)
    ones = torch.ones((n, 1, *spatial), dtype=dtype, device=stacked.device)
    for r in range(num_raters):
        vote = ones if weights is None else weights[r].to(dtype).view(n, 1, *([1] * len(spatial))).expand_as(ones)
        counts.scatter_add_(1, stacked[r].unsqueeze(1).long(), vote)
    return counts


def _majority_labels(counts: Tensor, num_raters: int) -> Tensor:
    """Majority label map ``(N, *spatial)`` from vote counts: ``≥ ⌊R/2⌋ + 1`` votes; no majority → class 0.

    At most one class can reach a strict majority, so one pass per class over ``(N, *spatial)`` finds it.
    """
    needed = num_raters // 2 + 1
    labels = torch.zeros_like(counts[:, 0])  # float adds: faster than int64 masked fills on the CPU
    for c in range(1, counts.shape[1]):
        labels.add_((counts[:, c] >= needed).to(labels.dtype), alpha=c)
    return labels.long()


def _dice_weights(stacked: Tensor, majority: Tensor, reference_quirk: bool) -> Tensor:
    """Per-rater, per-sample weights ``(R, N)``: foreground Dice of each rater against the majority label map."""
    n = stacked.shape[1]
    major_fg = torch.count_nonzero((majority >= 1).reshape(n, -1), dim=1)
    inter, size = [], []
    for rater in stacked:  # per rater on (N, *spatial) views: no (R, N, *spatial) temporaries
        fg = rater >= 1
        inter.append(torch.count_nonzero((fg & (rater == majority)).reshape(n, -1), dim=1))
        size.append(torch.count_nonzero(fg.reshape(n, -1), dim=1))
    inter_t = torch.stack(inter).to(torch.get_default_dtype())
    total = (torch.stack(size) + major_fg).to(torch.get_default_dtype())
    dice = torch.where(total > 0, 2 * inter_t / total.clamp_min(1), torch.ones_like(total))
    if reference_quirk:
        dice = torch.where(dice <= 0, torch.ones_like(dice), dice)
    all_zero = dice.sum(0, keepdim=True) <= 0
    return torch.where(all_zero, torch.ones_like(dice), dice)


def _explicit_weights(weights: object, num_raters: int, like: Tensor, where: str) -> Tensor:
    if isinstance(weights, Tensor):
        values = weights.detach().to(device=like.device, dtype=like.dtype).flatten()
    elif isinstance(weights, Sequence) and all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights):
        values = torch.tensor([float(w) for w in weights], device=like.device, dtype=like.dtype)
    else:
        raise TypeError(f"`weights` of {where} must be a sequence of floats, a tensor or None; got {weights!r}.")
    if values.numel() != num_raters:
        raise ValueError(f"`weights` of {where} must hold one weight per rater (R={num_raters}); got {weights!r}.")
    finite = all(math.isfinite(v) for v in values.tolist())
    if not finite or bool((values < 0).any()) or float(values.sum()) <= 0:
        raise ValueError(f"`weights` of {where} must be finite, >= 0 and not all 0; got {weights!r}.")
    return values.view(num_raters, 1).expand(num_raters, like.shape[0])  # like: the (N, C, *spatial) counts


def fuse_raters(
    raters: Tensor | Sequence[Tensor],
    num_classes: int,
    *,
    method: FusionMethod = "mean",
    weights: Sequence[float] | Tensor | None = None,
    reference_quirk: bool = False,
) -> Tensor:
    """Fuse R raters' hard label maps into one target ``(N, C, *spatial)``.

    - ``"mean"``: ``q = (1/R) Σ_r onehot(y_r)``, the fraction of raters choosing each class.
    - ``"weighted"``: ``q = Σ_r w_r onehot(y_r) / Σ_r w_r``. With ``weights=None``, ``w_r`` (per sample) is the
      Dice of rater ``r`` against the majority vote over the foreground channels ``1..C−1``
      (``2 Σ|A∩B| / Σ(|A|+|B|)``, the JDTLosses "MR" labels; binary Dice when ``C = 2``). Both masks empty gives
      ``w = 1``. **Quirk choice:** the reference helper also returns 1 when the Dice is ≤ 0, so a rater with zero
      overlap gets the *maximum* weight; by default we keep Dice 0 (weight 0) and reproduce the quirk only with
      ``reference_quirk=True``. If every rater of a sample has weight 0, that sample falls back to the plain mean.
    - ``"majority"``: hard one-hot of the class with ``Σ_r onehot(y_r) ≥ ⌊R/2⌋ + 1`` (at most one class can
      reach it). **Policy:** a voxel where no class has that strict majority (ties included, e.g. 1 vs 1 with
      R=2) goes to class 0 (background), as in the binary reference rule.

    Args:
        raters: hard labels ``(R, N, H, W)`` / ``(R, N, D, H, W)`` of integer dtype (``(R, N)`` for the class labels
            of a classification task), or a list of R maps ``(N, *spatial)`` of equal shape.
        num_classes: number of classes ``C``.
        method: ``"mean"``, ``"weighted"`` or ``"majority"``.
        weights: one non-negative weight per rater for ``"weighted"`` (``None`` = Dice-vs-majority weights).
        reference_quirk: with automatic weights, give a zero-Dice rater weight 1 as the JDTLosses script does.

    Returns:
        Target ``(N, C, *spatial)`` (``(N, C)`` for classification) in the default float dtype, on the raters'
        device; every voxel sums to 1.

    Raises:
        TypeError: ``raters`` or ``weights`` of the wrong type.
        ValueError: mismatched rater shapes, labels outside ``[0, C)``, bad weights, an unknown ``method``, or
            ``weights`` given with a method other than ``"weighted"``.

    Reference:
        Silva & Oliveira, "Using soft labels to model uncertainty in medical image segmentation", arXiv 2109.12622;
        Wang & Blaschko et al., "Dice Semimetric Losses", MICCAI 2023 (QUBIQ preparation).

    Example:
        >>> raters = torch.tensor([[[[0, 1, 1]]], [[[0, 0, 1]]], [[[0, 1, 1]]]])  # R=3, N=1, H=1, W=3
        >>> fuse_raters(raters, 2)[0, 1]
        tensor([[0.0000, 0.6667, 1.0000]])
        >>> fuse_raters(raters, 2, method="majority")[0, 1]
        tensor([[0., 1., 1.]])
    """
    where = "fuse_raters"
    method = look_up_option("method", method, ("mean", "weighted", "majority"), where=where)  # type: ignore[assignment]
    num_classes = _check_num_classes(num_classes, where)
    if weights is not None and method != "weighted":
        raise ValueError(f"`weights` of {where} is only used with method='weighted'; got method={method!r}.")
    stacked = _stack_raters(raters, num_classes, where)
    num_raters = stacked.shape[0]
    counts = _votes(stacked, num_classes)
    if method == "mean":
        return counts / num_raters
    if method == "majority":
        return _one_hot(_majority_labels(counts, num_raters), num_classes)
    if weights is None:
        w = _dice_weights(stacked, _majority_labels(counts, num_raters), reference_quirk)
    else:
        w = _explicit_weights(weights, num_raters, counts, where)
    votes = _votes(stacked, num_classes, w)
    return votes.div_(votes.sum(1, keepdim=True))  # Σ_r w_r onehot_r / Σ_r w_r, each value <= 1 exactly


class FuseRatersd(MapTransform):
    """MONAI dictionary wrapper of :func:`fuse_raters` for one sample.

    Each ``data[key]`` holds one sample's R rater maps stacked on the channel axis, ``(R, *spatial)`` integer
    dtype (e.g. loaded with ``LoadImaged`` + ``ConcatItemsd``). It is replaced by the fused target
    ``(C, *spatial)``.

    Args:
        keys: keys of the stacked rater maps.
        num_classes: number of classes ``C``.
        method: ``"mean"``, ``"weighted"`` or ``"majority"``.
        weights: per-rater weights for ``"weighted"``, or ``None``.
        reference_quirk: see :func:`fuse_raters`.
        allow_missing_keys: skip keys absent from the dictionary.

    Example:
        >>> data = {"label": torch.tensor([[[0, 1]], [[1, 1]]])}
        >>> FuseRatersd("label", num_classes=2)(data)["label"]
        tensor([[[0.5000, 0.0000]],
        <BLANKLINE>
                [[0.5000, 1.0000]]])
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        *,
        method: FusionMethod = "mean",
        weights: Sequence[float] | Tensor | None = None,
        reference_quirk: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = num_classes
        self.method: FusionMethod = method
        self.weights = weights
        self.reference_quirk = reference_quirk

    def __call__(self, data: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Replace every selected ``(R, *spatial)`` rater stack by its fused ``(C, *spatial)`` target."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = fuse_raters(
                d[key].unsqueeze(1),
                self.num_classes,
                method=self.method,
                weights=self.weights,
                reference_quirk=self.reference_quirk,
            )[0]
        return d
