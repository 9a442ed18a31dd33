"""Label smoothing methods: ``ls`` (uniform or "others" form, §1.2) and ``ols`` (online label smoothing, §2.1).

:class:`SmoothedTarget` is the label-smoothed target of ``ls`` when it cannot be fused into the loss.

References: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016 (LS);
Zhang et al., "Delving Deep into Label Smoothing", IEEE TIP 2021 (OLS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from softlabels._options import look_up_option
from softlabels.losses import OnlineLabelSmoothingLoss, SoftCrossEntropyLoss
from softlabels.methods.base import Method, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import LabelTarget, TrainingTarget, _dry_run, _fill_ignored, hard_labels
from softlabels.targets import label_smoothing
from softlabels.targets.label_checks import _check_fraction

__all__ = ["SmoothedTarget"]


@dataclass(frozen=True)
class SmoothedTarget:
    """Label smoothing of the hard label; ignored voxels get a uniform row and are dropped by ``keep_mask``.

    Example:
        >>> import torch
        >>> target = SmoothedTarget(2, 0.2, "uniform")({"label": torch.tensor([0, 1])}).target
        >>> target.double().round(decimals=2).tolist()
        [[0.9, 0.1], [0.1, 0.9]]
    """

    num_classes: int
    epsilon: float
    convention: str
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        self(_dry_run())

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """The smoothed target of ``batch["label"]``, with the keep mask of ``ignore_index``."""
        labels = hard_labels(batch)
        target = label_smoothing(
            labels, self.num_classes, epsilon=self.epsilon, convention=self.convention,  # type: ignore[arg-type]
            ignore_index=self.ignore_index,
        )  # fmt: skip
        target, keep = _fill_ignored(target, labels, self.ignore_index)
        return TrainingTarget(target, keep_mask=keep)


@register_method("ls")
def _ls(
    num_classes: int,
    *,
    task: Task | None = None,
    epsilon: float = 0.1,
    convention: Literal["uniform", "others"] = "uniform",
    ignore_index: int | None = None,
) -> Method:
    """Label smoothing: ``(1 − ε)·onehot + ε/C`` (or the ``ε/(C − 1)`` form) at every item or voxel (§1.2)."""
    convention = look_up_option("convention", convention, ("uniform", "others"), where="method 'ls'")  # type: ignore[assignment]
    epsilon = _check_fraction("epsilon", epsilon, "method 'ls'")
    # both forms are PyTorch's fused label smoothing: the "others" ε equals a uniform ε·C/(C − 1)
    uniform = epsilon if convention == "uniform" else epsilon * num_classes / max(num_classes - 1, 1)
    if isinstance(uniform, float | int) and 0 <= uniform <= 1:
        loss = SoftCrossEntropyLoss(label_smoothing=uniform, ignore_index=ignore_index, validate_args=False)
        return Method("ls", loss, LabelTarget(num_classes, ignore_index))
    build = SmoothedTarget(num_classes, epsilon=epsilon, convention=convention, ignore_index=ignore_index)
    return Method("ls", SoftCrossEntropyLoss(validate_args=False), build)


@register_method("ols")
def _ols(
    num_classes: int,
    *,
    task: Task | None = None,
    alpha: float = 0.5,
    init: Literal["uniform", "zeros"] = "uniform",
    empty_class_policy: Literal["uniform", "keep"] = "uniform",
    freeze_at: float | None = None,
    ignore_index: int | None = None,
) -> Method:
    """Online label smoothing: class-wise soft labels from the previous epoch's correct predictions (§2.1)."""
    loss = OnlineLabelSmoothingLoss(
        num_classes, alpha, init=init, empty_class_policy=empty_class_policy, freeze_at=freeze_at,
        ignore_index=ignore_index, validate_args=False,
    )  # fmt: skip
    return Method("ols", loss, LabelTarget(num_classes, ignore_index))
