"""Post-hoc temperature scaling that streams over the validation set (Guo, Pleiss, Sun, Weinberger, ICML 2017).

One scalar ``T > 0`` rescales the logits, ``softmax(z / T)``; the argmax (accuracy, Dice at argmax) is unchanged.
``T`` is stored as ``log_temperature = t = log T`` (a parameter, so it lives in ``state_dict``); ``T < 1``
(an under-confident network, e.g. after label smoothing) is allowed.

The fit minimises the mean NLL over all kept voxels without holding the validation logits in memory. Each pass
over the batches accumulates, in float64, the NLL sum and its analytic first and second derivatives with respect
to ``t``; one safeguarded 1-D Newton step on ``t`` follows each pass. With ``s = z·e^{-t}``, ``p = softmax(s)``,
a target distribution ``q`` (one-hot for hard labels) and ``m = Σ_c q_c``, per voxel:

    ℓ = m·logsumexp(s) − Σ_c q_c s_c
    dℓ/dt = Σ_c q_c s_c − m·E_p[s]
    d²ℓ/dt² = −dℓ/dt + m·Var_p[s]

The NLL is convex in ``1/T``, so ``dℓ/dt`` changes sign once: the search keeps a sign bracket inside ``bounds``
and bisects whenever the Newton step leaves it or the curvature is not positive.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TemperatureScaler"]

_WHERE = "TemperatureScaler.fit"


def _check_logits(logits: object, where: str) -> Tensor:
    """Check that ``logits`` is a finite floating tensor ``(N, C, *spatial)`` with ``C >= 2``."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"`logits` of {where} must be a torch.Tensor; got {type(logits).__name__}.")
    if not logits.is_floating_point():
        raise TypeError(f"`logits` of {where} must be a floating tensor; got dtype {logits.dtype}.")
    if logits.ndim < 2 or logits.shape[1] < 2:
        raise ValueError(
            f"`logits` of {where} must have shape (N, C, *spatial) with C >= 2; got {tuple(logits.shape)}."
        )
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).sum())
        raise ValueError(f"`logits` of {where} must be finite; got {bad} NaN/inf value(s).")
    return logits


