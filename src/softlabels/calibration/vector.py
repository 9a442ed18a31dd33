"""Post-hoc vector scaling ``z ↦ w ⊙ z + b`` fitted by streaming NLL (Guo, Pleiss, Sun, Weinberger, ICML 2017).

The per-class scale ``w`` and bias ``b`` (``2C`` parameters) are fitted with L-BFGS on the mean NLL over all kept
voxels. Every L-BFGS evaluation is one pass over the re-iterable batches that accumulates the summed NLL and its
gradient batch by batch, so the validation logits never sit in memory together. Unlike temperature scaling, the bias
can change the argmax (accuracy, Dice).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from softlabels.calibration.temperature import _check_fit_args, _flatten, _iterate

__all__ = ["VectorScaler"]

_WHERE = "VectorScaler.fit"


class VectorScaler(nn.Module):
    """Post-hoc vector scaling ``softmax(w ⊙ z + b)`` with one scale and one bias per class, fitted by streaming.

    ``forward`` maps logits ``(N, C, *spatial)`` (or ``(N, C)``) to ``w_c z_c + b_c`` on the class axis, same
    shape. :meth:`fit` minimises the mean NLL ``(1/V) Σ_v −Σ_c q_vc log softmax(w ⊙ z_v + b)_c`` over the kept
    voxels of a re-iterable stream of ``(logits, target)`` batches with L-BFGS in float64, one pass per evaluation.
    Starts from ``w = 1, b = 0`` (the identity).

    Reference: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017.

    Args:
        num_classes: number of classes ``C >= 2``.

    Attributes:
        weight: per-class scales ``(C,)``; bias: per-class offsets ``(C,)`` (both in ``state_dict``).
        nll_: mean NLL after :meth:`fit`; n_passes_: passes over the batches; converged_: L-BFGS met its tolerance.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> z = 2 * torch.randn(3000, 3, generator=g)
        >>> target = torch.multinomial(torch.softmax(z + torch.tensor([0.0, 1.0, -1.0]), 1), 1, generator=g)[:, 0]
        >>> scaler = VectorScaler(3).fit([(z[i : i + 1000], target[i : i + 1000]) for i in range(0, 3000, 1000)])
        >>> (scaler.bias[1] - scaler.bias[0]).item() > 0.5, scaler.converged_
        (True, True)
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` of VectorScaler must be an int >= 2; got {num_classes!r}.")
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.ones(num_classes))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.nll_: float = math.nan
        self.n_passes_: int = 0
        self.converged_: bool = False

    def forward(self, logits: Tensor) -> Tensor:
        """Return ``w ⊙ logits + b`` on the class axis 1, shape unchanged."""
        if logits.ndim < 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"`logits` of VectorScaler must be (N, C={self.num_classes}, *spatial); got {tuple(logits.shape)}."
            )
        shape = (1, self.num_classes) + (1,) * (logits.ndim - 2)
        return logits * self.weight.to(logits.dtype).view(shape) + self.bias.to(logits.dtype).view(shape)

    def _pass(self, batches: Iterable[Any], w: Tensor, b: Tensor, ignore_index: int | None) -> tuple[Tensor, int]:
        """One pass: the summed NLL at ``(w, b)`` with its gradient accumulated in ``w.grad``/``b.grad``."""
        total = torch.zeros((), dtype=torch.float64)
        count = 0
        for logits, target in _iterate(batches):
            z, q = _flatten(logits, target, ignore_index)
            if z.shape[1] != self.num_classes:
                raise ValueError(f"`logits` of {_WHERE} must have C={self.num_classes} classes; got {z.shape[1]}.")
            s = z * w.to(z.device) + b.to(z.device)
            nll = (q.sum(1) * torch.logsumexp(s, dim=1) - (q * s).sum(1)).sum()
            nll.backward()
            total += nll.detach().cpu()
            count += z.shape[0]
        if count == 0:
            raise ValueError(f"`batches` of {_WHERE} must yield at least one kept voxel; got none.")
        return total, count

    def fit(
        self, batches: Iterable[Any], *, ignore_index: int | None = None, max_passes: int = 100, tol: float = 1e-7
    ) -> VectorScaler:
        """Fit ``w`` and ``b`` by minimising the mean NLL with L-BFGS, one pass over ``batches`` per evaluation.

        Args:
            batches: re-iterable (list, DataLoader) of ``(logits, target)``; target hard ``(N, *spatial)`` integer or
                soft ``(N, C, *spatial)`` float.
            ignore_index: hard-target label whose voxels are left out.
            max_passes: maximum passes over ``batches`` (L-BFGS function evaluations).
            tol: L-BFGS stops when the largest gradient component of the mean NLL is ``<= tol``.

        Returns:
            ``self`` with ``nll_``, ``n_passes_`` and ``converged_`` set (converged: the largest gradient component at
            the result, from one final pass, is ``<= max(tol, 1e-5)``); warns if not converged.

        Raises:
            TypeError: one-shot iterator, non-pair items, wrongly typed logits/target.
            ValueError: empty stream, NaN/inf logits, shape mismatch, labels out of range, bad options.

        Example:
            >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
            >>> VectorScaler(2).fit([(z, torch.tensor([0, 1, 1]))]).nll_ < 0.64
            True
        """
        _check_fit_args(batches, max_passes, tol, (0.05, 20.0))
        w = self.weight.detach().to(torch.float64).clone().requires_grad_(True)
        b = self.bias.detach().to(torch.float64).clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS(
            [w, b],
            lr=1.0,
            max_iter=max_passes,
            max_eval=max_passes,
            tolerance_grad=tol,
            tolerance_change=1e-15,
            line_search_fn="strong_wolfe",
        )
        passes: list[float] = []

        def closure() -> Tensor:
            optimiser.zero_grad()
            total, count = self._pass(batches, w, b, ignore_index)
            w.grad.div_(count)  # type: ignore[union-attr]
            b.grad.div_(count)  # type: ignore[union-attr]
            passes.append(float(total) / count)
            return total / count

        optimiser.step(closure)
        final = closure()  # the NLL and gradient at the accepted point (L-BFGS' last evaluation may be a trial)
        grad_norm = max(float(w.grad.abs().max()), float(b.grad.abs().max()))  # type: ignore[union-attr]
        with torch.no_grad():
            self.weight.copy_(w)
            self.bias.copy_(b)
        self.nll_, self.n_passes_ = float(final), len(passes)
        self.converged_ = grad_norm <= max(tol, 1e-5)
        if not self.converged_:
            warnings.warn(
                f"{_WHERE}: no convergence in {len(passes)} passes (largest gradient {grad_norm:.3g}).",
                RuntimeWarning,
                stacklevel=2,
            )
        return self
