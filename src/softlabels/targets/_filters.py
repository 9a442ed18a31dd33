"""Separable filtering of ``(N, C, *spatial)`` maps by shifted slices: the fast path of SVLS and NACL windows.

A ``k^d`` window whose weights are a product of 1-D weights (a Gaussian, a box) is applied as ``d`` passes of ``k``
shifted in-place multiply-adds on views (no padded copy), ``d·k`` instead of ``k^d`` operations per value. The border
is handled one axis at a time; for replicate and constant padding that equals padding the whole map first, because
both commute with filtering along the other axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

Padding = Literal["replicate", "zeros", "background"]


def _filter_axis(x: Tensor, dim: int, weights: Sequence[float], padding: Padding, out: Tensor | None = None) -> Tensor:
    """``out[i] = Σ_j w_j · x[i + j − k//2]`` along ``dim``, out-of-range positions read as ``padding`` says.

    ``out``, if given, is a buffer of ``x``'s shape (not ``x`` itself) that receives the result.
    """
    n = x.shape[dim]
    radius = len(weights) // 2
    out = torch.mul(x, float(weights[radius]), out=out) if out is not None else x * float(weights[radius])
    for j, weight in enumerate(weights):
        offset, w = j - radius, float(weight)
        if offset == 0 or w == 0.0:
            continue
        inside = max(n - abs(offset), 0)  # positions whose source i + offset lies in the image
        if inside:
            start_out, start_in = (0, offset) if offset > 0 else (-offset, 0)
            out.narrow(dim, start_out, inside).add_(x.narrow(dim, start_in, inside), alpha=w)
        outside = n - inside
        start = inside if offset > 0 else 0  # the positions reading beyond the border
        if padding == "replicate":
            border = x.narrow(dim, n - 1 if offset > 0 else 0, 1)
            out.narrow(dim, start, outside).add_(border, alpha=w)
        elif padding == "background":
            out.narrow(dim, start, outside)[:, 0].add_(w)
    return out


def separable_filter(x: Tensor, taps: Sequence[Sequence[float]], *, padding: Padding) -> Tensor:
    """Correlate every channel of ``x (N, C, *spatial)`` with the product of the 1-D weights ``taps[i]`` per axis.

    ``taps[i]`` has odd length ``k_i`` (centred window); the map is padded by ``k_i // 2`` per axis as ``padding``
    says. Returns a new tensor of ``x``'s shape and dtype.

    Example:
        >>> x = torch.tensor([[[[0.0, 0.0, 3.0]]]])
        >>> separable_filter(x, [[1.0], [1 / 3, 1 / 3, 1 / 3]], padding="replicate")
        tensor([[[[0., 1., 2.]]]])
    """
    out, spare = x, None
    for axis, weights in enumerate(taps):
        if len(weights) == 1 and float(weights[0]) == 1.0:
            continue
        result = _filter_axis(out, 2 + axis, weights, padding, out=spare)
        spare = out if out is not x else None  # the previous pass's buffer is free again: reuse it (fewer allocations)
        out = result
    return out if out is not x else x.clone()


def _extreme_axis(x: Tensor, dim: int, width: int, largest: bool) -> Tensor:
    """Max (or min) of ``x`` over ``[i − width, i + width]`` along ``dim``; the border adds no values."""
    out = x.clone()
    op = torch.maximum if largest else torch.minimum
    n = x.shape[dim]
    for offset in range(1, min(width, n - 1) + 1):
        for start_out, start_in in ((0, offset), (offset, 0)):
            view = out.narrow(dim, start_out, n - offset)
            op(view, x.narrow(dim, start_in, n - offset), out=view)
    return out


def window_extremes(labels: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Min and max of an integer map ``(N, *spatial)`` over the ``(2·width + 1)``-wide box around every voxel.

    Separable (a box's max is the max over one axis of the max over the others) and done with in-place
    ``maximum``/``minimum`` on views: ``2 · d · width`` elementwise passes. The image border adds no values.

    Example:
        >>> lo, hi = window_extremes(torch.tensor([[[0, 0, 2, 0]]]), 1)
        >>> hi
        tensor([[[0, 2, 2, 2]]])
    """
    lo, hi = labels, labels
    for dim in range(1, labels.ndim):
        lo = _extreme_axis(lo, dim, width, largest=False)
        hi = _extreme_axis(hi, dim, width, largest=True)
    return lo, hi
