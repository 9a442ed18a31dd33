"""Per-structure thresholds with a risk guarantee: conformal risk control (CRC) and Learn then Test (LTT).

Input: the mean per-case loss ``R̂(g)`` of ``n`` exchangeable calibration cases at every level ``t_g`` of the grid
``linspace(0, 1, G)`` (:func:`~softlabels.conformal.risk_curves.case_curves`), one row per structure. The mask of a
new case at the chosen level is ``p >= t̂``.

* **CRC** (Angelopoulos, Bates, Fisch, Lei, Schuster, "Conformal Risk Control", ICLR 2024): for a loss in
  ``[0, B]`` monotone in the level, ``λ̂ = inf{λ : n/(n+1)·R̂(λ) + B/(n+1) ≤ α}`` gives ``E[L_{n+1}(λ̂)] ≤ α``
  (over the calibration and test draw). With ``t = 1 − λ``: for ``"fnr"`` (non-decreasing in ``t``) the *largest*
  qualifying ``t``; for ``"fdr"`` the monotone upper bound (non-increasing in ``t``,
  :func:`~softlabels.conformal.risk_curves.monotone_upper`) and the *smallest* qualifying ``t``. The guarantee
  assumes ``L_i(λ_max) ≤ α`` for every case: the FNR at ``t = 0`` is 0; the FDR at ``t = 1`` is that of the voxels
  with ``p = 1`` exactly (0 unless the probabilities saturate at 1). When no level qualifies this module raises
  instead of returning ``λ_max``.
* **LTT** (Angelopoulos, Bates, Candès, Jordan, Lei, "Learn then Test", 2021; Ann. Appl. Stat. 2025): a
  Hoeffding–Bentkus p-value per level for ``H_t: R(t) > α`` and fixed-sequence testing from the safest level
  (``"fnr"``: ``t = 0`` upwards; ``"fdr"``: ``t = 1`` downwards) give ``P(R(t̂) ≤ α) ≥ 1 − δ`` over the calibration
  draw (i.i.d. cases, losses in [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import xlogy
from scipy.stats import binom
from torch import Tensor
from torchmetrics import Metric

from softlabels._options import look_up_option
from softlabels.conformal.risk_curves import LOSSES, case_curves, monotone_upper, structure_channels, threshold_levels

__all__ = [
    "PROCEDURES",
    "ConformalThresholds",
    "SegmentationRiskControl",
    "crc_index",
    "fit_thresholds",
    "hoeffding_bentkus_pvalue",
    "ltt_index",
]

PROCEDURES: tuple[str, ...] = ("crc", "ltt")
"""How a threshold is chosen: conformal risk control (in expectation) or Learn then Test (with probability 1 − δ).

Example:
    >>> PROCEDURES
    ('crc', 'ltt')
