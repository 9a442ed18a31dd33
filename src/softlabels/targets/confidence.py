"""Targets from per-voxel annotator confidence: thresholded labels, soft targets, loss weights (docs/methods.md §3.6).

``confidence`` is the annotator's confidence, in ``[0, 1]``, that a voxel belongs to the class given in ``labels``,
at every voxel (background included). Give background voxels confidence 1 where the background is certain.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Literal

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.targets.label_checks import _check_fraction, _check_labels, _check_num_classes
from softlabels.targets.smoothing import _as_batch, _one_hot

__all__ = ["ConfidenceTargetd", "confidence_soft", "confidence_threshold", "confidence_weights"]

Below = Literal["background", "ignore"]


def _check_confidence(confidence: object, where: str, shape: torch.Size | None = None) -> Tensor:
    if not isinstance(confidence, Tensor):
        raise TypeError(f"`confidence` of {where} must be a torch.Tensor; got {type(confidence).__name__}.")
    if not confidence.is_floating_point():
        raise TypeError(f"`confidence` of {where} must have a floating dtype; got {confidence.dtype}.")
    if shape is not None and confidence.shape != shape:
        raise ValueError(
            f"`confidence` of {where} must have the shape of `labels` {tuple(shape)}; got {tuple(confidence.shape)}."
        )
    outside = ~((confidence >= 0) & (confidence <= 1))
    if bool(outside.any()):
        raise ValueError(f"`confidence` of {where} must lie in [0, 1]; got {confidence[outside][0].item()}.")
    return confidence


def confidence_threshold(
    labels: Tensor,
    confidence: Tensor,
    num_classes: int,
    *,
    tau: float = 0.6,
    below: Below = "background",
    ignore_index: int = 255,
) -> Tensor:
    """Hard labels kept only where the annotator is confident: ``y_τ(s) = y(s)`` if ``conf(s) ≥ τ``.

    Voxels with ``conf(s) < τ`` become class 0 (``below="background"``) or ``ignore_index`` (``below="ignore"``;
    this also applies to low-confidence background voxels). The paper found ``τ = 0.6`` best (docs/methods.md §3.6).

    Args:
        labels: hard labels ``(N, H, W)`` / ``(N, D, H, W)``, integer dtype.
        confidence: per-voxel confidence ``(N, *spatial)`` in ``[0, 1]``, float dtype.
        num_classes: number of classes ``C``.
        tau: threshold ``τ`` in ``[0, 1]``.
        below: ``"background"`` or ``"ignore"``.
        ignore_index: label for ignored voxels (must not be in ``[0, C)``).

    Returns:
        Hard labels ``(N, *spatial)`` with ``labels``' dtype and device.

    Raises:
        TypeError: a tensor of the wrong type or dtype.
        ValueError: shapes differ, labels outside ``[0, C)``, confidence or ``τ`` outside ``[0, 1]``,
            ``ignore_index`` inside ``[0, C)``, or an unknown ``below``.

    Reference:
        "Label Uncertainty for Ultrasound Segmentation", arXiv 2508.15635, 2025.

    Example:
        >>> labels = torch.tensor([[[1, 1, 2, 0]]])
        >>> conf = torch.tensor([[[0.9, 0.5, 0.6, 1.0]]])
        >>> confidence_threshold(labels, conf, 3, tau=0.6)
        tensor([[[1, 0, 2, 0]]])
        >>> confidence_threshold(labels, conf, 3, tau=0.6, below="ignore")
        tensor([[[  1, 255,   2,   0]]])
    """
    where = "confidence_threshold"
    below = look_up_option("below", below, ("background", "ignore"), where=where)  # type: ignore[assignment]
    num_classes = _check_num_classes(num_classes, where)
    tau = _check_fraction("tau", tau, where)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"`ignore_index` of {where} must be an int; got {type(ignore_index).__name__}.")
    if 0 <= ignore_index < num_classes:
        raise ValueError(f"`ignore_index` of {where} must not be in [0, {num_classes}); got {ignore_index}.")
    labels = _check_labels(labels, num_classes, where)
    confidence = _check_confidence(confidence, where, labels.shape)
    fill = 0 if below == "background" else ignore_index
    return torch.where(confidence >= tau, labels, torch.full_like(labels, fill))


def confidence_soft(labels: Tensor, confidence: Tensor, num_classes: int) -> Tensor:
    """Soft target that puts the confidence on the labelled class and the rest on background.

    ``q = conf·onehot(y) + (1 − conf)·onehot(0)``: a foreground voxel gives ``conf`` to its class and
    ``1 − conf`` to class 0; a background voxel is one-hot background whatever its confidence. For a binary task
    this is ``q_fg = conf`` on the labelled region (docs/methods.md §3.6, "soft").

    Args:
        labels: hard labels ``(N, H, W)`` / ``(N, D, H, W)``, integer dtype.
        confidence: per-voxel confidence ``(N, *spatial)`` in ``[0, 1]``, float dtype.
        num_classes: number of classes ``C``.

    Returns:
        Soft target ``(N, C, *spatial)`` with ``confidence``'s dtype and device.

    Raises:
        TypeError: a tensor of the wrong type or dtype.
        ValueError: shapes differ, labels outside ``[0, C)`` or confidence outside ``[0, 1]``.

    Reference:
        "Label Uncertainty for Ultrasound Segmentation", arXiv 2508.15635, 2025.

    Example:
        >>> confidence_soft(torch.tensor([[1, 0]]), torch.tensor([[0.75, 0.2]]), 2)
        tensor([[[0.2500, 1.0000],
                 [0.7500, 0.0000]]])
    """
    where = "confidence_soft"
    num_classes = _check_num_classes(num_classes, where)
    labels = _check_labels(labels, num_classes, where, spatial=False)
    confidence = _check_confidence(confidence, where, labels.shape)
    onehot = _one_hot(labels, num_classes, confidence.dtype)
    conf = confidence.unsqueeze(1)
    target = conf * onehot
    target[:, 0] += 1 - confidence
    return target


def confidence_weights(confidence: Tensor) -> Tensor:
    """Per-voxel loss weights for a hard-label loss: the annotator confidence itself, ``w(s) = conf(s)``.

    Use as ``(w · CE(z, y)).sum() / w.sum()`` (docs/methods.md §3.6, "weighted"). The input is validated and copied,
    never clipped.

    Args:
        confidence: per-voxel confidence ``(N, *spatial)`` in ``[0, 1]``, float dtype.

    Returns:
        Weights ``(N, *spatial)``, a new tensor with ``confidence``'s dtype and device.

    Raises:
        TypeError: ``confidence`` is not a floating tensor.
        ValueError: a value outside ``[0, 1]`` (or NaN).

    Reference:
        "Label Uncertainty for Ultrasound Segmentation", arXiv 2508.15635, 2025.

    Example:
        >>> confidence_weights(torch.tensor([[0.2, 1.0]]))
        tensor([[0.2000, 1.0000]])
    """
    return _check_confidence(confidence, "confidence_weights").clone()


class ConfidenceTargetd(MapTransform):
    """MONAI dictionary transform building one sample's confidence-based target (threshold, soft or weighted).

    Each ``data[key]`` is a label map, channel-first ``(1, *spatial)`` (``has_channel=True``) or ``(*spatial)``,
    and ``data[confidence_key]`` the confidence map of the same layout. ``mode="threshold"`` replaces the label by
    :func:`confidence_threshold` (same layout); ``"soft"`` by :func:`confidence_soft` ``(C, *spatial)``;
    ``"weighted"`` keeps the label and writes :func:`confidence_weights` to ``data[weight_key]``.

    Args:
        keys: keys of the label maps.
        num_classes: number of classes ``C``.
        confidence_key: key of the confidence map.
        mode: ``"threshold"``, ``"soft"`` or ``"weighted"``.
        tau: threshold ``τ`` (``"threshold"``).
        below: ``"background"`` or ``"ignore"`` (``"threshold"``).
        ignore_index: label of ignored voxels (``"threshold"`` with ``below="ignore"``).
        weight_key: where ``"weighted"`` writes the weights.
        has_channel: whether the maps carry a leading channel of size 1.
        allow_missing_keys: skip keys absent from the dictionary.

    Example:
        >>> data = {"label": torch.tensor([[[1, 1]]]), "confidence": torch.tensor([[[0.9, 0.5]]])}
        >>> ConfidenceTargetd("label", 2, tau=0.6)(data)["label"]
        tensor([[[1, 0]]])
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        *,
        confidence_key: str = "confidence",
        mode: Literal["threshold", "soft", "weighted"] = "threshold",
        tau: float = 0.6,
        below: Below = "background",
        ignore_index: int = 255,
        weight_key: str = "weight",
        has_channel: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mode = look_up_option("mode", mode, ("threshold", "soft", "weighted"), where="ConfidenceTargetd")
        self.num_classes = num_classes
        self.confidence_key = confidence_key
        self.tau, self.below, self.ignore_index = tau, below, ignore_index
        self.weight_key = weight_key
        self.has_channel = has_channel

    def __call__(self, data: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Build the target of every selected label map from its confidence map."""
        d = dict(data)
        where = "ConfidenceTargetd"
        conf = _as_batch(d[self.confidence_key], self.has_channel, where, self.confidence_key)
        for key in self.key_iterator(d):
            labels = _as_batch(d[key], self.has_channel, where, key)
            if self.mode == "threshold":
                hard = confidence_threshold(
                    labels, conf, self.num_classes, tau=self.tau, below=self.below, ignore_index=self.ignore_index
                )
                d[key] = hard if self.has_channel else hard[0]
            elif self.mode == "soft":
                d[key] = confidence_soft(labels, conf, self.num_classes)[0]
            else:
                _check_labels(labels, self.num_classes, where, spatial=False)
                weights = confidence_weights(conf)
                d[self.weight_key] = weights if self.has_channel else weights[0]
        return d
