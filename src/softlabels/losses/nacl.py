"""Neighbor-Aware Calibration Loss (NACL): CE plus a pull of the logits towards local class proportions (§3.2)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.losses._base import VoxelLoss
from softlabels.losses._functions import mean_abs_difference
from softlabels.losses._inputs import LossTarget, Reduction, check_positive, cross_entropy_of_logits
from softlabels.targets._filters import separable_filter

__all__ = ["NACLLoss", "neighbourhood_proportions"]

Padding = Literal["background", "zeros", "replicate"]


def _taps(size: int, kind: str, sigma: float) -> list[float]:
    """The normalised 1-D window, uniform (``"mean"``) or Gaussian; the ``k^d`` window is the product over axes."""
    if kind == "mean":
        return [1.0 / size] * size
    weights = [math.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    return [w / sum(weights) for w in weights]


def neighbourhood_proportions(
    target: Tensor,
    *,
    kernel_size: int = 3,
    kernel: Literal["mean", "gaussian"] = "mean",
    sigma: float = 1.0,
    padding: Padding = "background",
) -> Tensor:
    """Share of each class in the ``k×k(×k)`` window around every voxel: ``τ = K ∗ q`` per class.

    ``padding`` says what lies outside the image: ``"background"`` (class 0, as the original NACL code, which
    zero-pads the label map; proportions sum to 1), ``"zeros"`` (nothing, as MONAI's ``NACLLoss``; proportions sum
    to less than 1 at the border) or ``"replicate"`` (the border voxel repeated; sums to 1).

    Args:
        target: a distribution ``(N, C, H, W)`` / ``(N, C, D, H, W)`` (a one-hot map or a soft target).
        kernel_size: odd window size ``k >= 1``.
        kernel: ``"mean"`` (uniform window, the paper's default) or ``"gaussian"`` (normalised Gaussian).
        sigma: standard deviation of the ``"gaussian"`` window, in voxels.
        padding: ``"background"``, ``"zeros"`` or ``"replicate"``.

    Returns:
        ``(N, C, *spatial)``, ``target``'s dtype and device.

    Raises:
        ValueError: an even ``kernel_size``, ``sigma <= 0``, fewer or more than 2–3 spatial axes, or an unknown option.

    Reference:
        Murugesan, Vasudeva, Dolz, Lombaert, Ben Ayed, Galdran, "Neighbor-Aware Calibration of Segmentation
        Networks with Penalty-Based Constraints", MedIA 2024 (MICCAI 2023).

    Example:
        >>> onehot = torch.tensor([[[[1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]]])  # (1, 2, 1, 3)
        >>> neighbourhood_proportions(onehot, padding="replicate")[0, 1]
        tensor([[0.0000, 0.3333, 0.6667]])
    """
    where = "neighbourhood_proportions"
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` of {where} must be an odd int >= 1; got {kernel_size!r}.")
    kind = look_up_option("kernel", kernel, ("mean", "gaussian"), where=where)
    padding = look_up_option("padding", padding, ("background", "zeros", "replicate"), where=where)  # type: ignore[assignment]
    sigma = check_positive("sigma", sigma, where, allow_zero=False)
    dims = target.ndim - 2
    if dims not in (2, 3):
        raise ValueError(f"`target` of {where} must be (N, C, H, W) or (N, C, D, H, W); got {tuple(target.shape)}.")
    return separable_filter(target, [_taps(kernel_size, kind, sigma)] * dims, padding=padding)


class NACLLoss(VoxelLoss):
    r"""NACL: cross-entropy plus ``λ`` times the mean distance between logits and local class proportions.

    .. math::
        ℓ_v = −Σ_c q_{vc} \log p_{vc} + λ \frac{1}{C} Σ_c \big|τ_c(q)(v) − z_{vc}\big|

    with ``τ = neighbourhood_proportions(q)`` (the share of each class in the ``k``-window around ``v``, from the
    one-hot labels or a soft target) and ``z`` the **logits** (``penalty_on="probs"`` uses ``softmax(z)``, the
    reference's ``is_softmax`` option). ``distance="l2"`` squares the difference. Ignored voxels count as no class
    in the proportions and are left out of the loss. Reduction, ``keep_mask`` and ``weight`` as
    :class:`~softlabels.losses.SoftCrossEntropyLoss`. 2D and 3D only.

    Shapes: ``input (N, C, H, W)`` / ``(N, C, D, H, W)`` logits; ``target`` integer ``(N, *spatial)`` or float
    ``(N, C, *spatial)``.

    Args:
        lambda_nacl: weight ``λ >= 0`` of the penalty (0.1 in the paper).
        kernel_size: odd window size (3).
        kernel: ``"mean"`` or ``"gaussian"``.
        sigma: std of the ``"gaussian"`` window.
        distance: ``"l1"`` or ``"l2"``.
        padding: outside the image: ``"background"`` (original code), ``"zeros"`` (MONAI) or ``"replicate"``.
        penalty_on: ``"logits"`` (paper default) or ``"probs"``.
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"``.
        ignore_index: hard label to leave out, or ``None``.
        validate_args: check values on every call.

    Reference:
        Murugesan, Vasudeva, Dolz, Lombaert, Ben Ayed, Galdran, "Neighbor-Aware Calibration of Segmentation
        Networks with Penalty-Based Constraints", MedIA 2024 (MICCAI 2023).

    Example:
        >>> logits = torch.zeros(1, 2, 3, 3)
        >>> labels = torch.zeros(1, 3, 3, dtype=torch.long)  # all background: τ = (1, 0), |τ − z| = (1, 0)
        >>> round(NACLLoss(lambda_nacl=0.1)(logits, labels).item(), 6)  # log 2 + 0.1 · (1 + 0) / 2
        0.743147
    """

    def __init__(
        self,
        lambda_nacl: float = 0.1,
        kernel_size: int = 3,
        *,
        kernel: Literal["mean", "gaussian"] = "mean",
        sigma: float = 1.0,
        distance: Literal["l1", "l2"] = "l1",
        padding: Padding = "background",
        penalty_on: Literal["logits", "probs"] = "logits",
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, ignore_index=ignore_index, validate_args=validate_args)
        where = "NACLLoss"
        self.lambda_nacl = check_positive("lambda_nacl", lambda_nacl, where)
        self.distance = look_up_option("distance", distance, ("l1", "l2"), where=where)
        self.penalty_on = look_up_option("penalty_on", penalty_on, ("logits", "probs"), where=where)
        self.window = {"kernel_size": kernel_size, "kernel": kernel, "sigma": sigma, "padding": padding}
        neighbourhood_proportions(torch.zeros(1, 2, 1, 1), **self.window)  # type: ignore[arg-type]  # validates

    def _per_voxel(self, input: Tensor, target: LossTarget) -> Tensor:
        if input.ndim not in (4, 5):
            raise ValueError(f"`input` of NACLLoss must be (N, C, H, W) or (N, C, D, H, W); got {tuple(input.shape)}.")
        cross = cross_entropy_of_logits(input, target)
        with torch.no_grad():
            tau = neighbourhood_proportions(target.one_hot(input.shape[1], input.dtype), **self.window)  # type: ignore[arg-type]
        value = input if self.penalty_on == "logits" else torch.softmax(input, dim=1)
        if self.distance == "l1":
            penalty = mean_abs_difference(value, tau)
        else:
            penalty = (value - tau).square().mean(dim=1)
        return cross.add_(penalty, alpha=self.lambda_nacl)

    def extra_repr(self) -> str:
        """Show the options in ``repr``."""
        return f"lambda_nacl={self.lambda_nacl}, distance={self.distance!r}, {self.window}, {super().extra_repr()}"