"""

_TOL = 1e-12  # float slack on risks in [0, 1] and on the monotonicity of a mean of monotone curves


def _check_n(n: object, where: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` of {where} must be an int >= 1 (the number of calibration cases); got {n!r}.")
    return int(n)


def _check_level(value: object, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` of {where} must be a float in (0, 1); got {value!r}.")
    return float(value)


def _check_risk(risk: object, where: str, *, ndim: int | None = 2, upper: float = 1.0) -> Tensor:
    """``risk`` as a float64 tensor, finite and in ``[0, upper]`` (up to ``_TOL``, then clamped)."""
    if not isinstance(risk, Tensor | np.ndarray | list | tuple | float | int):
        raise TypeError(f"`risk` of {where} must be a tensor of mean losses; got {type(risk).__name__}.")
    r = torch.as_tensor(risk).detach().to(torch.float64)
    if ndim is not None and (r.ndim != ndim or r.shape[-1] < 2):
        raise ValueError(f"`risk` of {where} must have shape (K, G) with G >= 2 levels; got {tuple(r.shape)}.")
    if r.numel() and not bool(torch.isfinite(r).all()):
        raise ValueError(f"`risk` of {where} must be finite; got NaN/inf values.")
    if r.numel() and (float(r.min()) < -_TOL or float(r.max()) > upper + _TOL):
        raise ValueError(
            f"`risk` of {where} must lie in [0, {upper:g}]; got [{float(r.min()):.6g}, {float(r.max()):.6g}]."
        )
    return r.clamp(0.0, upper)


def _check_monotone(r: Tensor, loss: str, where: str) -> None:
    """CRC needs ``R̂`` non-decreasing in the level (fnr) or non-increasing (fdr, its monotone upper bound)."""
    step = r.diff(dim=-1) if loss == "fnr" else -r.diff(dim=-1)
    if step.numel() and float(step.min()) < -_TOL:
        k = int((step.min(-1).values < -_TOL).nonzero()[0])
        way = "non-decreasing" if loss == "fnr" else "non-increasing (use monotone_upper)"
        raise ValueError(f"`risk` of {where} must be {way} in the level for loss {loss!r}; structure {k} is not.")


def hoeffding_bentkus_pvalue(risk: Tensor, n: int, alpha: float) -> Tensor:
    r"""Hoeffding–Bentkus p-value of ``H: R > α`` from the empirical risk ``R̂`` of ``n`` i.i.d. losses in [0, 1].

    .. math::

        p = \min\Big(e^{-n\, h(\min(\hat R, \alpha), \alpha)},\;
        e\, P\big(\mathrm{Bin}(n, \alpha) \le \lceil n \hat R \rceil\big)\Big), \quad
        h(a, b) = a \log\tfrac{a}{b} + (1 - a) \log\tfrac{1 - a}{1 - b}

    (``0 log 0 = 0``). ``⌈n R̂⌉`` is taken of ``n R̂ − 1e-9`` so that float rounding of a count (``R̂ = k/n``) does not
    add one. Reference: Angelopoulos, Bates, Candès, Jordan, Lei, "Learn then Test", 2021 (Ann. Appl. Stat. 2025).

    Args:
        risk: empirical risks in [0, 1], any shape.
        n: number of calibration cases.
        alpha: the risk level, in (0, 1).

    Returns:
        float64 p-values of the shape and device of ``risk``; non-decreasing in ``R̂``.

    Example:
        >>> p = hoeffding_bentkus_pvalue(torch.tensor([0.0, 0.05, 0.2], dtype=torch.float64), 100, 0.1)
        >>> [f"{v:.3g}" for v in p.tolist()]  # (1 − α)^n; e · P(Bin(100, 0.1) ≤ 5); 1
        ['2.66e-05', '0.157', '1']
    """
    where = "hoeffding_bentkus_pvalue"
    n, alpha = _check_n(n, where), _check_level(alpha, "alpha", where)
    r = _check_risk(risk, where, ndim=None)
    x = r.cpu().numpy()
    a = np.minimum(x, alpha)
    h = xlogy(a, a / alpha) + xlogy(1.0 - a, (1.0 - a) / (1.0 - alpha))
    bentkus = math.e * binom.cdf(np.ceil(n * x - 1e-9), n, alpha)
    p = np.minimum(np.exp(-n * h), bentkus)
    return torch.as_tensor(p, dtype=torch.float64).to(r.device)


def crc_index(risk: Tensor, n: int, alpha: float, *, loss: str = "fnr", bound: float = 1.0) -> Tensor:
    r"""Conformal risk control: per structure, the index of the chosen level on the grid.

    .. math::

        \hat g = \max\{g : \tfrac{n}{n+1} \hat R(g) + \tfrac{B}{n+1} \le \alpha\} \ (\text{fnr}),
        \qquad \hat g = \min\{\cdots\} \ (\text{fdr})

    Reference: Angelopoulos, Bates, Fisch, Lei, Schuster, "Conformal Risk Control", ICLR 2024 (``λ̂`` of their
    Eq. (4) with ``t = 1 − λ``).

    Args:
        risk: ``(K, G)`` mean per-case loss of ``n`` calibration cases at each level (for ``"fdr"`` the mean of the
            monotone upper bounds); non-decreasing (fnr) / non-increasing (fdr) in the level.
        n: number of calibration cases.
        alpha: the risk level, in (0, 1).
        loss: ``"fnr"`` or ``"fdr"``.
        bound: ``B``, the largest value a loss can take (1 for FNR/FDR).

    Returns:
        ``(K,)`` int64 level indices.

    Raises:
        ValueError: bad arguments, a non-monotone ``risk``, or a structure where no level qualifies (``B/(n+1) > α``
            or a risk that never gets low enough).

    Example:
        >>> risk = torch.tensor([[0.0, 0.02, 0.05, 0.095, 0.2]], dtype=torch.float64)
        >>> crc_index(risk, 99, 0.1).tolist()  # 0.99 · 0.05 + 0.01 = 0.0595 ≤ 0.1 < 0.99 · 0.095 + 0.01
        [2]
    """
    where = "crc_index"
    look_up_option("loss", loss, LOSSES, where=where)
    n, alpha = _check_n(n, where), _check_level(alpha, "alpha", where)
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not 0.0 < bound < math.inf:
        raise ValueError(f"`bound` of {where} must be a finite float > 0; got {bound!r}.")
    r = _check_risk(risk, where, upper=float(bound))
    _check_monotone(r, loss, where)
    ok = n / (n + 1) * r + bound / (n + 1) <= alpha
    found = ok.any(-1)
    if not bool(found.all()):
        k = int((~found).nonzero()[0])
        raise ValueError(
            f"no level of crc_index controls the risk for structure {k} at `alpha`={alpha!r} with `n`={n} "
            f"(needs B/(n+1) <= alpha and a level with n/(n+1)·R̂ + B/(n+1) <= alpha)."
        )
    first = ok.to(torch.int8).argmax(-1)
    last = ok.shape[-1] - 1 - ok.flip(-1).to(torch.int8).argmax(-1)
    return (last if loss == "fnr" else first).to(torch.int64)


def ltt_index(risk: Tensor, n: int, alpha: float, delta: float, *, loss: str = "fnr") -> Tensor:
    """Learn then Test: per structure, the last level rejected by fixed-sequence testing from the safest level.

    Hoeffding–Bentkus p-values (:func:`hoeffding_bentkus_pvalue`) of ``H_g: R(g) > α`` are tested in the order
    ``g = 0, 1, …`` (fnr) or ``g = G−1, G−2, …`` (fdr) until the first ``p > δ``; then ``P(R(ĝ) ≤ α) ≥ 1 − δ``.

    Reference: Angelopoulos, Bates, Candès, Jordan, Lei, "Learn then Test", 2021 (Ann. Appl. Stat. 2025).

    Args:
        risk: ``(K, G)`` mean per-case loss (in [0, 1]) of ``n`` calibration cases at each level.
        n: number of calibration cases.
        alpha: the risk level, in (0, 1).
        delta: the error probability, in (0, 1).
        loss: ``"fnr"`` or ``"fdr"`` (which end of the grid is safest).

    Returns:
        ``(K,)`` int64 level indices.

    Raises:
        ValueError: bad arguments, or a structure whose safest level is not rejected (too few cases for α, δ).

    Example:
        >>> risk = torch.tensor([[0.0, 0.02, 0.05, 0.09, 0.2]])
        >>> ltt_index(risk, 100, 0.1, 0.1).tolist()
        [1]
    """
    where = "ltt_index"
    look_up_option("loss", loss, LOSSES, where=where)
    n, alpha = _check_n(n, where), _check_level(alpha, "alpha", where)
    delta = _check_level(delta, "delta", where)
    r = _check_risk(risk, where)
    p = hoeffding_bentkus_pvalue(r, n, alpha)
    ordered = p if loss == "fnr" else p.flip(-1)
    run = (ordered <= delta).to(torch.int64).cumprod(-1).sum(-1)  # consecutive rejections from the safest level
    if bool((run == 0).any()):
        k = int((run == 0).nonzero()[0])
        raise ValueError(
            f"the safest level of ltt_index is not rejected for structure {k} with `n`={n}, `alpha`={alpha!r}, "
            f"`delta`={delta!r}: more calibration cases are needed."
        )
    return (run - 1 if loss == "fnr" else r.shape[-1] - run).to(torch.int64)


def _exact_at_least(x: Tensor, t: float) -> Tensor:
    """``x >= t`` decided as in float64 (``x`` promoted), without a float64 copy of ``x``.

    For a float32/16 ``x`` the comparison uses the smallest value of ``x``'s dtype that is ``>= t``.
    """
    if x.dtype == torch.float64:
        return x >= t
    cut = torch.tensor(t, dtype=x.dtype, device=x.device)
    if float(cut) < t:
        cut = torch.nextafter(cut, torch.tensor(math.inf, dtype=x.dtype, device=x.device))
    return x >= cut


def _as_tuple(d: dict[str, Any], key: str, kind: type) -> tuple[Any, ...]:
    return tuple(kind(v) for v in d[key])


@dataclass(frozen=True)
class ConformalThresholds:
    """Fitted per-structure thresholds ``t̂`` (mask ``p >= t̂``) with their guarantee; JSON-able (:meth:`to_dict`).

    Attributes:
        thresholds: ``t̂`` per structure (a level of the grid).
        structures: structure names (class names, or the channel numbers as strings).
        channels: the probability channel of each structure.
        loss: ``"fnr"`` or ``"fdr"``.
        procedure: ``"crc"`` (``E[risk] ≤ α``) or ``"ltt"`` (``P(risk ≤ α) ≥ 1 − δ``).
        alpha: the risk level.
        delta: LTT's error probability (``None`` for CRC).
        n_calibration: number of calibration cases.
        num_levels: size ``G`` of the grid of levels.
        calibration_risk: the mean calibration loss at ``t̂`` per structure.
        reference: which truth the risk was measured against (free text: "label", "each", "union", "majority",
            "soft", ...).
        version: format version.

    Example:
        >>> fitted = fit_thresholds(torch.tensor([[0.0, 0.05, 0.3]]), 99, alpha=0.1, channels=(1,))
        >>> fitted.thresholds, fitted.structures
        ((0.5,), ('1',))
        >>> probs = torch.tensor([[[0.7, 0.4], [0.3, 0.6]]])  # (N=1, C=2, 2 voxels)
        >>> fitted.masks(probs).tolist()
        [[[False, True]]]
        >>> ConformalThresholds.from_dict(fitted.to_dict()) == fitted
        True
    """

    thresholds: tuple[float, ...]
    structures: tuple[str, ...]
    channels: tuple[int, ...]
    loss: str
    procedure: str
    alpha: float
    delta: float | None
    n_calibration: int
    num_levels: int
    calibration_risk: tuple[float, ...]
    reference: str
    version: int = 1

    KIND: ClassVar[str] = "segmentation_thresholds"

    def __post_init__(self) -> None:
        where = "ConformalThresholds"
        look_up_option("loss", self.loss, LOSSES, where=where)
        look_up_option("procedure", self.procedure, PROCEDURES, where=where)
        k = len(self.thresholds)
        lengths = {len(self.structures), len(self.channels), len(self.calibration_risk)}
        if k == 0 or lengths != {k}:
            raise ValueError(
                f"`thresholds`, `structures`, `channels` and `calibration_risk` of {where} must have one entry per "
                f"structure (>= 1); got lengths {k}, {len(self.structures)}, {len(self.channels)}, "
                f"{len(self.calibration_risk)}."
            )
        if self.version != 1:
            raise ValueError(f"`version` of {where} must be 1 (this release); got {self.version!r}.")
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds) or any(c < 0 for c in self.channels):
            raise ValueError(
                f"{where} needs thresholds in [0, 1] and channels >= 0; got {self.thresholds}, {self.channels}."
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (tuples as lists) plus ``"kind": "segmentation_thresholds"``.

        Example:
            >>> fit_thresholds(torch.tensor([[0.0, 0.3]]), 99, alpha=0.1).to_dict()["kind"]
            'segmentation_thresholds'
        """
        out = {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}
        return {**out, "kind": self.KIND}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConformalThresholds:
        """Rebuild from :meth:`to_dict`'s output.

        Raises:
            ValueError: not a dict, a wrong ``"kind"``, or missing / unknown keys.

        Example:
            >>> fitted = fit_thresholds(torch.tensor([[0.0, 0.3]]), 99, alpha=0.1)
            >>> ConformalThresholds.from_dict(fitted.to_dict()).thresholds
            (0.0,)
        """
        if not isinstance(d, dict) or d.get("kind") != cls.KIND:
            got = d.get("kind") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"ConformalThresholds.from_dict needs a dict with kind {cls.KIND!r}; got {got!r}.")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(d) - {"version"})
        unknown = sorted(set(d) - names - {"kind"})
        if missing or unknown:
            raise ValueError(f"ConformalThresholds.from_dict: missing keys {missing}, unknown keys {unknown}.")
        delta = d["delta"]
        return cls(
            thresholds=_as_tuple(d, "thresholds", float),
            structures=_as_tuple(d, "structures", str),
            channels=_as_tuple(d, "channels", int),
            loss=str(d["loss"]),
            procedure=str(d["procedure"]),
            alpha=float(d["alpha"]),
            delta=None if delta is None else float(delta),
            n_calibration=int(d["n_calibration"]),
            num_levels=int(d["num_levels"]),
            calibration_risk=_as_tuple(d, "calibration_risk", float),
            reference=str(d["reference"]),
            version=int(d.get("version", 1)),
        )

    def masks(self, probs: Tensor) -> Tensor:
        """The masks ``p_c >= t̂_c`` of every structure: probs ``(N, C, *spatial)`` → bool ``(N, K, *spatial)``.

        The comparison is exact as in float64 (:func:`case_curves` counts a voxel at ``t`` iff ``p >= t``).

        Example:
            >>> fitted = fit_thresholds(torch.tensor([[0.0, 0.05, 0.3]]), 99, alpha=0.1, channels=(0,))
            >>> fitted.masks(torch.tensor([[[0.5, 0.49]]])).tolist()
            [[[True, False]]]
        """
        if not isinstance(probs, Tensor) or not probs.is_floating_point() or probs.ndim < 2:
            got = f"{probs.dtype} {tuple(probs.shape)}" if isinstance(probs, Tensor) else type(probs).__name__
            raise ValueError(
                f"`probs` of ConformalThresholds.masks must be a floating tensor (N, C, *spatial); got {got}."
            )
        if probs.shape[1] <= max(self.channels):
            raise ValueError(
                f"`probs` of ConformalThresholds.masks must have a channel {max(self.channels)}; "
                f"got {probs.shape[1]} channel(s)."
            )
        return torch.stack(
            [_exact_at_least(probs[:, c], t) for c, t in zip(self.channels, self.thresholds, strict=True)], 1
        )


