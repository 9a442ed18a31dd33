"""Value checks shared by the metrics, the losses and the targets: one wording for "not a distribution"."""

from __future__ import annotations

import torch
from torch import Tensor


def sum_tolerance(dtype: torch.dtype) -> float:
    """Absolute tolerance on ``|Σ_c p_c − 1|``: ``1e-4`` for 32/64-bit floats, ``1e-2`` for 16-bit floats.

    Example:
        >>> sum_tolerance(torch.float32)
        0.0001
    """
    return 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4


def check_distribution(x: Tensor, arg: str, where: str, *, class_dim: int = 1) -> None:
    """Raise if ``x`` has NaN/inf, values outside [0, 1], or (with > 1 class) does not sum to 1 over ``class_dim``.

    Args:
        x: a floating tensor holding one distribution over ``class_dim`` per item or voxel.
        arg: the argument name quoted in the error.
        where: the public function or class quoted in the error.
        class_dim: the class axis.

    Raises:
        ValueError: NaN/inf values, values outside [0, 1], or sums off 1 by more than :func:`sum_tolerance`.

    Example:
        >>> check_distribution(torch.tensor([[0.25, 0.75]]), "target", "f")
    """
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    lo_v, hi_v = float(lo), float(hi)
    if not (torch.isfinite(lo) and torch.isfinite(hi)):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"`{arg}` of {where} must be finite; got {n_bad} NaN/inf value(s).")
    if lo_v < 0.0 or hi_v > 1.0:
        raise ValueError(f"`{arg}` of {where} must be probabilities in [0, 1]; got min {lo_v:.6g}, max {hi_v:.6g}.")
    if x.shape[class_dim] > 1:
        y = x.detach() if x.dtype in (torch.float32, torch.float64) else x.detach().float()
        lo_sum, hi_sum = torch.aminmax(y.sum(class_dim))
        dev = torch.maximum(hi_sum - 1.0, 1.0 - lo_sum)
        tol = sum_tolerance(x.dtype)
        if float(dev) > tol:
            raise ValueError(
                f"`{arg}` of {where} must sum to 1 over the class axis {class_dim} (tolerance {tol:g}); "
                f"got a maximum deviation of {float(dev):.3g}. Apply softmax to logits first."
            )
