"""Checks of the arguments every soft-label target takes: hard labels, ``num_classes``, ``ignore_index``, fractions.

Used by every ``softlabels.targets`` module, by the losses that take a fraction (``alpha``, ``label_smoothing``) and
by the method registry (``softlabels.methods``), so one option is refused with one message wherever it enters. Each
check names the argument and the function (``where``), says what is allowed and quotes what came in; it returns the
value it checked, so a caller can write ``epsilon = _check_fraction("epsilon", epsilon, where)``.

The names keep their leading underscore: these are the package's own helpers, not part of the public surface.

Example:
    >>> import torch
    >>> _check_num_classes(3, "label_smoothing")
    3
    >>> _check_fraction("epsilon", 1, "label_smoothing")
    1.0
    >>> _check_labels(torch.tensor([[[0, 2]]]), 3, "svls").tolist()
    [[[0, 2]]]
    >>> _check_ignore_index(255, 3, "label_smoothing")
    255
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__: list[str] = []  # private helpers only (see the module docstring)


def _check_num_classes(num_classes: object, where: str, minimum: int = 1) -> int:
    """``num_classes`` as an int ``>= minimum`` (a bool is not an int here).

    Raises:
        TypeError: not an int.
        ValueError: below ``minimum``.

    Example:
        >>> _check_num_classes(1, "fuse_raters", 2)
        Traceback (most recent call last):
            ...
        ValueError: `num_classes` of fuse_raters must be an int >= 2; got 1.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"`num_classes` of {where} must be an int; got {type(num_classes).__name__} {num_classes!r}.")
    if num_classes < minimum:
        raise ValueError(f"`num_classes` of {where} must be an int >= {minimum}; got {num_classes!r}.")
    return num_classes


def _check_fraction(name: str, value: object, where: str, *, closed_right: bool = True) -> float:
    """``value`` (the argument ``name``) as a float in ``[0, 1]`` (``[0, 1)`` with ``closed_right=False``).

    Raises:
        TypeError: not a real number (a bool is refused).
        ValueError: NaN, infinite or outside the interval.

    Example:
        >>> _check_fraction("alpha", 1.0, "DistillationLoss", closed_right=False)
        Traceback (most recent call last):
            ...
        ValueError: `alpha` of DistillationLoss must be a float in [0, 1); got 1.0.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` of {where} must be a float; got {type(value).__name__} {value!r}.")
    upper_ok = value <= 1 if closed_right else value < 1
    if not (math.isfinite(value) and value >= 0 and upper_ok):
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"`{name}` of {where} must be a float in {interval}; got {value!r}.")
    return float(value)


def _check_labels(
    labels: object,
    num_classes: int,
    where: str,
    *,
    spatial: bool = True,
    ignore_index: int | None = None,
    name: str = "labels",
) -> Tensor:
    """Check a hard label map: an integer tensor ``(N, *spatial)`` with values in ``[0, C)`` or ``ignore_index``.

    ``spatial=True`` asks for 2D or 3D maps ``(N, H, W)`` / ``(N, D, H, W)``; ``spatial=False`` accepts any
    ``(N, *spatial)``, classification's ``(N,)`` included. One ``aminmax`` pass decides; the voxel that is out of
    range is looked for only when there is one. ``name`` is how the message calls the tensor.

    Raises:
        TypeError: not a tensor, or not of an integer dtype.
        ValueError: the wrong number of axes, or a value outside ``[0, C)`` that is not ``ignore_index``.

    Example:
        >>> import torch
        >>> _check_labels(torch.tensor([0, 255, 1]), 2, "make_target", spatial=False, ignore_index=255).tolist()
        [0, 255, 1]
        >>> _check_labels(torch.tensor([[[0, 3]]]), 3, "svls")
        Traceback (most recent call last):
            ...
        ValueError: `labels` of svls must hold class indices in [0, 3); got 3.
    """
    if not isinstance(labels, Tensor):
        raise TypeError(f"`{name}` of {where} must be a torch.Tensor; got {type(labels).__name__}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"`{name}` of {where} must have an integer dtype; got {labels.dtype}.")
    if spatial and labels.ndim not in (3, 4):
        raise ValueError(f"`{name}` of {where} must have shape (N, H, W) or (N, D, H, W); got {tuple(labels.shape)}.")
    if not spatial and labels.ndim < 1:
        raise ValueError(f"`{name}` of {where} must have shape (N, *spatial); got a 0-d tensor.")
    if not labels.numel():
        return labels
    lo, hi = torch.aminmax(labels)  # one pass; the per-voxel test below only when something is out of range
    if int(lo) >= 0 and int(hi) < num_classes:
        return labels
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid |= labels == ignore_index
    if not bool(valid.all()):
        bad = labels[~valid][0].item()
        allowed = f"[0, {num_classes})" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
        raise ValueError(f"`{name}` of {where} must hold class indices in {allowed}; got {bad}.")
    return labels


def _check_ignore_index(ignore_index: object, num_classes: int, where: str) -> int | None:
    """``ignore_index`` as ``None`` or an int that is not a class index in ``[0, C)``.

    Raises:
        TypeError: neither an int nor ``None``.
        ValueError: a class index.

    Example:
        >>> _check_ignore_index(1, 3, "label_smoothing")
        Traceback (most recent call last):
            ...
        ValueError: `ignore_index` of label_smoothing must not be a class index in [0, 3); got 1.
    """
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"`ignore_index` of {where} must be an int or None; got {type(ignore_index).__name__}.")
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"`ignore_index` of {where} must not be a class index in [0, {num_classes}); got {ignore_index}."
        )
    return ignore_index