def _flatten(logits: Tensor, target: object, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Validate one batch and return float64 ``(V, C)`` logits and ``(V, C)`` target weights of the kept voxels."""
    _check_logits(logits, _WHERE)
    if not isinstance(target, Tensor):
        raise TypeError(f"`target` of {_WHERE} must be a torch.Tensor; got {type(target).__name__}.")
    num_classes = logits.shape[1]
    z = logits.detach().movedim(1, -1).reshape(-1, num_classes).to(torch.float64)
    if target.shape == logits.shape:
        if not target.is_floating_point():
            raise TypeError(f"soft `target` of {_WHERE} must be floating; got dtype {target.dtype}.")
        if ignore_index is not None:
            raise ValueError(f"`ignore_index` of {_WHERE} applies to hard targets only; got {ignore_index!r}.")
        q = target.detach().movedim(1, -1).reshape(-1, num_classes).to(torch.float64)
        if not bool(torch.isfinite(q).all()) or bool((q < 0).any()):
            raise ValueError(f"soft `target` of {_WHERE} must be finite and >= 0; got min {float(q.min())!r}.")
        return z, q
    hard_shape = logits.shape[:1] + logits.shape[2:]
    if target.shape != hard_shape:
        raise ValueError(
            f"`target` of {_WHERE} must have shape {tuple(hard_shape)} (hard) or {tuple(logits.shape)} (soft) "
            f"for logits {tuple(logits.shape)}; got {tuple(target.shape)}."
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"hard `target` of {_WHERE} must have an integer dtype; got {target.dtype}.")
    labels = target.detach().reshape(-1).to(device=z.device, dtype=torch.int64)
    if ignore_index is not None:
        keep = labels != ignore_index
        z, labels = z[keep], labels[keep]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels of `target` of {_WHERE} must lie in [0, {num_classes - 1}] (or equal `ignore_index`="
            f"{ignore_index!r}); got values in [{int(labels.min())}, {int(labels.max())}]."
        )
    return z, nn.functional.one_hot(labels, num_classes).to(torch.float64)


def _batch_sums(z: Tensor, q: Tensor, log_temperature: float) -> Tensor:
    """Return ``[Σ ℓ, Σ dℓ/dt, Σ d²ℓ/dt²]`` (float64) over the voxels of one flattened batch at ``t``."""
    s = z * math.exp(-log_temperature)
    m = q.sum(dim=1)
    p = torch.softmax(s, dim=1)
    mean_s = (p * s).sum(dim=1)
    var_s = (p * (s - mean_s[:, None]) ** 2).sum(dim=1)
    qs = (q * s).sum(dim=1)
    nll = m * torch.logsumexp(s, dim=1) - qs
    grad = qs - m * mean_s
    hess = -grad + m * var_s
    return torch.stack([nll.sum(), grad.sum(), hess.sum()])


def _iterate(batches: Iterable[Any]) -> Iterator[tuple[Tensor, object]]:
    """Yield ``(logits, target)`` pairs, checking each element is a pair."""
    for item in batches:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(f"`batches` of {_WHERE} must yield (logits, target) pairs; got {type(item).__name__}.")
        yield item[0], item[1]


def _streamed_pass(batches: Iterable[Any], log_temperature: float, ignore_index: int | None) -> tuple[Tensor, int]:
    """One pass over ``batches``: the summed NLL and its derivatives w.r.t. ``t``, and the number of kept voxels."""
    total: Tensor | None = None
    count = 0
    for logits, target in _iterate(batches):
        z, q = _flatten(logits, target, ignore_index)
        sums = _batch_sums(z, q, log_temperature)
        total = sums if total is None else total + sums.to(total.device)
        count += z.shape[0]
    if total is None:
        raise ValueError(f"`batches` of {_WHERE} must yield at least one (logits, target) pair; got none.")
    if count == 0:
        raise ValueError(f"`batches` of {_WHERE} has no kept voxel (all equal `ignore_index`={ignore_index!r}).")
    return total.cpu(), count


@dataclass
class _Bracket:
    """Interval of ``t`` known to contain the minimiser; an end is 'open' until the bound itself is evaluated."""

    lo: float
    hi: float
    lo_open: bool = True
    hi_open: bool = True

    def update(self, t: float, grad: float) -> None:
        """Shrink the bracket from the sign of ``dℓ/dt`` at ``t``."""
        if grad > 0:
            self.hi, self.hi_open = t, False
        else:
            self.lo, self.lo_open = t, False

    def propose(self, t: float, grad: float, hess: float) -> float:
        """Newton step if it stays inside; else probe the unevaluated bound it points at; else bisect."""
        step = t - grad / hess if hess > 0 else math.nan
        if self.lo < step < self.hi:
            return step
        if grad < 0 and self.hi_open:
            return self.hi
        if grad > 0 and self.lo_open:
            return self.lo
        return 0.5 * (self.lo + self.hi)


def _check_fit_args(batches: object, max_passes: object, tol: object, bounds: object) -> tuple[float, float]:
    """Validate the options of :meth:`TemperatureScaler.fit`; return ``log`` of the bounds."""
    if not isinstance(batches, Iterable):
        raise TypeError(f"`batches` of {_WHERE} must be an iterable of (logits, target); got {type(batches).__name__}.")
    if iter(batches) is batches:
        raise TypeError(
            f"`batches` of {_WHERE} must be re-iterable (a list, tuple or DataLoader), since every optimisation "
            f"step is one pass over it; got a one-shot {type(batches).__name__}. Wrap it, e.g. list(...)."
        )
    if isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 1:
        raise ValueError(f"`max_passes` of {_WHERE} must be an int >= 1; got {max_passes!r}.")
    if not isinstance(tol, int | float) or not tol > 0:
        raise ValueError(f"`tol` of {_WHERE} must be a float > 0; got {tol!r}.")
    ok = isinstance(bounds, tuple | list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
    if not ok or not 0 < bounds[0] < bounds[1] < math.inf:  # type: ignore[index]
        raise ValueError(f"`bounds` of {_WHERE} must be (low, high) with 0 < low < high < inf; got {bounds!r}.")
    return math.log(bounds[0]), math.log(bounds[1])  # type: ignore[index]


class TemperatureScaler(nn.Module):
    """Post-hoc temperature scaling ``softmax(z / T)`` with one learnable ``T = exp(t) > 0``, fitted by streaming.

    ``forward`` maps logits ``(N, C, *spatial)`` (or ``(N, C)``) to ``logits / T``, same shape. :meth:`fit`
    minimises the mean NLL ``(1/V) Σ_v −Σ_c q_vc log softmax(z_v / T)_c`` over all kept voxels ``v`` of a
    re-iterable stream of ``(logits, target)`` batches, one pass per safeguarded Newton step on ``t = log T``
    (see the module docstring for the streamed derivatives). ``T < 1`` is allowed.

    Reference: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017.

    Args:
        temperature: the initial temperature (also the start of :meth:`fit`), > 0.

    Attributes:
        log_temperature: the parameter ``t = log T`` (0-dim), saved in ``state_dict``.
        nll_: mean NLL at the fitted temperature (set by :meth:`fit`).
        n_passes_: passes over the batches used by :meth:`fit`.
        converged_: whether ``|d NLL / dt| <= tol`` (or the bracket collapsed) within ``max_passes``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> z = 3 * torch.randn(4000, 3, generator=g)
        >>> target = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
        >>> batches = [(2 * z[i : i + 1000], target[i : i + 1000]) for i in range(0, 4000, 1000)]
        >>> scaler = TemperatureScaler().fit(batches)
        >>> abs(scaler.temperature_ - 2.0) < 0.15, scaler.converged_
        (True, True)
        >>> scaler(torch.tensor([[2.0, 0.0]])).shape
        torch.Size([1, 2])
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
            raise ValueError(f"`temperature` of TemperatureScaler must be a finite float > 0; got {temperature!r}.")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.nll_: float = math.nan
        self.n_passes_: int = 0
        self.converged_: bool = False

    @property
    def temperature_(self) -> float:
        """The current temperature ``T = exp(log_temperature)`` as a Python float."""
        return math.exp(float(self.log_temperature.detach()))

    def forward(self, logits: Tensor) -> Tensor:
        """Return ``logits / T``, shape unchanged (``(N, C, *spatial)``)."""
        return logits / self.log_temperature.exp().to(logits.dtype)

    def fit(
        self,
        batches: Iterable[Any],
        *,
        ignore_index: int | None = None,
        max_passes: int = 50,
        tol: float = 1e-9,
        bounds: tuple[float, float] = (0.05, 20.0),
    ) -> TemperatureScaler:
        """Fit ``T`` by minimising the mean NLL, streaming over ``batches`` once per Newton step.

        Args:
            batches: re-iterable (list, DataLoader) of ``(logits, target)``; logits ``(N, C, *spatial)`` or
                ``(N, C)``; target hard ``(N, *spatial)`` integer or soft ``(N, C, *spatial)`` float.
            ignore_index: hard-target label whose voxels are left out.
            max_passes: maximum passes over ``batches`` (one Newton step each).
            tol: stop when ``|d mean-NLL / d log T| <= tol``.
            bounds: ``(low, high)`` allowed range of ``T``; reaching a bound emits a ``RuntimeWarning``.

        Returns:
            ``self``, with ``temperature_``, ``nll_``, ``n_passes_`` and ``converged_`` set.

        Raises:
            TypeError: one-shot iterator, non-pair items, non-tensor or wrongly typed logits/target.
            ValueError: empty stream, NaN/inf logits, shape mismatch, labels out of range, bad options.

        Example:
            >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
            >>> TemperatureScaler().fit([(z, torch.tensor([0, 1, 1]))]).temperature_ > 1.0
            True
        """
        lo, hi = _check_fit_args(batches, max_passes, tol, bounds)
        bracket = _Bracket(lo, hi)
        t = min(max(float(self.log_temperature.detach()), lo), hi)
        count0: int | None = None
        self.converged_ = False
        for n_pass in range(1, max_passes + 1):
            sums, count = _streamed_pass(batches, t, ignore_index)
            if count0 is not None and count != count0:
                raise ValueError(f"`batches` of {_WHERE} changed between passes: {count0} then {count} voxels.")
            count0 = count
            nll, grad, hess = (float(v) / count for v in sums)
            self.nll_, self.n_passes_ = nll, n_pass
            at_bound = (t <= lo and grad > 0) or (t >= hi and grad < 0)
            if abs(grad) <= tol or at_bound:
                self.converged_ = True
                break
            bracket.update(t, grad)
            if bracket.hi - bracket.lo <= 1e-13:
                self.converged_ = True
                break
            t = bracket.propose(t, grad, hess)
        self._finish(t, at_bound, bounds, tol)
        return self

    def _finish(self, t: float, at_bound: bool, bounds: tuple[float, float], tol: float) -> None:
        """Store ``t`` in the parameter and warn (never silently) about a bound or a missed tolerance."""
        with torch.no_grad():
            self.log_temperature.fill_(t)
        if at_bound:
            warnings.warn(
                f"{_WHERE}: the NLL minimum lies outside `bounds`={tuple(bounds)!r}; T set to {math.exp(t):.6g}.",
                RuntimeWarning,
                stacklevel=3,
            )
        elif not self.converged_:
            warnings.warn(
                f"{_WHERE}: no convergence to `tol`={tol!r} in {self.n_passes_} passes; T = {math.exp(t):.6g}.",
                RuntimeWarning,
                stacklevel=3,
            )
