"""Segmentation overlap (Dice, IoU, soft Dice) and surface distance (HD95, ASSD), per case and class, 2D and 3D.

Hard metrics compare the **argmax** of ``probs`` over the class axis (ties go to the lower class index; ``C == 1`` is
the foreground probability, so foreground needs ``p > 0.5``) with a label map. Every public function returns a
float64 ``(N, C')`` tensor, one value per case and kept class (``C' = C`` with the background, ``C − 1`` without;
``C == 1`` counts as two classes). Empty structures (docs/metrics.md), counted by the streaming twins: reference and
prediction both empty → Dice/IoU 1 (``empty="one"``) or NaN, HD95/ASSD NaN (excluded); exactly one of them empty →
Dice/IoU 0, HD95/ASSD NaN (flagged). An input without voxels is no data, not an empty structure: ``N = 0`` gives an
empty ``(0, C')`` result, a spatial size 0 NaN for every case whatever ``empty``, and the streaming ``update`` of such
a batch changes nothing.

References:
    Dice. Measures of the Amount of Ecologic Association Between Species. Ecology, 1945.
    Wang, Blaschko et al. Dice Semimetric Losses: Optimizing the Dice Score with Soft Labels. MICCAI 2023.
    Huttenlocher, Klanderman, Rucklidge. Comparing Images Using the Hausdorff Distance. IEEE TPAMI, 1993.
    Distances: MONAI ``compute_hausdorff_distance`` / ``compute_average_surface_distance`` (Cardoso et al., 2022).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Literal, NamedTuple, TypeAlias

import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from torch import Tensor

from softlabels._ops import argmax
from softlabels._options import look_up_option
from softlabels.metrics.functional._inputs import check_inputs, format_inputs, nan_without_voxels

Empty = Literal["one", "nan"]
Spacing: TypeAlias = "float | Sequence[float] | None"


class OverlapStats(NamedTuple):
    """``(N, C')`` true positives, false positives, false negatives: int64 voxel counts, float64 when soft."""

    tp: Tensor
    fp: Tensor
    fn: Tensor

    def empty_flags(self) -> tuple[Tensor, Tensor]:
        """Bool ``(N, C')``: the reference is empty (``tp + fn = 0``), the prediction is empty (``tp + fp = 0``)."""
        return self.tp + self.fn == 0, self.tp + self.fp == 0


def _is_int(x: object, *, real: bool = False) -> bool:
    """Whether ``x`` is an integer (or, with ``real``, a real number, e.g. a NumPy float), not a bool."""
    return isinstance(x, numbers.Real if real else numbers.Integral) and not isinstance(x, bool)


def _segmentation_arg_validation(
    where: str,
    include_background: bool,
    num_classes: int | None = None,
    empty: str | None = None,
    ignore_index: int | None = None,
    spacing: Spacing = None,
) -> None:
    """Check the options shared by every segmentation metric (``None`` = not an option of ``where``)."""
    if not isinstance(include_background, bool):
        raise ValueError(f"`include_background` of {where} must be a bool; got {include_background!r}.")
    if num_classes is not None and not (_is_int(num_classes) and num_classes >= 1):
        raise ValueError(f"`num_classes` of {where} must be an int >= 1 or None; got {num_classes!r}.")
    if empty is not None:
        look_up_option("empty", empty, ("one", "nan"), where=where)
    if ignore_index is not None and not _is_int(ignore_index):
        raise ValueError(f"`ignore_index` of {where} must be an int or None; got {ignore_index!r}.")
    values = list(spacing) if isinstance(spacing, Sequence) else [1.0 if spacing is None else spacing]
    if not values or not all(_is_int(s, real=True) and 0 < s < math.inf for s in values):
        raise ValueError(f"`spacing` of {where} must be a positive number or one per spatial dim; got {spacing!r}.")


def _segmentation_tensor_validation(
    probs: Tensor,
    target: Tensor,
    mask: Tensor | None,
    ignore_index: int | None,
    where: str,
    check_values: bool,
    family: str,
    num_classes: int | None = None,
    spacing: Spacing = None,
) -> None:
    """Check the inputs; ``family`` ``"overlap"``/``"distance"`` needs a label map, ``"distance"`` 2D/3D."""
    if family != "soft" and isinstance(probs, Tensor) and isinstance(target, Tensor) and target.shape == probs.shape:
        raise ValueError(
            f"`target` of {where} must be a label map (N, *spatial); got a soft target of shape "
            f"{tuple(target.shape)}. Use soft_dice_score for a soft reference, or pass target.argmax(1)."
        )
    check_inputs(probs, target, mask=mask, ignore_index=ignore_index, where=where, check_values=check_values)
    n_spatial = probs.ndim - 2
    if n_spatial < 1 or (family == "distance" and n_spatial not in (2, 3)):
        allowed = "(N, C, H, W) or (N, C, D, H, W)" if family == "distance" else "(N, C, *spatial)"
        raise ValueError(f"`probs` of {where} must have shape {allowed}; got {tuple(probs.shape)}.")
    if num_classes is not None and probs.shape[1] != num_classes:
        raise ValueError(f"`probs` of {where} must have num_classes={num_classes} channels; got {probs.shape[1]}.")
    if isinstance(spacing, Sequence) and len(spacing) != n_spatial:
        raise ValueError(f"`spacing` of {where} must have {n_spatial} values (one per spatial dim); got {spacing!r}.")


def _hard_labels(
    probs: Tensor, target: Tensor, mask: Tensor | None, ignore_index: int | None
) -> tuple[Tensor, Tensor, int]:
    """Argmax prediction and labels ``(N, V)``, dropped voxels labelled ``C`` (no class), and ``C`` (``C == 1`` → 2)."""
    f = format_inputs(probs, target, mask=mask, ignore_index=ignore_index)
    c, pred, gt = f.probs.shape[1], argmax(f.probs, 1), f.target
    if f.keep is not None:
        pred, gt = torch.where(f.keep, pred, c), torch.where(f.keep, gt, c)
    return pred, gt, c


def _confusion_stats(pred: Tensor, gt: Tensor, c: int, include_background: bool) -> OverlapStats:
    """Int64 tp/fp/fn ``(N, C')`` from the per-case confusion matrix of two label maps ``(N, V)``."""
    n, k = pred.shape[0], c + 1
    index = torch.add(gt, pred, alpha=k)  # (case · k + pred) · k + gt, in one pass for one case
    if n > 1:
        index += (torch.arange(n, device=pred.device) * (k * k)).unsqueeze(1)
    confusion = torch.bincount(index.flatten(), minlength=n * k * k).view(n, k, k)[:, :c, :c]
    start = 0 if include_background else 1
    tp = confusion.diagonal(dim1=1, dim2=2)[:, start:]
    return OverlapStats(tp, confusion.sum(2)[:, start:] - tp, confusion.sum(1)[:, start:] - tp)


def _overlap_update(
    probs: Tensor, target: Tensor, *, include_background: bool, mask: Tensor | None, ignore_index: int | None
) -> OverlapStats:
    """Int64 tp/fp/fn ``(N, C')`` of the argmax prediction against the label map over the kept voxels."""
    return _confusion_stats(*_hard_labels(probs, target, mask, ignore_index), include_background)


def _soft_dice_update(probs: Tensor, target: Tensor, *, include_background: bool, mask: Tensor | None) -> OverlapStats:
    """Float64 ``tp = (Σx + Σy − Σ|x − y|)/2``, ``fp = Σx − tp``, ``fn = Σy − tp`` per case and class."""
    f = format_inputs(probs, target, mask=mask, ignore_index=None)
    p = f.probs.double()
    q = f.target.double() if f.soft else torch.nn.functional.one_hot(f.target, p.shape[1]).movedim(-1, 1).double()
    if f.keep is not None:
        p, q = p * f.keep.unsqueeze(1), q * f.keep.unsqueeze(1)
    start = 0 if include_background else 1
    p, q = p[:, start:], q[:, start:]
    size_p, size_q = p.sum(2), q.sum(2)
    tp = (size_p + size_q - (p - q).abs().sum(2)) / 2.0
    return OverlapStats(tp, size_p - tp, size_q - tp)


def _overlap_compute(stats: OverlapStats, *, kind: str, empty: str = "one") -> Tensor:
    """Per-case Dice ``2tp/(2tp + fp + fn)`` (``kind="dice"``) or IoU ``tp/(tp + fp + fn)``; ``0/0`` → 1 or NaN."""
    tp, fp, fn = (s.double() for s in stats)
    num = 2.0 * tp if kind == "dice" else tp
    den = num + fp + fn
    fill = torch.full_like(den, 1.0 if empty == "one" else math.nan)
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), fill)


