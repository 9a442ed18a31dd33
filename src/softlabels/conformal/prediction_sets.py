"""Conformal prediction sets for classification: LAC, APS and RAPS, marginal or class-conditional (Mondrian).

Split conformal prediction: a non-conformity score ``s(x, y)`` for every candidate class, the conformal quantile
``q̂`` of the true classes' scores on ``n`` calibration samples, and the set ``{y : s(x, y) ≤ q̂}``. For exchangeable
samples ``P(y ∈ C(x)) ≥ 1 − α``, and ``≤ 1 − α + 1/(n+1)`` when the scores have no ties. Mondrian sets take one
``q̂_y`` per class from the calibration samples of that class, so the coverage holds per class.

Scores (``π`` the class probabilities of a sample, ``rank(y)`` its rank in descending ``π``, 1 = the most
probable, ties broken by the lower class index):

* ``"lac"``: ``1 − π_y`` (Sadinle, Lei, Wasserman, JASA 2019): the smallest sets on average.
* ``"aps"``: ``Σ_{j ranked above y} π_j + u·π_y`` (Romano, Sesia, Candès, NeurIPS 2020), ``u ~ U(0, 1)`` per
  sample when randomized, else ``u = 1``; non-randomized sets are then prefixes of the descending order (possibly
  empty: the most probable class is left out when ``π_(1) > q̂``).
* ``"raps"``: ``aps + λ_reg · max(0, rank(y) − k_reg)`` (Angelopoulos, Bates, Malik, Jordan, ICLR 2021).

Coverage: Vovk, Gammerman, Shafer, "Algorithmic Learning in a Random World", 2005 (also for Mondrian).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor

from softlabels._checks import check_distribution
from softlabels._options import look_up_option

__all__ = [
    "SCORE_TOLERANCE",
    "SET_METHODS",
    "ConformalSets",
    "class_coverage",
    "class_scores",
    "conformal_quantile",
    "coverage",
    "fit_prediction_sets",
    "set_sizes",
]

SET_METHODS: tuple[str, ...] = ("lac", "aps", "raps")
"""The non-conformity scores of :func:`class_scores`.

Example:
    >>> SET_METHODS
    ('lac', 'aps', 'raps')
