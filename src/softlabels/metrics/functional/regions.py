"""Voxel masks for region-restricted metrics: the foreground and the band around class boundaries (2D and 3D).

Pass the result as ``mask=`` to any calibration or scoring metric, e.g. the boundary-band ECE, where soft-label
methods are expected to differ most, or the foreground ECE (``fg_gt`` voxel set of SVLS, MbLS and NACL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.transforms.utils import distance_transform_edt
from torch import Tensor

from softlabels._ops import argmax


def _as_label_map(target: Tensor, where: str) -> Tensor:
    """Hard labels ``(N, *spatial)`` from integer labels, or the argmax of a soft target ``(N, C, *spatial)``."""
    if not isinstance(target, Tensor):
        raise TypeError(f"`target` of {where} must be a torch.Tensor; got {type(target)}.")
    if target.is_floating_point():
        if target.ndim < 3:
            shape = tuple(target.shape)
            raise ValueError(
                f"a floating `target` of {where} must be a soft target (N, C, *spatial); got shape {shape}."
            )
        return argmax(target, 1) if target.shape[1] > 1 else (target[:, 0] > 0.5).long()
    if target.ndim < 2:
        raise ValueError(f"`target` of {where} must be a label map (N, *spatial); got shape {tuple(target.shape)}.")
    return target


def foreground_mask(target: Tensor, *, background: int = 0) -> Tensor:
    """Voxels whose reference label is not background (the ``fg_gt`` voxel set).

    Args:
        target: ``(N, *spatial)`` integer labels, or a soft target ``(N, C, *spatial)`` (its argmax is used; a
            single channel is thresholded at 0.5).
        background: the background label.

    Returns:
        Bool ``(N, *spatial)``.

    Example:
        >>> foreground_mask(torch.tensor([[0, 1, 2, 0]])).tolist()
        [[False, True, True, False]]
    """
    return _as_label_map(target, "foreground_mask") != background


def boundary_band(
    target: Tensor,
    *,
    width: float = 2.0,
    spacing: Sequence[float] | None = None,
) -> Tensor:
    r"""Voxels within ``width`` of a boundary between two labels (both sides), by Euclidean distance transform.

    .. math:: \mathrm{band} = \{x : \min_{x': y(x') \ne y(x)} \lVert x - x' \rVert \le w\}

    A voxel touching a voxel of another label (face-adjacent) is at distance 1, so ``width=1`` is the one-voxel rim
    on each side of every boundary. The image border is not a boundary. Works for 2D ``(N, H, W)`` and 3D
    ``(N, D, H, W)`` label maps; the distance transform is MONAI's (SciPy on CPU, cuCIM on GPU).

    The transforms run on the crop of each case around its label changes only (their bounding box, enlarged by
    ``m = ⌈w / min(spacing)⌉ + 1`` voxels): a band voxel ``x`` and its nearest voxel ``x'`` of another label are at
    most ``w / min(spacing)`` voxels apart per axis, and a face-adjacent label change lies in the box they span, so
    both lie in the crop and the cropped distance equals the full one; outside the crop every voxel is farther than
    ``w`` from any other label. The result is identical to the transform of the whole volume, at the cost of the
    structures' extent rather than the volume's.

    Args:
        target: ``(N, *spatial)`` integer labels, or a soft target ``(N, C, *spatial)`` (argmax).
        width: band half-width, in voxels, or in physical units when ``spacing`` is given.
        spacing: voxel size per spatial dimension (e.g. mm); ``None`` = 1 voxel.

    Returns:
        Bool ``(N, *spatial)`` on the input's device.

    Raises:
        ValueError: ``width`` not positive, or ``spacing`` of the wrong length.

    Example:
        >>> labels = torch.tensor([[[0, 0, 1, 1, 1, 1]]])
        >>> boundary_band(labels, width=1).long().tolist()
        [[[0, 1, 1, 0, 0, 0]]]
    """
    labels = _as_label_map(target, "boundary_band")
    if isinstance(width, bool) or not isinstance(width, float | int) or not width > 0:
        raise ValueError(f"`width` of boundary_band must be a positive number; got {width!r}.")
    spatial = labels.ndim - 1
    if spacing is not None and len(spacing) != spatial:
        raise ValueError(f"`spacing` of boundary_band must have {spatial} values; got {list(spacing)}.")
    band = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    margin = math.ceil(width / (min(spacing) if spacing is not None else 1.0)) + 1
    for n in range(labels.shape[0]):
        box = _change_box(labels[n], margin)
        if box is None:  # one label only: no boundary
            continue
        crop = labels[n][box]
        for value in torch.unique(crop).tolist():
            inside = crop == value
            if bool(inside.all()):
                continue
            dist = distance_transform_edt(
                inside.unsqueeze(0).float(), sampling=None if spacing is None else list(spacing)
            )
            band[n][box] |= inside & (torch.as_tensor(dist, device=labels.device)[0] <= width)
    return band


def _change_box(labels: Tensor, margin: int) -> tuple[slice, ...] | None:
    """Bounding box of the voxels with a face neighbour of another label, enlarged by ``margin`` (``None``: none)."""
    changed = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    for axis in range(labels.ndim):
        size = labels.shape[axis]
        differs = labels.narrow(axis, 1, size - 1) != labels.narrow(axis, 0, size - 1)
        changed.narrow(axis, 1, size - 1).logical_or_(differs)
        changed.narrow(axis, 0, size - 1).logical_or_(differs)
    box = []
    for axis in range(labels.ndim):
        others = [d for d in range(labels.ndim) if d != axis]
        hits = changed.any(dim=others).nonzero() if others else changed.nonzero()
        if hits.numel() == 0:
            return None
        start, stop = int(hits.min()) - margin, int(hits.max()) + 1 + margin
        box.append(slice(max(start, 0), min(stop, labels.shape[axis])))
    return tuple(box)
