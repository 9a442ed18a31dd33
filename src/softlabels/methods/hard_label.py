"""Methods that train on the hard label and change only the loss: ``hard`` (CE), ``focal``, ``flsd``, ``mbls``.

Each entry is a loss of :mod:`softlabels.losses` on :class:`~softlabels.methods.targets.LabelTarget`.

References: Mukhoti et al., "Calibrating Deep Neural Networks using Focal Loss", NeurIPS 2020 (FL-3, FLSD-53);
Liu et al., "The Devil is in the Margin: Margin-based Label Smoothing for Network Calibration", CVPR 2022 (MbLS).

Example:
    >>> from softlabels.methods import create_method
    >>> create_method("mbls", 3, task="segmentation").loss.margin
    5.0
"""

from __future__ import annotations

from softlabels.losses import FLSD53_BANDS, FocalLoss, MarginLoss, SoftCrossEntropyLoss
from softlabels.methods.base import Method, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import LabelTarget

__all__: list[str] = []  # the entries are reached through the registry (softlabels.methods.create_method)


@register_method("hard")
def _hard(num_classes: int, *, task: Task | None = None, ignore_index: int | None = None) -> Method:
    """Cross-entropy on the hard label (the baseline)."""
    loss = SoftCrossEntropyLoss(ignore_index=ignore_index, validate_args=False)
    return Method("hard", loss, LabelTarget(num_classes, ignore_index))


@register_method("focal")
def _focal(
    num_classes: int, *, task: Task | None = None, gamma: float = 3.0, ignore_index: int | None = None
) -> Method:
    """Focal loss with a fixed ``γ`` (FL-3, Mukhoti et al. 2020)."""
    loss = FocalLoss(gamma, ignore_index=ignore_index, validate_args=False)
    return Method("focal", loss, LabelTarget(num_classes, ignore_index))


@register_method("flsd")
def _flsd(
    num_classes: int,
    *,
    task: Task | None = None,
    gamma: float = 3.0,
    gamma_bands: tuple[tuple[float, float], ...] = FLSD53_BANDS,
    ignore_index: int | None = None,
) -> Method:
    """Focal loss with the sample-dependent ``γ`` of FLSD-53 (5 below p = 0.2, else 3)."""
    loss = FocalLoss(gamma, gamma_bands=gamma_bands, ignore_index=ignore_index, validate_args=False)
    return Method("flsd", loss, LabelTarget(num_classes, ignore_index))


@register_method("mbls")
def _mbls(
    num_classes: int,
    *,
    task: Task | None = None,
    margin: float | None = None,
    lambda_margin: float = 0.1,
    ignore_index: int | None = None,
) -> Method:
    """Margin-based label smoothing: CE + λ·hinge on logit distances (m = 10 classification, 5 segmentation)."""
    if margin is None:
        margin = 5.0 if task == "segmentation" else 10.0
    loss = MarginLoss(margin, lambda_margin, ignore_index=ignore_index, validate_args=False)
    return Method("mbls", loss, LabelTarget(num_classes, ignore_index), params={"margin": margin})