"""
SCORE_TOLERANCE = 1e-12
"""Scores within this of ``q̂`` count as ``≤ q̂`` (rounding of APS's cumulative sums; see ConformalSets.predict).

Example:
    >>> 0.9999999999999999 + SCORE_TOLERANCE >= 1.0000000000000002
    True
"""


def _check_probs(probs: object, where: str) -> Tensor:
    if not isinstance(probs, Tensor) or not probs.is_floating_point() or probs.ndim != 2:
        got = f"{probs.dtype} {tuple(probs.shape)}" if isinstance(probs, Tensor) else type(probs).__name__
        raise ValueError(f"`probs` of {where} must be a floating tensor (N, C); got {got}.")
    check_distribution(probs, "probs", where)
    return probs


def _check_score_options(method: str, randomized: bool, k_reg: int, lambda_reg: float, where: str) -> None:
    look_up_option("method", method, SET_METHODS, where=where)
    if not isinstance(randomized, bool):
        raise TypeError(f"`randomized` of {where} must be a bool; got {type(randomized).__name__}.")
    if randomized and method == "lac":
        raise ValueError(f"`randomized` of {where} applies to 'aps' and 'raps' only; got method 'lac'.")
    if isinstance(k_reg, bool) or not isinstance(k_reg, int) or k_reg < 0:
        raise ValueError(f"`k_reg` of {where} must be an int >= 0; got {k_reg!r}.")
    if isinstance(lambda_reg, bool) or not isinstance(lambda_reg, int | float) or not 0.0 <= lambda_reg < math.inf:
        raise ValueError(f"`lambda_reg` of {where} must be a finite float >= 0; got {lambda_reg!r}.")
    if lambda_reg > 0 and method != "raps":
        raise ValueError(f"`lambda_reg` of {where} applies to 'raps' only; got {lambda_reg!r} with {method!r}.")


def class_scores(
    probs: Tensor,
    *,
    method: str = "lac",
    randomized: bool = False,
    k_reg: int = 1,
    lambda_reg: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The non-conformity score of every candidate class of every sample (see the module docstring).

    .. math::

        s_{\text{lac}}(x, y) = 1 - \pi_y, \quad s_{\text{aps}}(x, y) = \sum_{j:\,\mathrm{rank}(j) <
        \mathrm{rank}(y)} \pi_j + u\,\pi_y, \quad s_{\text{raps}} = s_{\text{aps}} + \lambda_{reg}
        \max(0, \mathrm{rank}(y) - k_{reg})

    References: Sadinle, Lei, Wasserman, JASA 2019 (LAC); Romano, Sesia, Candès, NeurIPS 2020 (APS); Angelopoulos,
    Bates, Malik, Jordan, ICLR 2021 (RAPS).

    Args:
        probs: class probabilities ``(N, C)`` (rows sum to 1).
        method: ``"lac"``, ``"aps"`` or ``"raps"``.
        randomized: draw ``u ~ U(0, 1)`` per sample (the same for all its classes); else ``u = 1`` (aps/raps only).
        k_reg: RAPS: ranks up to ``k_reg`` are not penalised.
        lambda_reg: RAPS: the penalty per rank beyond ``k_reg`` (> 0 for raps only).
        generator: the random source of ``u`` (on the device of ``probs``).

    Returns:
        float64 ``(N, C)`` scores on the device of ``probs``.

    Example:
        >>> probs = torch.tensor([[0.5, 0.25, 0.25]])  # class 1 ranks above class 2 (lower index)
        >>> class_scores(probs, method="lac").tolist()
        [[0.5, 0.75, 0.75]]
        >>> class_scores(probs, method="aps").tolist()
        [[0.5, 0.75, 1.0]]
        >>> class_scores(probs, method="raps", lambda_reg=0.5).tolist()  # ranks 1, 2, 3; k_reg = 1
        [[0.5, 1.25, 2.0]]
    """
    where = "class_scores"
    _check_score_options(method, randomized, k_reg, lambda_reg, where)
    p = _check_probs(probs, where).detach().to(torch.float64)
    if method == "lac":
        return 1.0 - p
    ordered, order = torch.sort(p, dim=1, descending=True, stable=True)  # ties: the lower class index first
    inclusive = ordered.cumsum(1)
    if randomized:
        u = torch.rand(p.shape[0], 1, generator=generator, dtype=torch.float64, device=p.device)
        above = torch.cat([torch.zeros_like(inclusive[:, :1]), inclusive[:, :-1]], 1)  # mass ranked strictly above
        sorted_scores = above + u * ordered
    else:
        sorted_scores = inclusive  # u = 1: non-decreasing along the order, so the sets are prefixes
    if method == "raps":
        rank = torch.arange(1, p.shape[1] + 1, dtype=torch.float64, device=p.device)
        sorted_scores = sorted_scores + lambda_reg * (rank - k_reg).clamp_min(0.0)
    return torch.empty_like(p).scatter_(1, order, sorted_scores)


def conformal_quantile(scores: Tensor, alpha: float) -> float:
    """The conformal quantile: the ``⌈(n+1)(1−α)⌉``-th smallest of ``n`` scores, ``+inf`` when that rank is ``> n``.

    ``(n+1)(1−α)`` is rounded up after removing a ``1e-9`` relative float slack (``(9+1)·(1−0.1)`` is 9, not 10).

    Args:
        scores: ``(n,)`` calibration scores (of the true classes); ``n = 0`` gives ``+inf``.
        alpha: the miscoverage level, in (0, 1).

    Returns:
        ``q̂`` as a float.

    Example:
        >>> conformal_quantile(torch.arange(1.0, 10.0), 0.1)  # rank ⌈10 · 0.9⌉ = 9 of 9
        9.0
        >>> conformal_quantile(torch.arange(1.0, 10.0), 0.05)  # rank 10 > 9
        inf
    """
    where = "conformal_quantile"
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` of {where} must be a float in (0, 1); got {alpha!r}.")
    if not isinstance(scores, Tensor) or scores.ndim != 1:
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"`scores` of {where} must be a 1-D tensor; got {got}.")
    if scores.numel() and not bool(torch.isfinite(scores).all()):
        raise ValueError(f"`scores` of {where} must be finite; got NaN/inf values.")
    n = scores.numel()
    target = (n + 1) * (1.0 - alpha)
    rank = math.ceil(target - 1e-9 * max(1.0, target))
    if rank > n:
        return math.inf
    return float(torch.kthvalue(scores.detach().double().cpu(), max(rank, 1)).values)


def _check_labels(labels: object, n: int, num_classes: int, where: str) -> Tensor:
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool or labels.ndim != 1:
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"`labels` of {where} must be a 1-D integer tensor (N,); got {got}.")
    if labels.shape[0] != n:
        raise ValueError(f"`labels` of {where} must have {n} entries (one per sample); got {labels.shape[0]}.")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"`labels` of {where} must lie in [0, {num_classes - 1}]; got [{int(labels.min())}, {int(labels.max())}]."
        )
    return labels.to(torch.int64)


def _quantile_from_json(v: object) -> float:
    return math.inf if v is None else float(v)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ConformalSets:
    """Fitted conformal prediction sets: the score and its quantile(s); JSON-able (:meth:`to_dict`).

    ``y ∈ C(x) ⟺ class_scores(x)[y] ≤ q̂`` (Mondrian: ``≤ q̂_y``). A quantile ``+inf`` (too few calibration samples
    of a class for ``α``) includes the class always; :meth:`to_dict` writes it as ``None`` (strict JSON).

    Attributes:
        method: ``"lac"``, ``"aps"`` or ``"raps"``.
        alpha: the miscoverage level.
        quantiles: ``(q̂,)`` (marginal) or one ``q̂_y`` per class (Mondrian).
        mondrian: class-conditional quantiles.
        randomized: aps/raps with ``u ~ U(0, 1)``.
        k_reg: RAPS rank without penalty.
        lambda_reg: RAPS penalty per rank.
        n_calibration: number of calibration samples.
        class_names: optional class names.
        version: format version.

    Example:
        >>> rows = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]]
        >>> probs = torch.tensor(rows, dtype=torch.float64)
        >>> sets = fit_prediction_sets(probs, torch.tensor([0, 1, 2, 1]), method="lac", alpha=0.2)
        >>> sets.quantiles
        (0.6,)
        >>> sets.predict(torch.tensor([[0.5, 0.45, 0.05]])).tolist()
        [[True, True, False]]
        >>> ConformalSets.from_dict(sets.to_dict()) == sets
        True
    """

    method: str
    alpha: float
    quantiles: tuple[float, ...]
    mondrian: bool
    randomized: bool
    k_reg: int
    lambda_reg: float
    n_calibration: int
    class_names: tuple[str, ...] | None
    version: int = 1

    KIND: ClassVar[str] = "classification_sets"

    def __post_init__(self) -> None:
        where = "ConformalSets"
        _check_score_options(self.method, self.randomized, self.k_reg, self.lambda_reg, where)
        if self.version != 1:
            raise ValueError(f"`version` of {where} must be 1 (this release); got {self.version!r}.")
        if not self.quantiles or (not self.mondrian and len(self.quantiles) != 1):
            raise ValueError(
                f"`quantiles` of {where} must hold one value (marginal) or one per class; got {self.quantiles}."
            )
        if self.class_names is not None and self.mondrian and len(self.class_names) != len(self.quantiles):
            raise ValueError(
                f"`class_names` of {where} must name the {len(self.quantiles)} classes; got {len(self.class_names)}."
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (``+inf`` quantiles as ``None``) plus ``"kind": "classification_sets"``.

        Example:
            >>> ConformalSets("lac", 0.1, (math.inf,), False, False, 1, 0.0, 5, None).to_dict()["quantiles"]
            [None]
        """
        out = {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}
        out["quantiles"] = [None if math.isinf(q) else q for q in self.quantiles]
        return {**out, "kind": self.KIND}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConformalSets:
        """Rebuild from :meth:`to_dict`'s output.

        Raises:
            ValueError: not a dict, a wrong ``"kind"``, or missing / unknown keys.

        Example:
            >>> d = ConformalSets("aps", 0.1, (0.9, math.inf), True, False, 1, 0.0, 50, None).to_dict()
            >>> ConformalSets.from_dict(d).quantiles
            (0.9, inf)
        """
        if not isinstance(d, dict) or d.get("kind") != cls.KIND:
            got = d.get("kind") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"ConformalSets.from_dict needs a dict with kind {cls.KIND!r}; got {got!r}.")
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(d) - {"version"})
        unknown = sorted(set(d) - names - {"kind"})
        if missing or unknown:
            raise ValueError(f"ConformalSets.from_dict: missing keys {missing}, unknown keys {unknown}.")
        names_value = d["class_names"]
        return cls(
            method=str(d["method"]),
            alpha=float(d["alpha"]),
            quantiles=tuple(_quantile_from_json(q) for q in d["quantiles"]),
            mondrian=bool(d["mondrian"]),
            randomized=bool(d["randomized"]),
            k_reg=int(d["k_reg"]),
            lambda_reg=float(d["lambda_reg"]),
            n_calibration=int(d["n_calibration"]),
            class_names=None if names_value is None else tuple(str(c) for c in names_value),
            version=int(d.get("version", 1)),
        )

    def predict(self, probs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """The prediction sets: probs ``(N, C)`` → bool ``(N, C)``, ``True`` for the classes in the set.

        A class is in the set when its score is ``≤ q̂ +`` :data:`SCORE_TOLERANCE`: APS sums probabilities in rank order,
        so a class ranked last scores 1 up to rounding (0.9999999999999999 or 1.0000000000000002) and must not drop out
        of a set whose ``q̂`` is that sum. Non-randomised APS/RAPS give an empty set when the top class alone scores
        above ``q̂`` (valid, and rare at small α; MAPIE's ``include_last_label=False`` adds the top class back).

        Args:
            probs: class probabilities ``(N, C)``.
            generator: the random source of ``u`` when randomized.

        Example:
            >>> sets = ConformalSets("aps", 0.1, (0.85,), False, False, 1, 0.0, 100, None)
            >>> sets.predict(torch.tensor([[0.6, 0.1, 0.3], [0.9, 0.05, 0.05]])).tolist()
            [[True, False, False], [False, False, False]]
        """
        scores = class_scores(
            probs,
            method=self.method,
            randomized=self.randomized,
            k_reg=self.k_reg,
            lambda_reg=self.lambda_reg,
            generator=generator,
        )
        if self.mondrian and scores.shape[1] != len(self.quantiles):
            raise ValueError(
                f"`probs` of ConformalSets.predict must have {len(self.quantiles)} classes; got {scores.shape[1]}."
            )
        quantiles = torch.tensor(self.quantiles, dtype=torch.float64, device=scores.device)
        return scores <= quantiles + SCORE_TOLERANCE


def fit_prediction_sets(
    probs: Tensor,
    labels: Tensor,
    *,
    method: str = "aps",
    alpha: float = 0.1,
    mondrian: bool = False,
    randomized: bool = False,
    k_reg: int = 1,
    lambda_reg: float = 0.0,
    generator: torch.Generator | None = None,
    class_names: tuple[str, ...] | list[str] | None = None,
) -> ConformalSets:
    """Calibrate conformal prediction sets on ``n`` samples: ``q̂`` = :func:`conformal_quantile` of the true scores.

    Marginal: one ``q̂`` from all ``n`` scores ``s(x_i, y_i)``; Mondrian: ``q̂_y`` from the samples of class ``y``
    only (a class with too few samples, or none, gets ``+inf``: always in the set).

    References: Sadinle, Lei, Wasserman, JASA 2019; Romano, Sesia, Candès, NeurIPS 2020; Angelopoulos, Bates, Malik,
    Jordan, ICLR 2021; Vovk, Gammerman, Shafer, 2005 (Mondrian).

    Args:
        probs: calibration probabilities ``(N, C)``.
        labels: true classes ``(N,)`` (int).
        method: ``"lac"``, ``"aps"`` or ``"raps"`` (:func:`class_scores`).
        alpha: the miscoverage level, in (0, 1).
        mondrian: one quantile per class.
        randomized: aps/raps with ``u ~ U(0, 1)`` (also at :meth:`ConformalSets.predict`).
        k_reg: RAPS rank without penalty.
        lambda_reg: RAPS penalty per rank.
        generator: the random source of ``u``.
        class_names: optional names of the ``C`` classes.

    Returns:
        The fitted :class:`ConformalSets`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> probs = torch.softmax(2 * torch.randn(500, 4, generator=g), 1)
        >>> labels = torch.multinomial(probs, 1, generator=g).squeeze(1)
        >>> sets = fit_prediction_sets(probs[:300], labels[:300], method="aps", alpha=0.1)
        >>> abs(coverage(sets.predict(probs[300:]), labels[300:]) - 0.9) < 0.05
        True
    """
    where = "fit_prediction_sets"
    _check_score_options(method, randomized, k_reg, lambda_reg, where)
    if not isinstance(mondrian, bool):
        raise TypeError(f"`mondrian` of {where} must be a bool; got {type(mondrian).__name__}.")
    p = _check_probs(probs, where)
    y = _check_labels(labels, p.shape[0], p.shape[1], where).to(p.device)
    names = None if class_names is None else tuple(str(c) for c in class_names)
    if names is not None and len(names) != p.shape[1]:
        raise ValueError(f"`class_names` of {where} must name the {p.shape[1]} classes; got {len(names)}.")
    scores = class_scores(
        p, method=method, randomized=randomized, k_reg=k_reg, lambda_reg=lambda_reg, generator=generator
    )
    true = scores.gather(1, y[:, None]).squeeze(1)
    if mondrian:
        quantiles = tuple(conformal_quantile(true[y == c], alpha) for c in range(p.shape[1]))
    else:
        quantiles = (conformal_quantile(true, alpha),)
    return ConformalSets(
        method=method,
        alpha=float(alpha),
        quantiles=quantiles,
        mondrian=mondrian,
        randomized=randomized,
        k_reg=k_reg,
        lambda_reg=float(lambda_reg),
        n_calibration=int(p.shape[0]),
        class_names=names,
    )


def _check_sets(sets: object, where: str) -> Tensor:
    if not isinstance(sets, Tensor) or sets.dtype != torch.bool or sets.ndim != 2:
        got = f"{sets.dtype} {tuple(sets.shape)}" if isinstance(sets, Tensor) else type(sets).__name__
        raise ValueError(f"`sets` of {where} must be a bool tensor (N, C); got {got}.")
    return sets


def set_sizes(sets: Tensor) -> Tensor:
    """The number of classes in each set: bool ``(N, C)`` → int64 ``(N,)``.

    Example:
        >>> set_sizes(torch.tensor([[True, False, True], [False, False, False]])).tolist()
        [2, 0]
    """
    return _check_sets(sets, "set_sizes").sum(1)


def coverage(sets: Tensor, labels: Tensor) -> float:
    """The fraction of samples whose true class is in their set (NaN for no sample).

    Example:
        >>> coverage(torch.tensor([[True, False], [True, True], [False, True]]), torch.tensor([1, 0, 1]))
        0.6666666666666666
    """
    s = _check_sets(sets, "coverage")
    y = _check_labels(labels, s.shape[0], s.shape[1], "coverage").to(s.device)
    if s.shape[0] == 0:
        return math.nan
    return float(s.gather(1, y[:, None]).double().mean())


def class_coverage(sets: Tensor, labels: Tensor) -> Tensor:
    """Coverage per true class: float64 ``(C,)``, NaN for a class absent from ``labels``.

    Example:
        >>> sets = torch.tensor([[True, False], [True, True], [False, True]])
        >>> class_coverage(sets, torch.tensor([1, 1, 1])).tolist()
        [nan, 0.6666666666666666]
    """
    s = _check_sets(sets, "class_coverage")
    y = _check_labels(labels, s.shape[0], s.shape[1], "class_coverage").to(s.device)
    hit = s.gather(1, y[:, None]).squeeze(1).double()
    total = torch.zeros(s.shape[1], dtype=torch.float64, device=s.device).index_add_(0, y, hit)
    count = torch.zeros(s.shape[1], dtype=torch.float64, device=s.device).index_add_(0, y, torch.ones_like(hit))
    return torch.where(count > 0, total / count.clamp_min(1.0), math.nan)
