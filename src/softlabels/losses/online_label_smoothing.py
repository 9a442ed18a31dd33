"""The Online Label Smoothing loss: CE on the label mixed with soft CE on the class's learned soft label.

See ``docs/methods.md`` §2.1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from softlabels.losses._base import VoxelLoss
from softlabels.losses._inputs import LossTarget, Reduction
from softlabels.targets.label_checks import _check_fraction
from softlabels.targets.ols import OnlineLabelSmoother

__all__ = ["OnlineLabelSmoothingLoss"]


class OnlineLabelSmoothingLoss(VoxelLoss):
    r"""OLS loss ``α·CE(z, y) + (1 − α)·SCE(z, S[y])`` with the learned soft-label matrix ``S`` of each class.

    .. math::
        ℓ_v = −α \log p_{v,y_v} − (1 − α) Σ_c S[y_v, c] \log p_{vc}

    ``S`` is frozen within an epoch. The training loop calls :meth:`on_train_batch_end` with the training logits
    after each step (correct predictions are accumulated, no gradient) and :meth:`on_train_epoch_end` after each
    epoch (``S`` is updated; under DDP the accumulators are summed over processes first). The state lives in
    ``self.smoother`` (``S`` a buffer, the accumulators extra state), i.e. in ``state_dict``. ``α = 0.5`` as the
    CIFAR/ImageNet code; the fine-grained code uses ``1·CE + 1·SCE``, the same mix at twice the scale (twice the
    learning rate). Hard labels only.
    Segmentation (per-voxel OLS) is not defined by the sources: experimental.

    Shapes: ``input (N, C, *spatial)`` logits; ``target (N, *spatial)`` integer.

    Args:
        num_classes: number of classes ``C``.
        alpha: weight ``α`` in ``[0, 1]`` of the hard-label CE term.
        init: ``"uniform"`` or ``"zeros"`` (see :class:`~softlabels.targets.OnlineLabelSmoother`).
        empty_class_policy: ``"uniform"`` or ``"keep"``.
        freeze_at: freeze rows whose maximum reached this value, or ``None``.
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out (loss and accumulators), or ``None``.
        validate_args: check values on every call.

    Reference:
        Zhang, Jiang, Hou, Cheng, Xu, Tang, "Delving Deep into Label Smoothing", IEEE TIP 2021.

    Example:
        >>> loss = OnlineLabelSmoothingLoss(3)
        >>> logits, labels = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([0])
        >>> value = loss(logits, labels)  # epoch 1: S is uniform
        >>> loss.on_train_batch_end(logits, labels)
        >>> loss.on_train_epoch_end()
        >>> loss.smoother.soft_labels[0].argmax().item()
        0
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.5,
        *,
        init: Literal["uniform", "zeros"] = "uniform",
        empty_class_policy: Literal["uniform", "keep"] = "uniform",
        freeze_at: float | None = None,
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate_args=validate_args)
        self.alpha = _check_fraction("alpha", alpha, "OnlineLabelSmoothingLoss")
        self.smoother = OnlineLabelSmoother(
            num_classes,
            init=init,
            empty_class_policy=empty_class_policy,
            freeze_at=freeze_at,
            ignore_index=ignore_index,
        )

    def _per_voxel(self, input: Tensor, target: LossTarget) -> Tensor:
        if target.hard is None:
            raise TypeError("`target` of OnlineLabelSmoothingLoss must be hard integer labels; got a soft target.")
        if input.shape[1] != self.smoother.num_classes:
            raise ValueError(
                f"`input` of OnlineLabelSmoothingLoss must have C={self.smoother.num_classes} channels; "
                f"got {input.shape[1]}."
            )
        n, c = input.shape[:2]
        log_probs = torch.log_softmax(input, dim=1).reshape(n, c, -1)
        # α·onehot(y) + (1 − α)·S[y] is row y of M = α·I + (1 − α)·S: one (C × C) matmul, then pick row y
        mix = torch.eye(c, dtype=input.dtype, device=input.device).mul_(self.alpha)
        mix.add_(self.smoother.soft_labels.to(input.dtype), alpha=1.0 - self.alpha)
        per_class = torch.matmul(mix, log_probs)  # (N, C, V): Σ_c M[k, c] log p_c for every candidate label k
        return -per_class.gather(1, target.hard.reshape(n, 1, -1)).reshape(target.hard.shape)

    def on_train_batch_end(self, logits: Tensor, target: Tensor) -> None:
        """Accumulate this step's correct predictions (``logits`` of the training forward pass, labels ``target``)."""
        if target.ndim == logits.ndim and target.shape[1] == 1:
            target = target.squeeze(1)
        self.smoother.accumulate(logits, target)

    def on_train_epoch_end(self) -> None:
        """Update ``S`` from this epoch's accumulators (summed over DDP processes) and clear them."""
        self.smoother.update()
