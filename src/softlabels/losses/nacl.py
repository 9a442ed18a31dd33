"""Neighbor-Aware Calibration Loss (NACL): CE plus a pull of the logits towards local class proportions.

See ``docs/methods.md`` §3.2.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from softlabels._options import look_up_option
from softlabels.losses._base import VoxelLoss
from softlabels.losses._functions import mean_abs_difference
from softlabels.losses._inputs import LossTarget, Reduction, check_positive, cross_entropy_of_logits
from softlabels.targets._filters import separable_filter
from softlabels.targets.svls import _check_kernel_args, _svls_filter

__all__ = ["NACLLoss", "neighbourhood_proportions"]

Kernel = Literal["mean", "gaussian", "gaussian_monai"]
Padding = Literal["background", "zeros", "replicate"]
# each kernel's own border, that of the code it reproduces; only the mean window takes another one
KERNEL_PADDING: dict[str, str] = {"mean": "background", "gaussian": "replicate", "gaussian_monai": "zeros"}


def _check_window(kernel_size: object, kernel: object, sigma: object, padding: object, where: str) -> tuple[str, str]:
    """Check the window options; return the kernel and the padding (``None`` resolved to the kernel's own)."""
    kind = look_up_option("kernel", kernel, KERNEL_PADDING, where=where)
    if padding is not None:
        padding = look_up_option("padding", padding, ("background", "zeros", "replicate"), where=where)
    check_positive("sigma", sigma, where, allow_zero=False)
    if kind == "gaussian":
        _check_kernel_args(sigma, kernel_size, 2, None, where)  # the SVLS kernel's own checks (odd k >= 3)
    elif isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"`kernel_size` of {where} must be an int; got {type(kernel_size).__name__} {kernel_size!r}.")
    elif kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` of {where} must be an odd int >= 1; got {kernel_size!r}.")
    if kind == "gaussian_monai" and kernel_size != 3:
        raise ValueError(
            f"`kernel_size` of {where} is not used by kernel='gaussian_monai' (MONAI's GaussianFilter spans ±4σ, "
            f"as in MONAI's NACLLoss); leave it at 3; got {kernel_size!r}."
        )
    own = KERNEL_PADDING[kind]
    if kind != "mean" and padding not in (None, own):
        raise ValueError(
            f"`padding` of {where} must be {own!r} or None with kernel={kind!r} (the border of the code it "
            f"reproduces); got {padding!r}."
        )
    return kind, own if padding is None else str(padding)


def neighbourhood_proportions(
    target: Tensor,
    *,
    kernel_size: int = 3,
    kernel: Kernel = "mean",
    sigma: float = 1.0,
    padding: Padding | None = None,
) -> Tensor:
    """Share of each class in the window around every voxel: ``τ = K ∗ q`` per class, for NACL.

    Kernels (2D and 3D):

    - ``"mean"``: the uniform ``k×k(×k)`` window, the paper's default. ``padding`` says what lies outside the image:
      ``"background"`` (default: class 0, as the authors' code, which zero-pads the label map before ``unfold``;
      proportions sum to 1), ``"zeros"`` (nothing, as MONAI's ``NACLLoss``; sums < 1 at the border) or
      ``"replicate"`` (the border voxel repeated; sums to 1).
    - ``"gaussian"``: the authors' Gaussian option (``AdaptMarginSVLS``, ``kernel_ops="gaussian"``): the SVLS kernel
      of :func:`~softlabels.targets.svls_kernel` (centre 0.5, the neighbours share 0.5 by Gaussian weight), with
      replicate padding. Their code is 2D; in 3D we use the 3D SVLS kernel, the natural extension. Their code reads
      the centre at ``[1, 1]``, which is the centre only for ``k = 3``; we use ``k//2`` (as for SVLS).
    - ``"gaussian_monai"``: MONAI's ``NACLLoss(kernel_ops="gaussian")``: MONAI's ``GaussianFilter(σ)`` itself (erf
      approximation, truncated at ±4σ whatever ``kernel_size``, taps summing to slightly less than 1), zero padding.

    ``padding=None`` takes the kernel's own border (above); the Gaussian kernels refuse another one.

    Args:
        target: a distribution ``(N, C, H, W)`` / ``(N, C, D, H, W)`` (a one-hot map or a soft target).
        kernel_size: odd window size (``>= 1`` for ``"mean"``, ``>= 3`` for ``"gaussian"``; ``"gaussian_monai"``
            does not use it and takes only the default 3).
        kernel: ``"mean"``, ``"gaussian"`` or ``"gaussian_monai"``.
        sigma: standard deviation ``σ > 0`` of the Gaussian kernels, in voxels.
        padding: ``"background"``, ``"zeros"``, ``"replicate"`` or ``None`` (the kernel's own).

    Returns:
        ``(N, C, *spatial)``, ``target``'s dtype and device.

    Raises:
        TypeError: an option has the wrong type.
        ValueError: a bad ``kernel_size``, ``sigma <= 0``, a padding the kernel does not take, fewer or more than
            2–3 spatial axes, or an unknown option.

    Reference:
        Murugesan, Vasudeva, Dolz, Lombaert, Ben Ayed, Galdran, "Neighbor-Aware Calibration of Segmentation
        Networks with Penalty-Based Constraints", MedIA 2024 (MICCAI 2023).

    Example:
        >>> onehot = torch.tensor([[[[1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]]])  # (1, 2, 1, 3)
        >>> neighbourhood_proportions(onehot, padding="replicate")[0, 1]
        tensor([[0.0000, 0.3333, 0.6667]])
        >>> neighbourhood_proportions(onehot, kernel="gaussian")[0, 1]  # SVLS: own class 0.5, replicate border
        tensor([[0.0000, 0.1722, 0.8278]])
    """
    where = "neighbourhood_proportions"
    kind, border = _check_window(kernel_size, kernel, sigma, padding, where)
    dims = target.ndim - 2
    if dims not in (2, 3):
        raise ValueError(f"`target` of {where} must be (N, C, H, W) or (N, C, D, H, W); got {tuple(target.shape)}.")
    if kind == "gaussian":
        return _svls_filter(target, sigma, kernel_size, None)
    if kind == "gaussian_monai":
        from monai.networks.layers import GaussianFilter

        return GaussianFilter(spatial_dims=dims, sigma=float(sigma))(target)  # type: ignore[no-any-return]
    return separable_filter(target, [[1.0 / kernel_size] * kernel_size] * dims, padding=border)  # type: ignore[arg-type]


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

    The penalty is a mean over classes and the loss a mean over voxels, so ``reduction="mean"`` is MONAI's
    ``CE + λ·mean_{n,c,s}|τ − z|``; with ``kernel="gaussian_monai"`` it equals MONAI's ``NACLLoss(classes=C,
    dim=d, kernel_ops="gaussian", alpha=λ, sigma=σ)`` (which has no ``ignore_index``, weights or soft targets).

    Args:
        lambda_nacl: weight ``λ >= 0`` of the penalty (0.1 in the paper).
        kernel_size: odd window size (3); not used by ``"gaussian_monai"``.
        kernel: ``"mean"`` (the paper's default), ``"gaussian"`` (the authors' SVLS kernel) or ``"gaussian_monai"``
            (MONAI's Gaussian filter); see :func:`neighbourhood_proportions`.
        sigma: std ``σ > 0`` of the Gaussian kernels.
        distance: ``"l1"`` or ``"l2"``.
        padding: outside the image, for the mean window: ``"background"`` (authors' code), ``"zeros"`` (MONAI) or
            ``"replicate"``; ``None`` (default) takes the kernel's own: background for ``"mean"``, replicate for
            ``"gaussian"``, zeros for ``"gaussian_monai"`` (these two refuse another padding).
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
        kernel: Kernel = "mean",
        sigma: float = 1.0,
        distance: Literal["l1", "l2"] = "l1",
        padding: Padding | None = None,
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
        kernel, padding = _check_window(kernel_size, kernel, sigma, padding, where)  # type: ignore[assignment]
        self.window = {"kernel_size": kernel_size, "kernel": kernel, "sigma": float(sigma), "padding": padding}

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
