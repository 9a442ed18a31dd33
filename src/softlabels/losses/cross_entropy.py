"""Cross-entropy and KL divergence against hard or soft targets, 2D and 3D (docs/methods.md §0.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from softlabels.losses._base import VoxelLoss
from softlabels.losses._inputs import LossTarget, Reduction, cross_entropy_per_voxel
from softlabels.targets.label_checks import _check_fraction

__all__ = ["KLDivLoss", "SoftCrossEntropyLoss"]


class SoftCrossEntropyLoss(VoxelLoss):
    r"""Cross-entropy of logits against hard labels or soft targets, per voxel.

    .. math::
        ℓ_v = −Σ_c q_{vc} \log \mathrm{softmax}(z_v)_c, \qquad
        L = \frac{Σ_v w_v ℓ_v}{Σ_v w_v}

    with ``q`` one-hot for hard labels. ``log softmax`` is computed as ``log_softmax`` (never ``log(softmax)``).
    Soft CE equals ``KL(q‖p) + H(q)``: the same gradient as :class:`KLDivLoss`, but it is not 0 at ``p = q``.
    Voxels with ``ignore_index``, outside ``keep_mask`` or of weight 0 do not count; when none counts, the loss is 0
    with a zero gradient (``"mean"`` and ``"sum"``; PyTorch's ``cross_entropy`` gives NaN there). An empty batch
    (``N = 0`` or a spatial size 0) has no loss: a ``ValueError``, whatever the reduction.

    Shapes: ``input (N, C, *spatial)`` logits (``(N, C)`` for classification); ``target (N, *spatial)`` integer
    (``(N, 1, *spatial)`` accepted) or ``(N, C, *spatial)`` float; ``weight``/``keep_mask`` ``(N, *spatial)``.
    Output: a scalar, or ``(N, *spatial)`` with ``reduction="none"``.

    ``label_smoothing=ε`` mixes the target with the uniform distribution, ``q ← (1 − ε) q + ε/C``, as PyTorch's
    ``cross_entropy`` does (for hard labels it runs PyTorch's fused kernel): label smoothing without building the
    ``(N, C, *spatial)`` target.

    Args:
        label_smoothing: ``ε`` in ``[0, 1]``.
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out, or ``None``.
        validate_args: check values on every call (finite logits, label range, soft targets summing to 1).

    Reference:
        Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016 (soft targets).

    Example:
        >>> loss = SoftCrossEntropyLoss()
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(loss(logits, torch.tensor([0, 1])).item(), 4)
        0.1269
        >>> round(loss(logits, torch.tensor([[0.5, 0.5], [0.5, 0.5]])).item(), 4)
        1.1269
        >>> round(SoftCrossEntropyLoss(label_smoothing=1.0)(logits, torch.tensor([0, 1])).item(), 4)
        1.1269
    """

    def __init__(
        self,
        *,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate_args=validate_args)
        self.label_smoothing = _check_fraction("label_smoothing", label_smoothing, "SoftCrossEntropyLoss")

    def _per_voxel(self, input: Tensor, target: LossTarget) -> Tensor:
        eps = self.label_smoothing
        if target.hard is not None:
            return F.cross_entropy(input, target.hard, reduction="none", label_smoothing=eps)
        log_probs = torch.log_softmax(input, dim=1)
        cross = cross_entropy_per_voxel(log_probs, target)
        return cross if eps == 0 else cross.mul_(1.0 - eps).sub_(log_probs.mean(1), alpha=eps)


class KLDivLoss(VoxelLoss):
    r"""KL divergence ``KL(q ‖ softmax(z))`` of logits against a hard or soft target, per voxel.

    .. math::
        ℓ_v = Σ_c q_{vc} (\log q_{vc} − \log \mathrm{softmax}(z_v)_c), \qquad 0 \log 0 = 0

    It is 0 exactly when the prediction equals the target, and equals cross-entropy for hard labels. The per-voxel
    sum over classes followed by the mean over voxels is PyTorch's ``reduction="batchmean"``, not its ``"mean"``
    (which also divides by ``C``). Shapes and options as :class:`SoftCrossEntropyLoss`.

    Args:
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out, or ``None``.
        validate_args: check values on every call.

    Reference:
        Kullback & Leibler, "On Information and Sufficiency", Ann. Math. Stat. 1951; JDTLosses ``kl_div_loss.py``
        (Wang & Blaschko et al., MICCAI 2023).

    Example:
        >>> q = torch.tensor([[0.25, 0.75]])
        >>> KLDivLoss()(q.log(), q).abs().item() < 1e-7
        True
    """

    def _per_voxel(self, input: Tensor, target: LossTarget) -> Tensor:
        log_probs = torch.log_softmax(input, dim=1)
        cross = cross_entropy_per_voxel(log_probs, target)
        if target.soft is None:
            return cross
        q = target.soft.to(log_probs.dtype)
        return torch.xlogy(q, q).sum(1) + cross