def _names(
    k: int, structures: tuple[str, ...] | list[str] | None, channels: tuple[int, ...] | list[int] | None, where: str
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Default and check the structure names and channels (one per row of ``risk``)."""
    chans = tuple(range(1, k + 1)) if channels is None else tuple(int(c) for c in channels)
    names = tuple(str(c) for c in chans) if structures is None else tuple(str(s) for s in structures)
    if len(chans) != k or len(names) != k:
        raise ValueError(
            f"`structures` and `channels` of {where} must have one entry per structure ({k}); "
            f"got {len(names)} and {len(chans)}."
        )
    return names, chans


def fit_thresholds(
    risk: Tensor,
    n: int,
    *,
    alpha: float,
    loss: str = "fnr",
    procedure: str = "crc",
    delta: float = 0.1,
    structures: tuple[str, ...] | list[str] | None = None,
    channels: tuple[int, ...] | list[int] | None = None,
    reference: str = "label",
) -> ConformalThresholds:
    """Choose per structure the threshold with a risk guarantee from the mean calibration risk curves.

    ``procedure="crc"``: :func:`crc_index` (``E[risk] ≤ α``); ``"ltt"``: :func:`ltt_index` (``P(risk ≤ α) ≥ 1 − δ``).
    The levels are :func:`~softlabels.conformal.risk_curves.threshold_levels` ``(G)``.

    Args:
        risk: ``(K, G)`` mean per-case loss of ``n`` calibration cases at each level (for ``"fdr"`` the mean of the
            monotone upper bounds, as :class:`SegmentationRiskControl` keeps).
        n: number of calibration cases.
        alpha: the risk level, in (0, 1).
        loss: ``"fnr"`` or ``"fdr"``.
        procedure: ``"crc"`` or ``"ltt"``.
        delta: LTT's error probability, in (0, 1) (not used by CRC, which records ``None``).
        structures: names, default the channel numbers as strings.
        channels: the probability channel of each structure; default ``1..K`` (background channel 0 excluded;
            pass ``(0,)`` for a one-channel binary foreground probability).
        reference: recorded description of the truth the risk was measured against.

    Returns:
        The fitted :class:`ConformalThresholds`.

    Example:
        >>> risk = torch.tensor([[0.0, 0.02, 0.05, 0.095, 0.2]], dtype=torch.float64)
        >>> fit_thresholds(risk, 99, alpha=0.1).thresholds
        (0.5,)
        >>> fit_thresholds(risk, 100, alpha=0.1, procedure="ltt").thresholds
        (0.25,)
    """
    where = "fit_thresholds"
    look_up_option("procedure", procedure, PROCEDURES, where=where)
    r = _check_risk(risk, where)
    n = _check_n(n, where)
    names, chans = _names(r.shape[0], structures, channels, where)
    if procedure == "crc":
        index, kept_delta = crc_index(r, n, alpha, loss=loss), None
    else:
        index, kept_delta = ltt_index(r, n, alpha, delta, loss=loss), float(delta)
    levels = threshold_levels(r.shape[-1])
    return ConformalThresholds(
        thresholds=tuple(levels[index.cpu()].tolist()),
        structures=names,
        channels=chans,
        loss=loss,
        procedure=procedure,
        alpha=float(alpha),
        delta=kept_delta,
        n_calibration=n,
        num_levels=r.shape[-1],
        calibration_risk=tuple(r.gather(-1, index[:, None]).squeeze(-1).tolist()),
        reference=str(reference),
    )


def _add_in_order(total: Tensor, rows: Tensor) -> Tensor:
    """``total + rows[0] + rows[1] + …``, one case at a time (a sequential cumsum on the CPU).

    The sums then do not depend on how the cases were cut into batches.
    """
    rows = rows.to(total.device)
    return torch.cat([total.unsqueeze(0), rows]).cumsum(0)[-1]


class SegmentationRiskControl(Metric):
    """Streaming, exact fit of per-structure thresholds with a risk guarantee over calibration batches.

    ``update(probs, truth)`` adds the per-case curves of :func:`~softlabels.conformal.risk_curves.case_curves`
    summed over the batch (for ``"fdr"`` their monotone upper bounds); :meth:`compute` gives the mean risk and mask
    volume at every level; :meth:`fit` applies :func:`fit_thresholds`. The state has a fixed size ``O(K·G)`` whatever
    the number and size of the cases, and is summed across processes.

    Args:
        num_classes: channels ``C`` of ``probs`` (1: a binary foreground probability).
        loss: ``"fnr"`` or ``"fdr"``.
        num_levels: size ``G`` of the grid of levels.
        include_background: count channel 0 as a structure.
        kwargs: passed to ``torchmetrics.Metric``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> probs = torch.rand(40, 1, 8, 8, generator=g)
        >>> truth = torch.bernoulli(probs, generator=g)
        >>> metric = SegmentationRiskControl(1, num_levels=101)
        >>> for i in range(0, 40, 10):
        ...     metric.update(probs[i : i + 10], truth[i : i + 10])
        >>> metric.compute()["risk"].shape, int(metric.compute()["cases"])
        (torch.Size([1, 101]), 40)
        >>> fitted = metric.fit(0.1)
        >>> fitted.channels, 0.0 < fitted.thresholds[0] < 0.5, fitted.calibration_risk[0] <= 0.1
        ((0,), True, True)
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False
    loss_sum: Tensor
    volume_sum: Tensor
    cases: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        loss: str = "fnr",
        num_levels: int = 1001,
        include_background: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = type(self).__name__
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` of {where} must be an int >= 1; got {num_classes!r}.")
        if not isinstance(include_background, bool):
            raise TypeError(f"`include_background` of {where} must be a bool; got {type(include_background).__name__}.")
        self.loss = look_up_option("loss", loss, LOSSES, where=where)
        self.num_classes, self.num_levels, self.include_background = num_classes, num_levels, include_background
        self.channels = structure_channels(num_classes, include_background)
        shape = (len(self.channels), threshold_levels(num_levels).numel())
        self.add_state("loss_sum", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("volume_sum", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("cases", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, probs: Tensor, truth: Tensor) -> None:
        """Add a batch: ``probs (N, C, *spatial)``, ``truth (N, C, *spatial)`` or ``(N, R, C, *spatial)`` in [0, 1]."""
        if isinstance(probs, Tensor) and probs.ndim >= 2 and probs.shape[1] != self.num_classes:
            raise ValueError(
                f"`probs` of {type(self).__name__}.update must have {self.num_classes} channel(s); "
                f"got shape {tuple(probs.shape)}."
            )
        curves = case_curves(
            probs, truth, loss=self.loss, num_levels=self.num_levels, include_background=self.include_background
        )
        losses = monotone_upper(curves["loss"], loss=self.loss)
        self.loss_sum = _add_in_order(self.loss_sum, losses)
        self.volume_sum = _add_in_order(self.volume_sum, curves["volume"])
        self.cases += losses.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """``"risk"`` ``(K, G)`` mean loss, ``"volume"`` ``(K, G)`` mean mask volume (voxels), ``"cases"`` ``n``."""
        n = int(self.cases)
        if n == 0:
            raise ValueError(f"{type(self).__name__}.compute needs at least one calibration case; got 0.")
        return {"risk": self.loss_sum / n, "volume": self.volume_sum / n, "cases": self.cases.clone()}

    def fit(
        self,
        alpha: float,
        *,
        procedure: str = "crc",
        delta: float = 0.1,
        structures: tuple[str, ...] | list[str] | None = None,
        reference: str = "label",
    ) -> ConformalThresholds:
        """The thresholds of :func:`fit_thresholds` from the accumulated (synced) risk curves.

        Example:
            >>> fg, y = torch.tensor([0.95, 0.2]).expand(30, 2), torch.tensor([1.0, 0.0]).expand(30, 2)
            >>> metric = SegmentationRiskControl(2, num_levels=11)
            >>> metric.update(torch.stack([1 - fg, fg], 1), torch.stack([1 - y, y], 1))  # (N=30, C=2, 2 voxels)
            >>> fitted = metric.fit(0.1, structures=("tumour",))
            >>> fitted.structures, fitted.channels, fitted.thresholds  # the largest t keeping the 0.95 voxel
            (('tumour',), (1,), (0.9,))
        """
        out = self.compute()
        return fit_thresholds(
            out["risk"],
            int(out["cases"]),
            alpha=alpha,
            loss=self.loss,
            procedure=procedure,
            delta=delta,
            structures=structures,
            channels=self.channels,
            reference=reference,
        )
