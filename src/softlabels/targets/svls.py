"""Spatially Varying Label Smoothing (SVLS) targets, 2D and 3D (docs/methods.md §3.1)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from torch import Tensor

from softlabels.targets._filters import separable_filter
from softlabels.targets.label_checks import _check_labels, _check_num_classes
from softlabels.targets.smoothing import _as_batch, _one_hot

__all__ = ["SVLSd", "svls", "svls_kernel"]


def _check_kernel_args(
    sigma: object, kernel_size: object, spatial_dims: object, spacing: object, where: str
) -> tuple[float, int, int, tuple[float, ...]]:
    if isinstance(sigma, bool) or not isinstance(sigma, int | float):
        raise TypeError(f"`sigma` of {where} must be a float; got {type(sigma).__name__} {sigma!r}.")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"`sigma` of {where} must be a finite float > 0; got {sigma!r}.")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"`kernel_size` of {where} must be an int; got {type(kernel_size).__name__} {kernel_size!r}.")
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` of {where} must be an odd int >= 3; got {kernel_size!r}.")
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"`spatial_dims` of {where} must be 2 or 3; got {spatial_dims!r}.")
    if spacing is None:
        return float(sigma), kernel_size, int(spatial_dims), (1.0,) * int(spatial_dims)  # type: ignore[call-overload]
    if not isinstance(spacing, Sequence) or isinstance(spacing, str):
        raise TypeError(f"`spacing` of {where} must be a sequence of floats or None; got {type(spacing).__name__}.")
    values = tuple(spacing)
    ok = len(values) == spatial_dims and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
    )
    if not ok:
        raise ValueError(
            f"`spacing` of {where} must hold {spatial_dims} finite floats > 0 (one per spatial axis); got {spacing!r}."
        )
    return float(sigma), kernel_size, int(spatial_dims), tuple(float(v) for v in values)  # type: ignore[call-overload]


def _relative_exponent(squared: float, nearest: float, sigma: float) -> float:
    """``(squared − nearest) / (2σ²)`` for squared distances, without overflow for a tiny ``σ`` (may be ``inf``).

    Written as ``½ (squared/nearest − 1)·(nearest/σ²)`` with the product taken as 0 when the first factor is 0 (the
    nearest neighbours themselves), so ``σ`` may be as small as floats allow.
    """
    excess = squared / nearest - 1.0
    if excess <= 0.0:
        return 0.0
    ratio = math.sqrt(nearest) / sigma
    return 0.5 * excess * ratio * ratio


def svls_kernel(
    spatial_dims: int, sigma: float = 1.0, kernel_size: int = 3, spacing: Sequence[float] | None = None
) -> Tensor:
    """The SVLS kernel: a Gaussian whose centre weight is replaced by the sum of its neighbours, normalised.

    ``g(o) = exp(−‖o ⊙ spacing‖² / (2σ²))`` for offsets ``o ∈ {−k//2, …, k//2}^d``, normalised to sum 1; then the
    centre becomes ``1 − g_centre`` (the neighbours' sum) and the kernel is renormalised. So the centre always
    weighs exactly 0.5 and the neighbours share 0.5 in proportion to their Gaussian weights (docs/methods.md §3.1; for
    ``σ = 1``, 2D 3×3: faces 0.0778, corners 0.0472). With ``spacing`` (voxel size per axis, e.g. mm) the
    distances are physical and ``σ`` is in the same unit; ``None`` means unit spacing (``σ`` in voxels).

    It is computed in that closed form, ``0.5`` at the centre and ``0.5 · g(o) / Σ_{o' ≠ 0} g(o')`` elsewhere, with
    the exponents taken relative to the nearest neighbour. That is the same kernel without the subtraction
    ``1 − g_centre``, which loses every digit when ``σ`` is small (``σ = 0.05``: ``g_centre`` rounds to 1 even in
    float64): the centre stays 0.5 and the nearest neighbours share the other half for every ``σ > 0``, and every
    ``k`` (the centre is ``k//2``, not the reference code's ``[1, 1]``).

    Args:
        spatial_dims: 2 or 3.
        sigma: Gaussian standard deviation ``σ > 0``.
        kernel_size: odd window size ``k >= 3``.
        spacing: voxel size per spatial axis, or ``None``.

    Returns:
        Kernel ``(k,)*spatial_dims`` in float64 that sums to 1.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``σ <= 0``, even or too small ``k``, or ``spacing`` of the wrong length or not positive.

    Reference:
        Islam & Glocker, "Spatially Varying Label Smoothing", IPMI 2021.

    Example:
        >>> svls_kernel(2).round(decimals=4)
        tensor([[0.0472, 0.0778, 0.0472],
                [0.0778, 0.5000, 0.0778],
                [0.0472, 0.0778, 0.0472]], dtype=torch.float64)
        >>> svls_kernel(2, sigma=0.05)[1]  # tiny σ: the faces share 0.5, the corners get ~1e-87
        tensor([0.1250, 0.5000, 0.1250], dtype=torch.float64)
    """
    sigma, k, dims, steps = _check_kernel_args(sigma, kernel_size, spatial_dims, spacing, "svls_kernel")
    offsets = torch.arange(k, dtype=torch.float64) - k // 2
    grids = torch.meshgrid(*[offsets * s for s in steps], indexing="ij")
    squared = torch.stack(grids).pow(2).sum(0)
    nearest = min(steps) ** 2
    exponents = [_relative_exponent(float(d2), nearest, sigma) for d2 in squared.flatten()]
    weights = torch.exp(-torch.tensor(exponents, dtype=torch.float64)).view_as(squared)
    centre = (k // 2,) * dims
    weights[centre] = 0.0
    weights = weights * (0.5 / weights.sum())
    weights[centre] = 0.5
    return weights


def _check_soft(target: Tensor, num_classes: int, where: str) -> Tensor:
    if target.ndim not in (4, 5) or target.shape[1] != num_classes:
        raise ValueError(
            f"`labels` of {where} given as a soft map must have shape (N, C, *spatial) with C=num_classes="
            f"{num_classes} and 2 or 3 spatial axes; got {tuple(target.shape)}."
        )
    if target.numel() == 0:
        return target
    if bool((target < 0).any()) or not bool(torch.isfinite(target).all()):
        raise ValueError(f"`labels` of {where} given as a soft map must be finite and >= 0; got min {target.min()}.")
    err = (target.sum(1) - 1).abs().max().item()
    if err > 1e-3:
        raise ValueError(
            f"`labels` of {where} given as a soft map must sum to 1 over classes (within 1e-3); got error {err:.3g}."
        )
    return target


def svls(
    labels: Tensor,
    num_classes: int,
    sigma: float = 1.0,
    kernel_size: int = 3,
    spacing: Sequence[float] | None = None,
) -> Tensor:
    """Spatially varying label smoothing: the one-hot map convolved per class with the SVLS kernel.

    ``q = K ∗ onehot(y)`` (depthwise, replicate padding of ``k//2`` at the image border), where ``K`` is
    :func:`svls_kernel` (centre 0.5, neighbours share 0.5 by Gaussian weight). Every ``q`` sums to 1, including at
    the border; homogeneous regions stay one-hot. A soft input ``(N, C, *spatial)`` (e.g. the mean of R raters'
    one-hot maps) is convolved the same way; by linearity that equals the mean of the per-rater SVLS maps
    (multi-rater SVLS, docs/methods.md §3.1).

    Args:
        labels: hard labels ``(N, H, W)`` / ``(N, D, H, W)`` of integer dtype, or a soft map ``(N, C, *spatial)``
            of float dtype (non-negative, summing to 1 over ``C``).
        num_classes: number of classes ``C``.
        sigma: Gaussian standard deviation ``σ > 0`` (in voxels, or in the unit of ``spacing``).
        kernel_size: odd window size ``k >= 3``.
        spacing: voxel size per spatial axis for anisotropic data, or ``None`` (isotropic, unit spacing).

    Returns:
        Soft target ``(N, C, *spatial)``: the soft input's dtype, or the default float dtype for hard labels;
        on the input's device.

    Raises:
        TypeError: ``labels`` is not a tensor, or an option has the wrong type.
        ValueError: labels outside ``[0, C)``, bad shapes, a soft map that is not a distribution, ``σ <= 0``,
            an even ``k`` or a bad ``spacing``.

    Reference:
        Islam & Glocker, "Spatially Varying Label Smoothing: Capturing Uncertainty from Expert Annotations",
        IPMI 2021.

    Example:
        >>> q = svls(torch.tensor([[[0, 0, 1, 1]]]), num_classes=2)
        >>> q[0, 1].round(decimals=4)
        tensor([[0.0000, 0.1722, 0.8278, 1.0000]])
    """
    where = "svls"
    num_classes = _check_num_classes(num_classes, where)
    if not isinstance(labels, Tensor):
        raise TypeError(f"`labels` of {where} must be a torch.Tensor; got {type(labels).__name__}.")
    if labels.is_floating_point():
        target = _check_soft(labels, num_classes, where)
    else:
        target = _one_hot(_check_labels(labels, num_classes, where), num_classes)
    return _svls_filter(target, sigma, kernel_size, spacing)


def _svls_filter(
    target: Tensor, sigma: float, kernel_size: int, spacing: Sequence[float] | None, *, scale: float = 1.0
) -> Tensor:
    """``scale · (K ∗ target)`` for the SVLS kernel ``K``, by separable 1-D passes (replicate padding).

    With the unnormalised 1-D Gaussian factors ``u_i`` (centre weight 1), ``U = Π_i u_i`` is separable, its
    neighbours weigh ``s = Π_i Σ u_i − 1`` in all, and ``K ∗ y = y/2 + (U ∗ y − y) / (2 s)``: the centre weighs 0.5
    and the neighbours share 0.5 in proportion to their Gaussian weights, as :func:`svls_kernel`. For ``s < 0.1``
    (``σ`` below about 0.37 voxel) ``U ∗ y − y`` would cancel, so the neighbour part is filtered directly instead, as
    the telescoping sum ``U − δ = Σ_i u_1 ⊗ … ⊗ u_{i−1} ⊗ (u_i − δ) ⊗ δ ⊗ … ⊗ δ`` (each term separable, no
    subtraction), with the weights scaled by the nearest neighbour's so they cannot underflow: exact for any
    ``σ > 0``. ``scale`` folds a constant factor in (the ``1/R`` of a rater mean given as vote counts).
    """
    sigma, k, _, steps = _check_kernel_args(sigma, kernel_size, target.ndim - 2, spacing, "svls")
    offsets = [i - k // 2 for i in range(k)]
    taps = [[math.exp(-0.5 * (o * step / sigma) * (o * step / sigma)) for o in offsets] for step in steps]
    off_centre = [sum(w for o, w in zip(offsets, t, strict=True) if o) for t in taps]
    sums = [1.0 + off for off in off_centre]
    weight = sum(math.prod(sums[:axis]) * off_centre[axis] for axis in range(len(taps)))  # Π Σu − 1, telescoped
    if weight >= 0.1:
        out = separable_filter(target, taps, padding="replicate").mul_(scale / (2.0 * weight))
        out.add_(target, alpha=scale * (0.5 - 1.0 / (2.0 * weight)))
        return out.clamp_(0.0, 1.0)  # rounding only: every value is a convex combination
    nearest = min(steps) ** 2  # the neighbour part, relative to the nearest neighbour's weight (no underflow)
    parts = [[0.0 if o == 0 else math.exp(-_relative_exponent((o * step) ** 2, nearest, sigma)) for o in offsets]
             for step in steps]  # fmt: skip
    total = sum(math.prod(sums[:axis]) * sum(parts[axis]) for axis in range(len(taps)))
    out = target * (0.5 * scale)
    for axis in range(len(taps)):
        term = [*taps[:axis], parts[axis]] + [[1.0]] * (len(taps) - axis - 1)
        out.add_(separable_filter(target, term, padding="replicate"), alpha=0.5 * scale / total)
    return out.clamp_(0.0, 1.0)


class SVLSd(MapTransform):
    """MONAI dictionary wrapper of :func:`svls` for one sample.

    Each ``data[key]`` is one sample's label map, channel-first ``(1, *spatial)`` as MONAI gives it
    (``has_channel=True``) or ``(*spatial)`` (``has_channel=False``), integer dtype; or, when floating point, a
    soft map ``(C, *spatial)`` (e.g. a rater mean). It is replaced by the SVLS target ``(C, *spatial)``.

    Args:
        keys: keys of the label maps to transform.
        num_classes: number of classes ``C``.
        sigma: Gaussian standard deviation.
        kernel_size: odd window size.
        spacing: voxel size per spatial axis, or ``None``.
        has_channel: whether each hard map carries a leading channel of size 1.
        allow_missing_keys: skip keys absent from the dictionary.

    Example:
        >>> out = SVLSd("label", num_classes=2)({"label": torch.zeros(1, 4, 4, dtype=torch.long)})
        >>> out["label"].shape, bool(out["label"][0].eq(1).all())
        (torch.Size([2, 4, 4]), True)
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        sigma: float = 1.0,
        kernel_size: int = 3,
        spacing: Sequence[float] | None = None,
        *,
        has_channel: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = num_classes
        self.sigma = sigma
        self.kernel_size = kernel_size
        self.spacing = spacing
        self.has_channel = has_channel

    def __call__(self, data: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Replace every selected label map by its SVLS target ``(C, *spatial)``."""
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            is_soft = isinstance(value, Tensor) and value.is_floating_point()
            batch = value.unsqueeze(0) if is_soft else _as_batch(value, self.has_channel, "SVLSd", key)
            d[key] = svls(batch, self.num_classes, self.sigma, self.kernel_size, self.spacing)[0]
        return d