def _crop_to_union(pred: Tensor, gt: Tensor, margin: int = 1) -> tuple[Tensor, Tensor]:
    """Both bool masks ``(*spatial)`` cropped to the bounding box of ``pred | gt`` grown by ``margin``, in the image.

    Unchanged when the union is empty. The box is found axis by axis on the shrinking box (a max over contiguous
    ``uint8`` rows first), so a small structure costs one fast pass over the volume.
    """
    box = (pred | gt).view(torch.uint8)
    slices = []
    for axis, size in enumerate(box.shape):
        others = tuple(d for d in range(box.ndim) if d != axis)
        hit = (box.amax(dim=others) if others else box).nonzero()
        if hit.numel() == 0:
            return pred, gt
        lo, hi = int(hit[0]), int(hit[-1])
        slices.append(slice(max(lo - margin, 0), min(hi + 1 + margin, size)))
        box = box.narrow(axis, lo, hi - lo + 1)
    return pred[tuple(slices)], gt[tuple(slices)]


def _surface_distance(pred: Tensor, gt: Tensor, kind: str, spacing: Spacing) -> Tensor:
    """One distance between two non-empty bool masks ``(*spatial)`` by MONAI: HD95 or the symmetric ASSD.

    MONAI is called on the crop of the masks to the bounding box of their union grown by one voxel (clipped to the
    image), which gives exactly MONAI's result on the full masks: MONAI itself first crops the full masks to that
    box grown by one voxel, zero-padding where the box leaves the image, and computes edges (binary erosion with
    zero border), edge coordinates relative to the box and their distances only from that crop. Run on our crop, it
    finds the same union box (the crop only drops empty voxels outside it), grows it by one voxel into voxels that
    the crop keeps or that lie outside the image (zero-padded in both cases), and so erodes the identical array and
    measures identical coordinates: the same distances, the same percentile, bit for bit, for any spacing, in 2D
    and 3D. The full-size work it saves is MONAI's float conversion, union and bounding-box search of each class.
    """
    sp = [float(v) for v in spacing] if isinstance(spacing, Sequence) else None if spacing is None else float(spacing)
    pred, gt = _crop_to_union(pred, gt)
    yp, yt = pred[None, None], gt[None, None]
    with warnings.catch_warnings():  # MONAI 1.5+ passes its own deprecated `always_return_as_numpy` internally
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        if kind == "hd95":
            return compute_hausdorff_distance(yp, yt, include_background=True, percentile=95.0, spacing=sp)[0, 0]
        return compute_average_surface_distance(yp, yt, include_background=True, symmetric=True, spacing=sp)[0, 0]


