"""Knowledge-distillation loss of Tf-KD: CE on the labels plus KL to a teacher distribution (methods spec §2.2)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from softlabels._checks import check_distribution
from softlabels._options import look_up_option
from softlabels.losses._base import VoxelLoss
from softlabels.losses._inputs import Reduction, check_positive, cross_entropy_per_voxel, reduce_voxels
from softlabels.targets.smoothing import _check_fraction

__all__ = ["DistillationLoss"]


class DistillationLoss(VoxelLoss):
    r"""``(1 − α)·CE(z, y) + α·m·T²·KL(t ‖ softmax(z / T))`` per voxel, for a given teacher distribution ``t``.

    .. math::
        ℓ_v = (1 − α)\,\big(−Σ_c q_{vc} \log p_{vc}\big) + α\,m\,T^2\,
              Σ_c t_{vc} \big(\log t_{vc} − \log \mathrm{softmax}(z_v / T)_c\big)\ /\ κ

    - Tf-KD_reg: ``t = virtual_teacher(y, T=…)`` with the student at ``temperature=1`` (as the reference code,
      whose paper equation also softens the student), so ``T² = 1``.
    - Tf-KD_self: ``t = self_teacher(z_teacher, T)`` and ``temperature=T`` (Hinton's ``T²`` factor).

    ``kl_reduction="batchmean"`` (default, ``κ = 1``) sums the KL over classes and averages over voxels.
    ``"mean"`` reproduces the reference code's PyTorch ``KLDivLoss(reduction="mean")``, which also divides by ``C``
    (``κ = C``) and so weakens the term by ``C``; use it to match the authors' numbers. The CE term takes hard
    labels or a soft target; reduction, ``ignore_index``, ``keep_mask`` and ``weight`` as
    :class:`~softlabels.losses.SoftCrossEntropyLoss`.

    Shapes: ``input (N, C, *spatial)`` logits; ``target (N, *spatial)`` integer or ``(N, C, *spatial)`` float;
    ``teacher (N, C, *spatial)`` a distribution over ``C``.

    Args:
        alpha: weight ``α`` in ``[0, 1]`` of the distillation term (0.95 in the reference settings).
        temperature: the student's temperature ``T > 0`` (1 for Tf-KD_reg).
        multiplier: ``m >= 0``, the extra factor of the reference code (1 or 100/50 for some networks).
        kl_reduction: ``"batchmean"`` or ``"mean"`` (divide by ``C`` as the reference).
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out, or ``None``.
        validate_args: check values on every call.

    Reference:
        Yuan, Tay, Li, Wang, Feng, "Revisiting Knowledge Distillation via Label Smoothing Regularization", CVPR 2020;
        Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015.

    Example:
        >>> logits = torch.tensor([[1.0, 0.0]])
        >>> teacher = torch.softmax(logits, 1)  # the student already matches the teacher: KL = 0
        >>> ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
        >>> loss = DistillationLoss(alpha=0.5)(logits, torch.tensor([0]), teacher=teacher)
        >>> abs(loss.item() - 0.5 * ce.item()) < 1e-6
        True
    """

    def __init__(
        self,
        alpha: float = 0.95,
        *,
        temperature: float = 1.0,
        multiplier: float = 1.0,
        kl_reduction: Literal["batchmean", "mean"] = "batchmean",
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate_args=validate_args)
        where = "DistillationLoss"
        self.alpha = _check_fraction("alpha", alpha, where)
        self.temperature = check_positive("temperature", temperature, where, allow_zero=False)
        self.multiplier = check_positive("multiplier", multiplier, where)
        self.kl_reduction = look_up_option("kl_reduction", kl_reduction, ("batchmean", "mean"), where=where)

    def forward(  # type: ignore[override]
        self,
        input: Tensor,
        target: Tensor,
        *,
        teacher: Tensor,
        weight: Tensor | None = None,
        keep_mask: Tensor | None = None,
    ) -> Tensor:
        """Distillation loss of logits ``input`` given labels ``target`` and the ``teacher`` distribution."""
        input, prepared = self.prepare(input, target, weight, keep_mask)
        if not isinstance(teacher, Tensor) or not teacher.is_floating_point() or teacher.shape != input.shape:
            got = tuple(teacher.shape) if isinstance(teacher, Tensor) else type(teacher).__name__
            raise ValueError(
                f"`teacher` of DistillationLoss must be a float distribution of the shape of `input` "
                f"{tuple(input.shape)}; got {got}."
            )
        if self.validate_args:
            check_distribution(teacher, "teacher", "DistillationLoss")
        cross = cross_entropy_per_voxel(torch.log_softmax(input, dim=1), prepared)
        t = teacher.detach().to(input.dtype)
        student = torch.log_softmax(input / self.temperature, dim=1)
        kl = (torch.xlogy(t, t) - t * student).sum(1)
        scale = self.multiplier * self.temperature**2 / (input.shape[1] if self.kl_reduction == "mean" else 1)
        per_voxel = (1.0 - self.alpha) * cross + self.alpha * scale * kl
        return reduce_voxels(per_voxel, prepared.voxel_weight, self.reduction)

    def extra_repr(self) -> str:
        """Show the options in ``repr``."""
        return (
            f"alpha={self.alpha}, temperature={self.temperature}, multiplier={self.multiplier}, "
            f"kl_reduction={self.kl_reduction!r}, {super().extra_repr()}"
        )
