"""Focal loss for calibration, with the sample-dependent γ of FLSD-53 (docs/methods.md §2.3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from softlabels.losses._base import VoxelLoss
from softlabels.losses._inputs import LossTarget, Reduction, check_positive

__all__ = ["FLSD53_BANDS", "FocalLoss"]

FLSD53_BANDS: tuple[tuple[float, float], ...] = ((0.2, 5.0), (0.5, 3.0))
"""FLSD-53's bands: ``γ = 5`` where ``p < 0.2``, ``γ = 3`` where ``0.2 <= p < 0.5``, the base ``γ = 3`` above.

Example:
    >>> FocalLoss(gamma=3.0, gamma_bands=FLSD53_BANDS).gamma_bands
    ((0.2, 5.0), (0.5, 3.0))
"""


def _power(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent``; small integer exponents by multiplications (``torch.pow`` is several times slower at 5)."""
    if exponent.is_integer() and 0 < exponent <= 8:
        result, base, k = None, x, int(exponent)
        while k:
            if k & 1:
                result = base if result is None else result * base
            k >>= 1
            if k:
                base = base * base
        return result  # type: ignore[return-value]
    return x.pow(exponent)


def _check_bands(bands: object, where: str) -> tuple[tuple[float, float], ...]:
    """Check ``((threshold, gamma), ...)`` with increasing thresholds in (0, 1] and gammas >= 0."""
    if bands is None:
        return ()
    ok = isinstance(bands, Sequence) and all(isinstance(b, Sequence) and len(b) == 2 for b in bands)
    pairs = tuple((b[0], b[1]) for b in bands) if ok else ()  # type: ignore[attr-defined, index]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for pair in pairs for v in pair)
    if not ok or not numbers:
        raise TypeError(f"`gamma_bands` of {where} must be a sequence of (threshold, gamma) pairs; got {bands!r}.")
    thresholds = [float(t) for t, _ in pairs]
    valid = all(0 < t <= 1 for t in thresholds) and thresholds == sorted(set(thresholds))
    if not valid or not all(math.isfinite(g) and g >= 0 for _, g in pairs):
        raise ValueError(
            f"`gamma_bands` of {where} must have strictly increasing thresholds in (0, 1] and gammas >= 0; "
            f"got {bands!r}."
        )
    return tuple((float(t), float(g)) for t, g in pairs)


class FocalLoss(VoxelLoss):
    r"""Focal loss ``−Σ_c q_c (1 − p_c)^γ log p_c`` per voxel, optionally with a sample-dependent ``γ``.

    .. math::
        ℓ_v = −Σ_c q_{vc}\,(1 − p_{vc})^{γ(p_{vc})} \log p_{vc}, \qquad p_v = \mathrm{softmax}(z_v)

    For hard labels this is ``−(1 − p_{c*})^γ log p_{c*}``; for soft targets each class is weighted by its own
    ``(1 − p_c)^γ``. ``gamma_bands=((t₁, γ₁), (t₂, γ₂), …)`` uses ``γ₁`` where ``p < t₁``, ``γ₂`` where
    ``t₁ <= p < t₂``, …, and ``gamma`` above the last threshold; :data:`FLSD53_BANDS` gives FLSD-53 (``γ`` is
    piecewise constant, so no gradient flows through it). ``γ = 0`` is cross-entropy. ``log p`` comes from
    ``log_softmax`` and ``1 − p`` from ``−expm1(log p)``. Per-voxel reduction, ``ignore_index``, ``keep_mask`` and
    ``weight`` as :class:`~softlabels.losses.SoftCrossEntropyLoss` (the MbLS/MarginLoss repos use the mean; the
    focal-calibration repo sums over the batch).

    Shapes: ``input (N, C, *spatial)`` logits; ``target (N, *spatial)`` integer or ``(N, C, *spatial)`` float.

    Args:
        gamma: focusing parameter ``γ >= 0`` (3 is the recommended fixed value, FL-3).
        gamma_bands: ``(threshold, gamma)`` pairs for a sample-dependent ``γ``, or ``None``.
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out, or ``None``.
        validate_args: check values on every call.

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; Mukhoti, Kulharia, Sanyal, Golodetz, Torr,
        Dokania, "Calibrating Deep Neural Networks using Focal Loss", NeurIPS 2020 (FL-3, FLSD-53).

    Example:
        >>> logits = torch.tensor([[0.0, 0.0]])  # p = 0.5 for the target class
        >>> round(FocalLoss(gamma=2.0)(logits, torch.tensor([0])).item(), 5)  # 0.5² · log 2
        0.17329
        >>> round(FocalLoss(gamma=3.0, gamma_bands=FLSD53_BANDS)(logits, torch.tensor([0])).item(), 5)
        0.08664
    """

    def __init__(
        self,
        gamma: float = 3.0,
        *,
        gamma_bands: Sequence[tuple[float, float]] | None = None,
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate_args=validate_args)
        self.gamma = check_positive("gamma", gamma, "FocalLoss")
        self.gamma_bands = _check_bands(gamma_bands, "FocalLoss")
        # a last band whose γ equals the base γ changes nothing (FLSD-53's (0.5, 3) with γ = 3): skip it when computing
        bands = list(self.gamma_bands)
        while bands and bands[-1][1] == self.gamma:
            bands.pop()
        self._effective_bands = tuple(bands)

    def _modulation(self, log_probs: Tensor) -> Tensor | None:
        """``(1 − p)^γ(p)`` with scalar exponents per band (``None`` for ``γ = 0`` without bands: plain CE)."""
        if not self._effective_bands and self.gamma == 0:
            return None
        one_minus = -torch.expm1(log_probs)
        powers = {self.gamma: _power(one_minus, self.gamma)}
        weight = powers[self.gamma]
        if self._effective_bands:
            probs = log_probs.detach().exp()
            for threshold, value in reversed(self._effective_bands):
                if value not in powers:
                    powers[value] = _power(one_minus, value)
                weight = torch.where(probs < threshold, powers[value], weight)
        return weight

    def _per_voxel(self, input: Tensor, target: LossTarget) -> Tensor:
        if target.hard is not None:  # log p of the label through the fused cross-entropy kernel
            log_probs = -F.cross_entropy(input, target.hard, reduction="none").unsqueeze(1)
        else:
            log_probs = torch.log_softmax(input, dim=1)
        weight = self._modulation(log_probs)
        focal = log_probs if weight is None else weight * log_probs
        if target.hard is not None:
            return -focal.squeeze(1)
        return -(target.one_hot(input.shape[1], input.dtype) * focal).sum(1)

    def extra_repr(self) -> str:
        """Show the options in ``repr``."""
        return f"gamma={self.gamma}, gamma_bands={self.gamma_bands}, {super().extra_repr()}"