def _distance_update(
    probs: Tensor, target: Tensor, kind: str, include_background: bool, spacing: Spacing, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Float64 HD95 (``kind="hd95"``) or ASSD ``(N, C')``, NaN where a mask is empty; bool target/pred-empty flags."""
    pred, gt, c = _hard_labels(probs, target, None, ignore_index)
    target_empty, pred_empty = _confusion_stats(pred, gt, c, include_background).empty_flags()
    values = torch.full(pred_empty.shape, math.nan, dtype=torch.float64, device=probs.device)
    shape, start = probs.shape[2:], 0 if include_background else 1
    if c < 255:  # labels 0..C (C = dropped voxel): comparisons of uint8 maps are several times faster
        pred, gt = pred.to(torch.uint8), gt.to(torch.uint8)
    for i, j in (~pred_empty & ~target_empty).nonzero().tolist():
        yp, yt = (pred[i] == j + start).view(shape), (gt[i] == j + start).view(shape)
        values[i, j] = _surface_distance(yp, yt, kind, spacing).double()
    return values, target_empty, pred_empty


def _case_states(values: Tensor, flags: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """Per-class state increments ``(C',)`` from per-case values ``(N, C')`` and (reference, prediction) empty flags.

    ``total``: float64 sum of the non-NaN values; ``count``: int64 number of those; with ``flags`` also the int64
    numbers of cases with both masks empty, only the reference empty, only the prediction empty.
    """
    valid = ~values.isnan()
    out = {"total": torch.where(valid, values, 0.0).sum(0), "count": valid.sum(0)}
    if flags is not None:
        target_empty, pred_empty = flags
        out["n_empty_both"] = (target_empty & pred_empty).sum(0)
        out["n_empty_target_only"] = (target_empty & ~pred_empty).sum(0)
        out["n_empty_pred_only"] = (pred_empty & ~target_empty).sum(0)
    return out


def _case_mean_compute(total: Tensor, count: Tensor) -> Tensor:
    """Per-class mean over the counted cases, ``total / count`` (NaN for a class without any)."""
    return total / count


def dice_score(
    probs: Tensor,
    target: Tensor,
    *,
    num_classes: int | None = None,
    include_background: bool = False,
    empty: Empty = "one",
    ignore_index: int | None = None,
    mask: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Dice score of the argmax prediction against a label map, per case and class.

    .. math:: \mathrm{Dice}_{nc} = \frac{2\,|P_{nc} \cap G_{nc}|}{|P_{nc}| + |G_{nc}|}

    with :math:`P_{nc}` the kept voxels of case ``n`` whose argmax is class ``c`` and :math:`G_{nc}` those labelled
    ``c``. Both empty → 1 (``empty="one"``) or NaN (``empty="nan"``); exactly one empty → 0.

    Args:
        probs: ``(N, C, *spatial)`` probabilities (``C == 1``: foreground probability).
        target: ``(N, *spatial)`` integer labels. A soft target raises; use :func:`soft_dice_score`.
        num_classes: if given, must equal ``C``.
        include_background: keep class 0.
        empty: value when both masks are empty, ``"one"`` or ``"nan"``.
        ignore_index: label whose voxels are dropped.
        mask: ``(N, *spatial)`` bool voxel selection.
        validate_args: check input values.

    Returns:
        Float64 ``(N, C')`` (NaN for a case without voxels).

    Raises:
        ValueError: bad option, bad shapes or values, or a soft target.
        TypeError: wrong types or dtypes.

    Example:
        >>> dice_score(torch.tensor([[[[0.9, 0.3, 0.2, 0.4]], [[0.1, 0.7, 0.8, 0.6]]]]), torch.tensor([[[0, 1, 1, 0]]]))
        tensor([[0.8000]], dtype=torch.float64)
    """
    where = "dice_score"
    _segmentation_arg_validation(where, include_background, num_classes, empty, ignore_index)
    _segmentation_tensor_validation(probs, target, mask, ignore_index, where, validate_args, "overlap", num_classes)
    stats = _overlap_update(probs, target, include_background=include_background, mask=mask, ignore_index=ignore_index)
    return nan_without_voxels(_overlap_compute(stats, kind="dice", empty=empty), probs)


def iou_score(
    probs: Tensor,
    target: Tensor,
    *,
    num_classes: int | None = None,
    include_background: bool = False,
    empty: Empty = "one",
    ignore_index: int | None = None,
    mask: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Intersection over union (Jaccard) of the argmax prediction against a label map, per case and class.

    .. math:: \mathrm{IoU}_{nc} = \frac{|P_{nc} \cap G_{nc}|}{|P_{nc} \cup G_{nc}|}

    Args:
        probs: ``(N, C, *spatial)`` probabilities (``C == 1``: foreground probability).
        target: ``(N, *spatial)`` integer labels.
        num_classes: if given, must equal ``C``.
        include_background: keep class 0.
        empty: value when both masks are empty, ``"one"`` or ``"nan"``.
        ignore_index: label whose voxels are dropped.
        mask: ``(N, *spatial)`` bool voxel selection.
        validate_args: check input values.

    Returns:
        Float64 ``(N, C')`` (NaN for a case without voxels).

    Raises:
        ValueError: bad option, bad shapes or values, or a soft target.
        TypeError: wrong types or dtypes.

    Example:
        >>> iou_score(torch.tensor([[[[0.9, 0.3, 0.2, 0.4]], [[0.1, 0.7, 0.8, 0.6]]]]), torch.tensor([[[0, 1, 1, 0]]]))
        tensor([[0.6667]], dtype=torch.float64)
    """
    where = "iou_score"
    _segmentation_arg_validation(where, include_background, num_classes, empty, ignore_index)
    _segmentation_tensor_validation(probs, target, mask, ignore_index, where, validate_args, "overlap", num_classes)
    stats = _overlap_update(probs, target, include_background=include_background, mask=mask, ignore_index=ignore_index)
    return nan_without_voxels(_overlap_compute(stats, kind="iou", empty=empty), probs)


def soft_dice_score(
    probs: Tensor,
    target: Tensor,
    *,
    include_background: bool = False,
    mask: Tensor | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Soft Dice against a soft (or hard) reference in the Dice-semimetric form, per case and class.

    .. math:: tp = \tfrac12\Big(\sum x + \sum y - \sum |x - y|\Big), \qquad
              \mathrm{sDice} = \frac{2\,tp}{\sum x + \sum y}

    over the kept voxels of a case, :math:`x = p_c`, :math:`y = q_c`: 1 iff :math:`p = q`, the classic Dice for binary
    inputs, not maximised by over-confidence. Hard targets are one-hot encoded; both empty → 1.

    Args:
        probs: ``(N, C, *spatial)`` probabilities (``C == 1``: foreground probability).
        target: ``(N, C, *spatial)`` soft target or ``(N, *spatial)`` integer labels.
        include_background: keep class 0.
        mask: ``(N, *spatial)`` bool voxel selection.
        validate_args: check input values.

    Returns:
        Float64 ``(N, C')`` (NaN for a case without voxels).

    Raises:
        ValueError: bad option, bad shapes or values.
        TypeError: wrong types or dtypes.

    Example:
        >>> soft_dice_score(torch.tensor([[[0.8, 0.2]]]), torch.tensor([[[0.6, 0.0]]]))
        tensor([[0.7500]], dtype=torch.float64)

    Reference:
        Wang, Blaschko et al. Dice Semimetric Losses: Optimizing the Dice Score with Soft Labels. MICCAI 2023.
    """
    where = "soft_dice_score"
    _segmentation_arg_validation(where, include_background)
    _segmentation_tensor_validation(probs, target, mask, None, where, validate_args, "soft")
    stats = _soft_dice_update(probs, target, include_background=include_background, mask=mask)
    return nan_without_voxels(_overlap_compute(stats, kind="dice"), probs)


def hausdorff_distance_95(
    probs: Tensor,
    target: Tensor,
    *,
    include_background: bool = False,
    spacing: Spacing = None,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""95th-percentile symmetric Hausdorff distance (HD95) between argmax and reference surfaces, in physical units.

    .. math:: \mathrm{HD95} = \max\big(P_{95}\{d(a, \partial G)\}_{a \in \partial P},\;
              P_{95}\{d(b, \partial P)\}_{b \in \partial G}\big)

    Surface :math:`\partial`: mask voxels with a face neighbour outside the mask or on the image border; :math:`d`:
    Euclidean distance scaled by ``spacing``; linear percentiles (MONAI ``compute_hausdorff_distance``). Voxels
    labelled ``ignore_index`` are in no class. Either mask empty → NaN.

    Args:
        probs: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` probabilities (``C == 1``: foreground probability).
        target: ``(N, *spatial)`` integer labels.
        include_background: keep class 0.
        spacing: voxel size, one number or one per spatial dim (e.g. mm); ``None`` = 1.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values.

    Returns:
        Float64 ``(N, C')`` (NaN for a case without voxels).

    Raises:
        ValueError: bad option, bad shapes or values, or a soft target.
        TypeError: wrong types or dtypes.

    Example:
        >>> target = torch.tensor([[[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0]]])  # a 2x2 square
        >>> probs = target.roll(2, dims=2).unsqueeze(1).float()  # predicted 2 columns to the right
        >>> hausdorff_distance_95(probs, target, spacing=(1.0, 0.5))
        tensor([[1.]], dtype=torch.float64)
    """
    where = "hausdorff_distance_95"
    _segmentation_arg_validation(where, include_background, None, None, ignore_index, spacing)
    _segmentation_tensor_validation(probs, target, None, ignore_index, where, validate_args, "distance", None, spacing)
    return _distance_update(probs, target, "hd95", include_background, spacing, ignore_index)[0]


def average_surface_distance(
    probs: Tensor,
    target: Tensor,
    *,
    include_background: bool = False,
    spacing: Spacing = None,
    ignore_index: int | None = None,
    validate_args: bool = True,
) -> Tensor:
    r"""Average symmetric surface distance (ASSD) between argmax and reference surfaces, in physical units.

    .. math:: \mathrm{ASSD} = \frac{\sum_{a \in \partial P} d(a, \partial G) + \sum_{b \in \partial G} d(b, \partial P)}
              {|\partial P| + |\partial G|}

    Surfaces and distances as in :func:`hausdorff_distance_95` (MONAI ``compute_average_surface_distance``).

    Args:
        probs: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` probabilities (``C == 1``: foreground probability).
        target: ``(N, *spatial)`` integer labels.
        include_background: keep class 0.
        spacing: voxel size, one number or one per spatial dim (e.g. mm); ``None`` = 1.
        ignore_index: label whose voxels are dropped.
        validate_args: check input values.

    Returns:
        Float64 ``(N, C')`` (NaN for a case without voxels).

    Raises:
        ValueError: bad option, bad shapes or values, or a soft target.
        TypeError: wrong types or dtypes.

    Example:
        >>> target = torch.tensor([[[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0]]])  # a 2x2 square
        >>> probs = target.roll(2, dims=2).unsqueeze(1).float()  # predicted 2 columns to the right
        >>> average_surface_distance(probs, target, spacing=(1.0, 0.5))
        tensor([[0.7500]], dtype=torch.float64)
    """
    where = "average_surface_distance"
    _segmentation_arg_validation(where, include_background, None, None, ignore_index, spacing)
    _segmentation_tensor_validation(probs, target, None, ignore_index, where, validate_args, "distance", None, spacing)
    return _distance_update(probs, target, "assd", include_background, spacing, ignore_index)[0]
