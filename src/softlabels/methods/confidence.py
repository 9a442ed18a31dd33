"""Annotator-confidence methods (§3.6): ``confidence_threshold``, ``confidence_soft``, ``confidence_weighted``.

They read ``batch["confidence"]``, the annotator's confidence in ``[0, 1]`` in the label at each voxel, beside
``batch["label"]``; :class:`ConfidenceTarget` turns both into the target of each mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from softlabels.losses import SoftCrossEntropyLoss
from softlabels.methods.base import SEGMENTATION, Method, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import _ONE_LABEL, TrainingTarget, _dry_run, _voxel_map, hard_labels
from softlabels.targets import confidence_soft, confidence_threshold, confidence_weights

__all__ = ["ConfidenceTarget"]

CONFIDENCE = ("label", "confidence")


@dataclass(frozen=True)
class ConfidenceTarget:
    """Annotator-confidence targets: thresholded hard labels, soft, or hard with confidence weights.

    Example:
        >>> batch = {"label": torch.tensor([[[1, 1]]]), "confidence": torch.tensor([[[0.9, 0.4]]])}
        >>> ConfidenceTarget(2, "threshold", tau=0.6)(batch).target.tolist()
        [[[1, 0]]]
        >>> ConfidenceTarget(2, "weighted")(batch).weight.double().round(decimals=2).tolist()
        [[[0.9, 0.4]]]
    """

    num_classes: int
    mode: str
    tau: float = 0.6
    below: str = "background"
    ignore_index: int = 255

    def __post_init__(self) -> None:
        self({**_dry_run(), "confidence": torch.ones(_ONE_LABEL)})

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """The target of ``mode``: thresholded labels, the soft target, or the labels with confidence weights."""
        labels = hard_labels(batch)
        confidence = _voxel_map(batch, "confidence", labels)
        if self.mode == "threshold":
            hard = confidence_threshold(
                labels, confidence, self.num_classes, tau=self.tau, below=self.below,  # type: ignore[arg-type]
                ignore_index=self.ignore_index,
            )  # fmt: skip
            return TrainingTarget(hard)
        if self.mode == "soft":
            return TrainingTarget(confidence_soft(labels, confidence, self.num_classes))
        return TrainingTarget(labels, weight=confidence_weights(confidence))


@register_method("confidence_threshold", tasks=SEGMENTATION)
def _confidence_threshold(
    num_classes: int,
    *,
    task: Task | None = None,
    tau: float = 0.6,
    below: Literal["background", "ignore"] = "background",
    ignore_index: int = 255,
) -> Method:
    """Hard labels kept where the annotator confidence is ``≥ τ`` (τ = 0.6 worked best, §3.6)."""
    build = ConfidenceTarget(num_classes, "threshold", tau=tau, below=below, ignore_index=ignore_index)
    loss = SoftCrossEntropyLoss(ignore_index=ignore_index if below == "ignore" else None, validate_args=False)
    return Method("confidence_threshold", loss, build, requires=CONFIDENCE)


@register_method("confidence_soft", tasks=SEGMENTATION)
def _confidence_soft(num_classes: int, *, task: Task | None = None) -> Method:
    """Soft target: the confidence on the labelled class, the rest on background (§3.6)."""
    build = ConfidenceTarget(num_classes, "soft")
    return Method("confidence_soft", SoftCrossEntropyLoss(validate_args=False), build, requires=CONFIDENCE)


@register_method("confidence_weighted", tasks=SEGMENTATION)
def _confidence_weighted(num_classes: int, *, task: Task | None = None) -> Method:
    """Hard label with the annotator confidence as voxel weight: ``Σ conf·CE / Σ conf`` (§3.6)."""
    build = ConfidenceTarget(num_classes, "weighted")
    return Method("confidence_weighted", SoftCrossEntropyLoss(validate_args=False), build, requires=CONFIDENCE)
