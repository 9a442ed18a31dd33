"""Multi-rater methods (§3.5): ``raters_mean``, ``raters_weighted``, ``raters_majority`` fuse the raters' maps.

``raters_svls`` (SVLS of the rater mean) is in :mod:`softlabels.methods.spatial`; ``dml`` can train on the rater
mean too (:mod:`softlabels.methods.dml`).

Reference: Wang, Popordanoska, Bertels, Lemmens, Blaschko, "Dice Semimetric Losses: Optimizing the Dice Score with
Soft Labels", MICCAI 2023 (the JDTLosses multi-rater labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from softlabels.losses import SoftCrossEntropyLoss
from softlabels.methods.base import Method, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import TrainingTarget, rater_stack
from softlabels.targets import fuse_raters

__all__ = ["RaterTarget"]

RATERS = ("raters",)


@dataclass(frozen=True)
class RaterTarget:
    """Fusion of the raters' maps ``batch["raters"] (N, R, *spatial)``: mean, weighted mean or majority.

    Example:
        >>> build = RaterTarget(2, "mean")
        >>> build({"raters": torch.tensor([[0, 1, 1, 1]])}).target.tolist()
        [[0.25, 0.75]]
    """

    num_classes: int
    method: str
    reference_quirk: bool = False

    def __post_init__(self) -> None:
        self({"raters": torch.zeros(1, 1, dtype=torch.long)})

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """The fused raters ``(N, C, *spatial)`` (mean, weighted) or the majority labels ``(N, *spatial)``."""
        fused = fuse_raters(
            rater_stack(batch), self.num_classes, method=self.method,  # type: ignore[arg-type]
            reference_quirk=self.reference_quirk,
        )  # fmt: skip
        return TrainingTarget(fused)


@register_method("raters_mean")
def _raters_mean(num_classes: int, *, task: Task | None = None) -> Method:
    """Soft target = the fraction of raters choosing each class (multi-rater soft labels, §3.5)."""
    build = RaterTarget(num_classes, "mean")
    return Method("raters_mean", SoftCrossEntropyLoss(validate_args=False), build, requires=RATERS)


@register_method("raters_weighted")
def _raters_weighted(num_classes: int, *, task: Task | None = None, reference_quirk: bool = False) -> Method:
    """Rater mean weighted by each rater's Dice against the majority vote (JDTLosses "MR" labels, §3.5)."""
    build = RaterTarget(num_classes, "weighted", reference_quirk=reference_quirk)
    return Method("raters_weighted", SoftCrossEntropyLoss(validate_args=False), build, requires=RATERS)


@register_method("raters_majority")
def _raters_majority(num_classes: int, *, task: Task | None = None) -> Method:
    """Hard majority vote of the raters (``≥ ⌊R/2⌋ + 1`` votes, else background), trained with CE."""
    build = RaterTarget(num_classes, "majority")
    return Method("raters_majority", SoftCrossEntropyLoss(validate_args=False), build, requires=RATERS)
