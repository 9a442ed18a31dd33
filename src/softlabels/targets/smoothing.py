"""Label smoothing targets: uniform (Szegedy) and "others" forms, and boundary-only label smoothing.

Also holds the one-hot and batching helpers shared by the other ``softlabels.targets`` modules (the argument checks
are in :mod:`softlabels.targets.label_checks`).
Hard label maps are ``(N, *spatial)`` integer tensors, soft targets ``(N, C, *spatial)`` float tensors
(docs/methods.md §0.1, §1.2).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Literal

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.targets._filters import window_extremes
from softlabels.targets.label_checks import _check_fraction, _check_ignore_index, _check_labels, _check_num_classes

__all__ = ["BoundaryLabelSmoothingd", "LabelSmoothingd", "boundary_label_smoothing", "label_smoothing"]

Convention = Literal["uniform", "others"]


def _one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype | None = None) -> Tensor:
    """One-hot ``(N, *spatial)`` → contiguous ``(N, C, *spatial)`` float; labels outside ``[0, C)`` give zero rows.

    Built with one ``scatter_`` into a zero tensor (several times faster than ``F.one_hot`` + ``movedim``, whose
    channels-last result also slows every later op).
    """
    dtype = dtype or torch.get_default_dtype()
    out = torch.zeros((labels.shape[0], num_classes, *labels.shape[1:]), dtype=dtype, device=labels.device)
    index = labels.unsqueeze(1).long()
    if not index.numel():
        return out
    lo, hi = torch.aminmax(index)
    if int(lo) >= 0 and int(hi) < num_classes:
        return out.scatter_(1, index, 1.0)
    valid = (index >= 0) & (index < num_classes)
    return out.scatter_(1, index.clamp(0, num_classes - 1), valid.to(dtype))


def label_smoothing(
    labels: Tensor,
    num_classes: int,
    *,
    epsilon: float = 0.1,
    convention: Convention = "uniform",
    ignore_index: int | None = None,
) -> Tensor:
    """Label-smoothed soft target, applied independently at every voxel.

    ``convention="uniform"`` (Szegedy form): ``q = (1 − ε)·onehot(y) + ε/C``; the true class gets ``1 − ε + ε/C``.
    ``convention="others"`` (Tf-KD repository form): ``q_y = 1 − ε`` and ``q_c = ε/(C − 1)`` for every ``c ≠ y``.
    The two ``ε`` mean different things; name the convention in results (docs/methods.md §1.2).

    Voxels equal to ``ignore_index`` get an all-zero target (no class), so a soft cross-entropy sums nothing
    there; mask them with ``labels != ignore_index`` when averaging.

    Args:
        labels: hard labels ``(N, *spatial)`` (``(N,)`` for classification works too), integer dtype.
        num_classes: number of classes ``C`` (>= 2 for ``"others"``).
        epsilon: smoothing mass ``ε`` in ``[0, 1]``.
        convention: ``"uniform"`` or ``"others"``.
        ignore_index: label value to leave out (must not be in ``[0, C)``), or ``None``.

    Returns:
        Soft target ``(N, C, *spatial)`` in the default float dtype, on ``labels``' device.

    Raises:
        TypeError: ``labels`` is not an integer tensor, or an option has the wrong type.
        ValueError: a label is outside ``[0, C)``, ``ε`` is outside ``[0, 1]``, or an option is unknown.

    Reference:
        Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016;
        Yuan et al., "Revisiting Knowledge Distillation via Label Smoothing Regularization", CVPR 2020.

    Example:
        >>> label_smoothing(torch.tensor([0, 2]), 3, epsilon=0.3)
        tensor([[0.8000, 0.1000, 0.1000],
                [0.1000, 0.1000, 0.8000]])
        >>> label_smoothing(torch.tensor([1]), 3, epsilon=0.2, convention="others")
        tensor([[0.1000, 0.8000, 0.1000]])
    """
    where = "label_smoothing"
    convention = look_up_option("convention", convention, ("uniform", "others"), where=where)  # type: ignore[assignment]
    num_classes = _check_num_classes(num_classes, where, 2 if convention == "others" else 1)
    epsilon = _check_fraction("epsilon", epsilon, where)
    ignore_index = _check_ignore_index(ignore_index, num_classes, where)
    labels = _check_labels(labels, num_classes, where, spatial=False, ignore_index=ignore_index)
    off = epsilon / num_classes if convention == "uniform" else epsilon / (num_classes - 1)
    scale = 1.0 - epsilon if convention == "uniform" else 1.0 - epsilon - off
    target = _one_hot(labels, num_classes).mul_(scale).add_(off)
    if ignore_index is not None:
        target.mul_((labels != ignore_index).unsqueeze(1).to(target.dtype))
    return target


def boundary_label_smoothing(
    labels: Tensor,
    num_classes: int,
    *,
    epsilon: float = 0.1,
    width: int = 1,
    ignore_index: int | None = None,
) -> Tensor:
    """Label smoothing on class boundaries only; interior voxels stay one-hot.

    A voxel is a *boundary* voxel when its ``(2·width + 1)``-wide neighbourhood (square in 2D, cube in 3D; the
    image border adds no neighbours) holds a class other than its own, found with a max-pool of the one-hot map.
    Boundary voxels get ``q = (1 − ε)·onehot(y) + ε/C``, all others ``q = onehot(y)``. Voxels next to
    ``ignore_index`` are not boundary voxels; ignored voxels themselves get an all-zero target (docs/methods.md §1.2).

    Args:
        labels: hard labels ``(N, H, W)`` or ``(N, D, H, W)``, integer dtype.
        num_classes: number of classes ``C``.
        epsilon: smoothing mass ``ε`` in ``[0, 1]`` (JDTLosses uses 0.5).
        width: neighbourhood half-width, int >= 1 (``width=1`` is the 3×3(×3) window).
        ignore_index: label value to leave out (must not be in ``[0, C)``), or ``None``.

    Returns:
        Soft target ``(N, C, *spatial)`` in the default float dtype, on ``labels``' device.

    Raises:
        TypeError: ``labels`` is not an integer tensor, or an option has the wrong type.
        ValueError: bad shape, a label outside ``[0, C)``, ``ε`` outside ``[0, 1]`` or ``width < 1``.

    Reference:
        Wang & Blaschko et al., "Dice Semimetric Losses", MICCAI 2023 (JDTLosses ``train_soft_label.py``).

    Example:
        >>> q = boundary_label_smoothing(torch.tensor([[[0, 0, 0, 1]]]), 2, epsilon=0.5)
        >>> q[0, 1]
        tensor([[0.0000, 0.0000, 0.2500, 0.7500]])
    """
    where = "boundary_label_smoothing"
    num_classes = _check_num_classes(num_classes, where)
    epsilon = _check_fraction("epsilon", epsilon, where)
    if isinstance(width, bool) or not isinstance(width, int):
        raise TypeError(f"`width` of {where} must be an int; got {type(width).__name__} {width!r}.")
    if width < 1:
        raise ValueError(f"`width` of {where} must be an int >= 1; got {width!r}.")
    ignore_index = _check_ignore_index(ignore_index, num_classes, where)
    labels = _check_labels(labels, num_classes, where, ignore_index=ignore_index)
    onehot = _one_hot(labels, num_classes)  # ignored voxels: zero rows
    # a boundary voxel's window holds another value (window min != max of the label map); windows that touch an
    # ignored voxel are excluded next, so ignored values may take part in the min/max
    lo, hi = window_extremes(labels, width)
    boundary = lo != hi
    if ignore_index is not None:
        near_ignored = window_extremes((labels == ignore_index).to(torch.uint8), width)[1] > 0
        boundary &= ~near_ignored
    mass = boundary.unsqueeze(1).to(onehot.dtype) * epsilon
    return onehot.mul_(1.0 - mass).add_(mass / num_classes)


def _as_batch(value: Tensor, has_channel: bool, where: str, key: Hashable) -> Tensor:
    """A per-sample map ``(1, *spatial)`` (``has_channel``) or ``(*spatial)`` as a batch ``(1, *spatial)``."""
    if not has_channel:
        return value.unsqueeze(0)
    if value.ndim < 1 or value.shape[0] != 1:
        raise ValueError(
            f"`data[{key!r}]` of {where} must be channel-first (1, *spatial) when has_channel=True; "
            f"got shape {tuple(value.shape)}."
        )
    return value


class LabelSmoothingd(MapTransform):
    """MONAI dictionary wrapper of :func:`label_smoothing` for one sample.

    Each ``data[key]`` is a per-sample label map, channel-first ``(1, *spatial)`` as MONAI gives it
    (``has_channel=True``) or ``(*spatial)`` (``has_channel=False``). It is replaced by the soft target
    ``(C, *spatial)``, the sample's channel-first form of ``q = (1 − ε)·onehot(y) + ε/C`` (or the "others" form).

    Args:
        keys: keys of the label maps to transform.
        num_classes: number of classes ``C``.
        epsilon: smoothing mass ``ε``.
        convention: ``"uniform"`` or ``"others"``.
        ignore_index: label value to leave out, or ``None``.
        has_channel: whether each map carries a leading channel of size 1.
        allow_missing_keys: skip keys absent from the dictionary.

    Example:
        >>> out = LabelSmoothingd("label", num_classes=2, epsilon=0.2)({"label": torch.tensor([[[0, 1]]])})
        >>> out["label"]
        tensor([[[0.9000, 0.1000]],
        <BLANKLINE>
                [[0.1000, 0.9000]]])
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        *,
        epsilon: float = 0.1,
        convention: Convention = "uniform",
        ignore_index: int | None = None,
        has_channel: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = num_classes
        self.epsilon = epsilon
        self.convention: Convention = convention
        self.ignore_index = ignore_index
        self.has_channel = has_channel

    def __call__(self, data: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Replace every selected label map by its smoothed ``(C, *spatial)`` target."""
        d = dict(data)
        for key in self.key_iterator(d):
            batch = _as_batch(d[key], self.has_channel, "LabelSmoothingd", key)
            d[key] = label_smoothing(
                batch,
                self.num_classes,
                epsilon=self.epsilon,
                convention=self.convention,
                ignore_index=self.ignore_index,
            )[0]
        return d


class BoundaryLabelSmoothingd(MapTransform):
    """MONAI dictionary wrapper of :func:`boundary_label_smoothing` for one sample.

    Each ``data[key]`` is a per-sample label map, channel-first ``(1, *spatial)`` (``has_channel=True``) or
    ``(*spatial)``, 2D or 3D. It is replaced by the soft target ``(C, *spatial)``: ``(1 − ε)·onehot(y) + ε/C`` on
    boundary voxels, ``onehot(y)`` elsewhere.

    Args:
        keys: keys of the label maps to transform.
        num_classes: number of classes ``C``.
        epsilon: smoothing mass ``ε`` on boundary voxels.
        width: neighbourhood half-width.
        ignore_index: label value to leave out, or ``None``.
        has_channel: whether each map carries a leading channel of size 1.
        allow_missing_keys: skip keys absent from the dictionary.

    Example:
        >>> out = BoundaryLabelSmoothingd("label", num_classes=2, epsilon=0.5)({"label": torch.tensor([[[0, 0, 1]]])})
        >>> out["label"][1]
        tensor([[0.0000, 0.2500, 0.7500]])
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        *,
        epsilon: float = 0.1,
        width: int = 1,
        ignore_index: int | None = None,
        has_channel: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = num_classes
        self.epsilon = epsilon
        self.width = width
        self.ignore_index = ignore_index
        self.has_channel = has_channel

    def __call__(self, data: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Replace every selected label map by its boundary-smoothed ``(C, *spatial)`` target."""
        d = dict(data)
        for key in self.key_iterator(d):
            batch = _as_batch(d[key], self.has_channel, "BoundaryLabelSmoothingd", key)
            d[key] = boundary_label_smoothing(
                batch, self.num_classes, epsilon=self.epsilon, width=self.width, ignore_index=self.ignore_index
            )[0]
        return d
