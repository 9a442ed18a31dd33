"""Voxel masks for region-restricted metrics: the foreground and the band around class boundaries (2D and 3D).

Pass the result as ``mask=`` to any calibration or scoring metric, e.g. the boundary-band ECE, where soft-label
methods are expected to differ most, or the foreground ECE (``fg_gt`` voxel set of SVLS, MbLS and NACL).
"""

from __future__ import annotations

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
    for n in range(labels.shape[0]):
        for value in torch.unique(labels[n]).tolist():
            inside = labels[n] == value
            if bool(inside.all()):
                continue
            dist = distance_transform_edt(
                inside.unsqueeze(0).float(), sampling=None if spacing is None else list(spacing)
            )
            band[n] |= inside & (torch.as_tensor(dist, device=labels.device)[0] <= width)
    return band
