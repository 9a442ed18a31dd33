"""What a method's loss is called with (:class:`TrainingTarget`) and the batch adapters several method families share.

An adapter is a small picklable callable (it crosses DDP spawn and DataLoader workers) that reads the batch keys
documented in :mod:`softlabels.methods` and returns a :class:`TrainingTarget`. The adapters of one family live beside
its registry entries (``methods/smoothing.py``, ``methods/spatial.py``, ...); this module holds the ones used by
several families (:class:`LabelTarget`, :class:`GivenSoftTarget`) and the batch readers they all use. Soft targets of
ignored voxels are filled with the uniform distribution (so they remain valid distributions) and dropped through
``keep_mask``.

Every adapter checks its options when it is made (``__post_init__``), with the checks of the target function it
calls (a dry run on one voxel where they are inline), so ``create_method`` refuses a bad option at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from softlabels._checks import check_distribution
from softlabels.targets.label_checks import _check_ignore_index, _check_labels, _check_num_classes

__all__ = ["GivenSoftTarget", "LabelTarget", "TrainingTarget", "hard_labels", "rater_stack"]

_ONE_LABEL = (1, 1, 1)  # the (N, H, W) shape of the dry runs


def _dry_run() -> dict[str, Tensor]:
    """A one-voxel batch of class 0 that an adapter's ``__call__`` turns into a target: its options get checked."""
    return {"label": torch.zeros(_ONE_LABEL, dtype=torch.long)}


@dataclass(frozen=True)
class TrainingTarget:
    """What a loss is called with: the target and, optionally, voxel weights, a keep mask and a teacher.

    ``target`` is hard ``(N, *spatial)`` integer or soft ``(N, C, *spatial)``; ``weight`` float and ``keep_mask``
    bool are ``(N, *spatial)``; ``teacher`` is a distribution ``(N, C, *spatial)`` (distillation methods).

    Example:
        >>> TrainingTarget(torch.tensor([1, 0])).weight is None
        True
    """

    target: Tensor
    weight: Tensor | None = None
    keep_mask: Tensor | None = None
    teacher: Tensor | None = None


def _tensor(batch: Mapping[str, Any], key: str) -> Tensor:
    value = batch[key]
    if not isinstance(value, Tensor):
        raise TypeError(f"`batch[{key!r}]` must be a torch.Tensor; got {type(value).__name__}.")
    return value


def hard_labels(batch: Mapping[str, Any]) -> Tensor:
    """``batch["label"]`` as ``(N, *spatial)``: a channel axis of size 1 is dropped when the image has as many axes.

    Example:
        >>> batch = {"image": torch.zeros(2, 1, 4, 4), "label": torch.zeros(2, 1, 4, 4, dtype=torch.long)}
        >>> tuple(hard_labels(batch).shape)
        (2, 4, 4)
    """
    labels = _tensor(batch, "label")
    image = batch.get("image")
    if isinstance(image, Tensor) and labels.ndim == image.ndim and labels.ndim > 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    return labels


def _voxel_map(batch: Mapping[str, Any], key: str, like: Tensor) -> Tensor:
    """``batch[key]`` as ``(N, *spatial)`` like the labels ``like`` (a channel axis of size 1 is dropped)."""
    value = _tensor(batch, key)
    if value.ndim == like.ndim + 1 and value.shape[1] == 1:
        value = value[:, 0]
    return value


def rater_stack(batch: Mapping[str, Any]) -> Tensor:
    """``batch["raters"] (N, R, *spatial)`` as ``(R, N, *spatial)``, the layout of ``fuse_raters``.

    Example:
        >>> tuple(rater_stack({"raters": torch.zeros(2, 3, 4, 4, dtype=torch.long)}).shape)
        (3, 2, 4, 4)
    """
    raters = _tensor(batch, "raters")
    if raters.ndim < 2:
        raise ValueError(f"`batch['raters']` must be (N, R, *spatial) or (N, R); got shape {tuple(raters.shape)}.")
    return raters.movedim(1, 0)


def _fill_ignored(target: Tensor, labels: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """Uniform rows at ignored voxels (still a distribution) and the keep mask that drops them."""
    if ignore_index is None:
        return target, None
    ignored = labels == ignore_index
    if not bool(ignored.any()):
        return target, None
    uniform = torch.full_like(target, 1.0 / target.shape[1])
    return torch.where(ignored.unsqueeze(1), uniform, target), ~ignored


@dataclass(frozen=True)
class LabelTarget:
    """The hard label itself, checked to hold classes in ``[0, C)`` (or ``ignore_index``).

    Example:
        >>> LabelTarget(3, ignore_index=255)({"label": torch.tensor([0, 255, 2])}).target.tolist()
        [0, 255, 2]
    """

    num_classes: int
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        _check_ignore_index(self.ignore_index, _check_num_classes(self.num_classes, "make_target"), "make_target")

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """``batch["label"]``, checked."""
        labels = hard_labels(batch)
        _check_labels(
            labels,
            self.num_classes,
            "make_target",
            spatial=False,
            ignore_index=self.ignore_index,
            name="batch['label']",
        )
        return TrainingTarget(labels)


@dataclass(frozen=True)
class GivenSoftTarget:
    """A soft target in the batch (``batch["soft_label"]``, or ``key``), checked to be a distribution.

    Example:
        >>> soft = torch.full((1, 2, 3, 3), 0.5)
        >>> GivenSoftTarget(2)({"soft_label": soft}).target.sum(1).unique().tolist()
        [1.0]
    """

    num_classes: int
    key: str = "soft_label"

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes, "make_target")

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """``batch[key]``, checked to be a distribution over the ``C`` classes."""
        soft = _tensor(batch, self.key)
        if soft.ndim < 2 or soft.shape[1] != self.num_classes or not soft.is_floating_point():
            raise ValueError(
                f"`batch[{self.key!r}]` must be a float (N, C={self.num_classes}, *spatial) distribution; "
                f"got {soft.dtype} of shape {tuple(soft.shape)}."
            )
        check_distribution(soft, self.key, f"batch[{self.key!r}]")
        return TrainingTarget(soft)
