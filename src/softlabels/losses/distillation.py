"""Knowledge-distillation loss of Tf-KD: CE on the labels plus KL to a teacher distribution (docs/methods.md §2.2)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from softlabels._checks import check_distribution
from softlabels._options import look_up_option
from softlabels.losses._base import VoxelLoss
from softlabels.losses._inputs import LossTarget, Reduction, check_positive, cross_entropy_of_logits, reduce_voxels
from softlabels.targets.label_checks import _check_fraction
from softlabels.targets.tfkd import _teacher_values, virtual_teacher

__all__ = ["DistillationLoss", "VirtualTeacherLoss"]


class DistillationLoss(VoxelLoss):
    r"""``(1 − α)·CE(z, y) + α·m·T²·KL(t ‖ softmax(z / T))`` per voxel, for a given teacher distribution ``t``.

    .. math::
        ℓ_v = (1 − α)\,\big(−Σ_c q_{vc} \log p_{vc}\big) + α\,m\,T^2\,
              Σ_c t_{vc} \big(\log t_{vc} − \log \mathrm{softmax}(z_v / T)_c\big)\ /\ κ

    - Tf-KD_reg: ``t = virtual_teacher(y, T=…)`` with the student at ``temperature=1`` (as the reference code,
      whose paper equation also softens the student), so ``T² = 1``.
    - Tf-KD_self: ``t = self_teacher(z_teacher, T)`` and ``temperature=T`` (Hinton's ``T²`` factor).

    ``kl_reduction="mean"`` (default, ``κ = C``) is the authors' code: its ``nn.KLDivLoss()`` has PyTorch's default
    ``reduction="mean"``, which divides the summed KL by ``N·C`` (items **and** classes), so the term is ``C`` times
    weaker than the textbook KL. ``"batchmean"`` (``κ = 1``) sums the KL over classes and averages over voxels, the
    textbook scale (``C`` times the default's KL term). The CE term takes hard labels or a soft target; reduction,
    ``ignore_index``, ``keep_mask`` and ``weight`` as :class:`~softlabels.losses.SoftCrossEntropyLoss`.

    Shapes: ``input (N, C, *spatial)`` logits; ``target (N, *spatial)`` integer or ``(N, C, *spatial)`` float;
    ``teacher (N, C, *spatial)`` a distribution over ``C``.

    Args:
        alpha: weight ``α`` in ``[0, 1]`` of the distillation term (0.95 in the reference settings).
        temperature: the student's temperature ``T > 0`` (1 for Tf-KD_reg).
        multiplier: ``m >= 0``, the extra factor of the reference code (1 or 100/50 for some networks).
        kl_reduction: ``"mean"`` (divide by ``C``, the authors' code) or ``"batchmean"``.
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
        kl_reduction: Literal["batchmean", "mean"] = "mean",
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
        cross = cross_entropy_of_logits(input, prepared)
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


class VirtualTeacherLoss(VoxelLoss):
    r"""Tf-KD_reg in closed form: :class:`DistillationLoss` against the virtual teacher, without building it.

    The virtual teacher ``t = softmax(p_d / T)`` (see :func:`~softlabels.targets.virtual_teacher`) has only two
    values, ``t_y`` on the label and ``t_o`` elsewhere, so with ``log p = log_softmax(z)`` (student at temperature 1,
    as the reference code):

    .. math::
        \mathrm{KL}(t ‖ p) = t_y \log t_y + (C − 1)\,t_o \log t_o − t_o Σ_c \log p_c − (t_y − t_o) \log p_y

        ℓ = (1 − α)(−\log p_y) + α\,m\,\mathrm{KL} / κ

    equal to ``DistillationLoss(α, multiplier=m, kl_reduction=…)(z, y, teacher=virtual_teacher(y, C, …))`` at the
    cost of a cross-entropy. Hard labels only; reduction, ``ignore_index``, ``keep_mask``, ``weight`` as
    :class:`~softlabels.losses.SoftCrossEntropyLoss`.

    Args:
        num_classes: number of classes ``C >= 2``.
        alpha: weight ``α`` in ``[0, 1]`` of the distillation term (0.95).
        temperature: the teacher temperature ``T > 0`` (40 for MobileNetV2, 6 for ResNet-50).
        correct_probability: ``a``, the virtual teacher's probability of the label before softening (0.99).
        multiplier: ``m >= 0``.
        kl_reduction: ``"mean"`` (``κ = C``: the authors' code, PyTorch's default ``KLDivLoss()``; default) or
            ``"batchmean"`` (``κ = 1``).
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out, or ``None``.
        validate_args: check values on every call.

    Reference:
        Yuan, Tay, Li, Wang, Feng, "Revisiting Knowledge Distillation via Label Smoothing Regularization", CVPR 2020.

    Example:
        >>> from softlabels.targets import virtual_teacher
        >>> z, y = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([0])
        >>> closed = VirtualTeacherLoss(3, temperature=2.0)(z, y)
        >>> explicit = DistillationLoss()(z, y, teacher=virtual_teacher(y, 3, temperature=2.0))
        >>> abs(closed - explicit).item() < 1e-6
        True
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.95,
        *,
        temperature: float = 40.0,
        correct_probability: float = 0.99,
        multiplier: float = 1.0,
        kl_reduction: Literal["batchmean", "mean"] = "mean",
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate_args=validate_args)
        where = "VirtualTeacherLoss"
        self.alpha = _check_fraction("alpha", alpha, where)
        self.multiplier = check_positive("multiplier", multiplier, where)
        self.kl_reduction = look_up_option("kl_reduction", kl_reduction, ("batchmean", "mean"), where=where)
        virtual_teacher(  # checks num_classes, correct_probability and temperature
            torch.tensor([0]), num_classes, correct_probability=correct_probability, temperature=temperature
        )
        self.num_classes = num_classes
        self.temperature, self.correct_probability = float(temperature), float(correct_probability)
        t_y, t_o = _teacher_values(num_classes, self.correct_probability, self.temperature)  # float64
        self.teacher_label, self.teacher_other = t_y, t_o
        xlogx = [t * math.log(t) if t > 0 else 0.0 for t in (t_y, t_o)]  # 0 log 0 = 0
        self.teacher_negentropy = math.fsum([xlogx[0], (num_classes - 1) * xlogx[1]])

    def _per_voxel(self, input: Tensor, target: LossTarget) -> Tensor:
        if target.hard is None:
            raise TypeError("`target` of VirtualTeacherLoss must be hard integer labels; got a soft target.")
        if input.shape[1] != self.num_classes:
            raise ValueError(
                f"`input` of VirtualTeacherLoss must have C={self.num_classes} channels; got {input.shape[1]}."
            )
        log_probs = torch.log_softmax(input, dim=1)  # (faster than logsumexp on the CPU)
        at_label = log_probs.gather(1, target.hard.unsqueeze(1)).squeeze(1)
        sum_log_probs = log_probs.sum(1)
        t_y, t_o = self.teacher_label, self.teacher_other
        kl = sum_log_probs.mul_(-t_o).sub_(at_label, alpha=t_y - t_o).add_(self.teacher_negentropy)
        scale = self.alpha * self.multiplier / (self.num_classes if self.kl_reduction == "mean" else 1)
        return kl.mul_(scale).sub_(at_label, alpha=1.0 - self.alpha)

    def extra_repr(self) -> str:
        """Show the options in ``repr``."""
        return (
            f"num_classes={self.num_classes}, alpha={self.alpha}, temperature={self.temperature}, "
            f"correct_probability={self.correct_probability}, multiplier={self.multiplier}, "
            f"kl_reduction={self.kl_reduction!r}, {super().extra_repr()}"
        )
