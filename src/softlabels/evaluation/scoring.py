"""Scoring existing predictions for calibration and overlap, one case at a time in constant memory.

The loop reads one case (``probs (1, C, *spatial)`` and its reference), feeds it to streaming metrics with
``Metric.forward`` (which returns the value of that case and adds it to the dataset state in a single update) and
drops it; only fixed-size metric states and one row of numbers per case are kept.

Reported, for a hard (label map) or soft (rater mean, probability map) reference:

* ``ece_top_label``: top-label ECE pooled over all voxels of the dataset; ``ece_top_label_case_mean``: the mean of
  the per-case values; ``ece_classwise``; ``mce_top_label`` (maximum calibration error);
* ``ece_foreground``: top-label ECE over the voxels whose reference is not background (the ``fg_gt`` set);
  ``ece_boundary``: over the band of ``boundary_width`` voxels on both sides of every reference boundary;
* ``brier``, ``nll`` (voxel means);
* ``dice`` and ``hd95`` per foreground class (means over cases; HD95 in the units of the voxel spacing, over the
  cases where both masks are non-empty). A soft reference is turned into labels by its argmax (a single channel:
  ``> 0.5``) for Dice, HD95 and the region masks;
* ``thresholded_dice`` per foreground class (QUBIQ score), with a soft reference only.

Calibration metrics use a soft reference directly (the outcome is the reference probability). Voxels labelled
``ignore_index`` are dropped from every metric; the region masks are computed on the label map as given, so the rim
of an ignored region counts as a boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from softlabels._errors import is_user_error
from softlabels.data.prediction_files import Case, CaseFiles, ReferenceKind, list_cases, load_case

if TYPE_CHECKING:
    from torchmetrics import Metric

    from softlabels.metrics.functional.calibration import ReliabilityDiagram

CALIBRATION: dict[str, dict[str, str]] = {
    "ece_top_label": {"norm": "l1", "mode": "top_label"},
    "ece_classwise": {"norm": "l1", "mode": "classwise"},
    "mce_top_label": {"norm": "max", "mode": "top_label"},
    "ece_foreground": {"norm": "l1", "mode": "top_label"},
    "ece_boundary": {"norm": "l1", "mode": "top_label"},
}
PER_CLASS: tuple[str, ...] = ("dice", "hd95", "thresholded_dice")


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_cases` measured.

    Attributes:
        summary: dataset values: ``{name: float}`` and, for per-class metrics, ``{name: {class: float}}``.
        cases: one row per case: ``{"case": name, <metric>: float or {class: float}, "spacing": [...] or None}``.
        diagrams: reliability-diagram data, ``"top_label"`` and ``"classwise"``.
        settings: the options used (``n_bins``, ``boundary_width``, ``ignore_index``, ``num_classes``, ...).

    NaN marks a value without data (e.g. the foreground ECE of a case without foreground).
    """

    summary: dict[str, Any]
    cases: list[dict[str, Any]]
    diagrams: dict[str, ReliabilityDiagram]
    settings: dict[str, Any] = field(default_factory=dict)


def _values(x: Tensor | dict[str, Tensor]) -> list[float]:
    if isinstance(x, dict):
        x = x["pooled"]
    return [float(v) for v in x.detach().reshape(-1).cpu()]


def _hard(target: Tensor) -> Tensor:
    """Labels of a soft target: argmax over the classes (a single channel: ``> 0.5``); labels unchanged."""
    if not target.is_floating_point():
        return target
    return target.argmax(1) if target.shape[1] > 1 else (target[:, 0] > 0.5).long()


class _Scorer:
    """The streaming metrics of one scoring run."""

    def __init__(
        self,
        num_classes: int,
        *,
        n_bins: int,
        boundary_width: float,
        ignore_index: int | None,
        soft: bool,
    ) -> None:
        from softlabels.metrics.calibration import CalibrationError
        from softlabels.metrics.proper_scoring import BrierScore, NegativeLogLikelihood
        from softlabels.metrics.segmentation import DiceScore, HausdorffDistance95

        c, ignore = num_classes, ignore_index
        self.class_names = [str(k) for k in range(1, max(c, 2))]
        self.boundary_width = boundary_width
        self.metrics: dict[str, Metric] = {
            name: CalibrationError(c, n_bins=n_bins, ignore_index=ignore, **opts)  # type: ignore[arg-type]
            for name, opts in CALIBRATION.items()
        }
        self.metrics["brier"] = BrierScore(c, ignore_index=ignore)
        self.metrics["nll"] = NegativeLogLikelihood(c, ignore_index=ignore)
        self.metrics["dice"] = DiceScore(c, include_background=False, ignore_index=ignore)
        self.metrics["hd95"] = HausdorffDistance95(c, include_background=False, ignore_index=ignore)
        if soft:
            from softlabels.metrics.multirater import ThresholdedDice

            self.metrics["thresholded_dice"] = ThresholdedDice(c, include_background=False)

    def _named(self, values: list[float]) -> dict[str, float]:
        return dict(zip(self.class_names, values, strict=True))

    def add(self, case: Case, spacing: Sequence[float] | None) -> dict[str, Any]:
        """Update every metric with one case; return its row of per-case values."""
        from softlabels.metrics.functional.regions import boundary_band, foreground_mask

        probs, target, hard = case.probs, case.target, _hard(case.target)
        band = boundary_band(hard, width=self.boundary_width)
        masks = {"ece_foreground": foreground_mask(hard), "ece_boundary": band}
        row: dict[str, Any] = {"case": case.name}
        for name, metric in self.metrics.items():
            if name in CALIBRATION:
                value = metric(probs, target, mask=masks.get(name))
            elif name == "hd95":
                value = metric(probs, hard, spacing=None if spacing is None else tuple(spacing))
            elif name == "dice":
                value = metric(probs, hard)
            else:
                value = metric(probs, target)
            row[name] = self._named(_values(value)) if name in PER_CLASS else _values(value)[0]
        row["spacing"] = None if spacing is None else [float(s) for s in spacing]
        return row

    def summary(self, cases: list[dict[str, Any]]) -> dict[str, Any]:
        """Dataset values of every metric (pooled over voxels, or the mean over cases for per-case metrics)."""
        out: dict[str, Any] = {}
        for name, metric in self.metrics.items():
            values = _values(metric.compute())
            out[name] = self._named(values) if name in PER_CLASS else values[0]
        out["ece_top_label_case_mean"] = nanmean(r["ece_top_label"] for r in cases)
        return out

    def diagrams(self) -> dict[str, ReliabilityDiagram]:
        """Reliability-diagram data of the top-label and classwise ECE."""
        return {
            "top_label": self.metrics["ece_top_label"].reliability_diagram(),  # type: ignore[operator]
            "classwise": self.metrics["ece_classwise"].reliability_diagram(),  # type: ignore[operator]
        }


def _check_options(n_bins: int, boundary_width: float, num_classes: int | None, soft: bool, ignore: int | None) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"`n_bins` of score_cases must be an int >= 1; got {n_bins!r}.")
    if isinstance(boundary_width, bool) or not isinstance(boundary_width, int | float) or not boundary_width > 0:
        raise ValueError(f"`boundary_width` of score_cases must be a positive number; got {boundary_width!r}.")
    bad_c = isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    if num_classes is not None and bad_c:
        raise ValueError(f"`num_classes` of score_cases must be an int >= 1 or None; got {num_classes!r}.")
    if soft and ignore is not None:
        raise ValueError("`ignore_index` of score_cases applies to label-map references only; got a soft reference.")


def _score_one(scorer: _Scorer, case: Case, spacing: Sequence[float] | None) -> dict[str, Any]:
    """Add one case, naming it in any error raised by the metrics."""
    try:
        return scorer.add(case, spacing if spacing is not None else case.spacing)
    except (ValueError, TypeError) as err:
        if not is_user_error(err):  # a bug inside the metrics: keep its own traceback
            raise
        raise type(err)(f"case {case.name!r}: {err}") from err


def score_cases(
    cases: Sequence[CaseFiles],
    *,
    kind: ReferenceKind,
    n_bins: int = 15,
    boundary_width: float = 2.0,
    ignore_index: int | None = None,
    num_classes: int | None = None,
    spacing: Sequence[float] | None = None,
    progress: bool | None = None,
) -> ScoreResult:
    """Score the cases one at a time: read, update the streaming metrics, drop.

    Args:
        cases: the case files, from :func:`softlabels.data.prediction_files.list_cases`.
        kind: the reference, ``"labels"`` (hard), ``"raters"`` or ``"ref_probs"`` (soft).
        n_bins: equal-width bins of the calibration errors.
        boundary_width: half-width of the boundary band, in voxels.
        ignore_index: label whose voxels are dropped (label-map references only).
        num_classes: channels ``C`` of every prediction; ``None`` takes the first case's.
        spacing: voxel size for HD95; ``None`` reads it per case from the NIfTI headers (the prediction's, which
            a NIfTI reference must share; else the reference's; else 1).
        progress: show a tqdm bar; ``None`` shows it on a terminal only.

    Returns:
        The :class:`ScoreResult`.

    Raises:
        ValueError: bad option, no case, unreadable file, invalid values, or a NIfTI reference on another voxel grid
            than its prediction (the case or file is named; see :mod:`softlabels.data.prediction_files`).

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> probs = np.zeros((2, 1, 4, 4), dtype=np.float32)
        >>> probs[0], probs[1] = 0.8, 0.2
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for d in ("p", "r"):
        ...         Path(tmp, d).mkdir()
        ...     np.savez(f"{tmp}/p/a.npz", probabilities=probs)
        ...     np.savez(f"{tmp}/r/a.npz", probabilities=probs)
        ...     result = score_cases(list_cases(f"{tmp}/p", f"{tmp}/r", kind="ref_probs"), kind="ref_probs")
        >>> round(result.summary["ece_top_label"], 6), len(result.cases)
        (0.0, 1)
    """
    soft = kind != "labels"
    _check_options(n_bins, boundary_width, num_classes, soft, ignore_index)
    if not cases:
        raise ValueError("score_cases needs at least one case; got none.")
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress

    def loaded() -> Iterator[Case]:
        expected = num_classes  # the first case's channels unless given: every later case must match
        for files in tqdm(cases, desc="softlabels score", unit="case", disable=disable):
            case = load_case(files, kind=kind, num_classes=expected)
            expected = case.probs.shape[1] if expected is None else expected
            yield case
            del case  # before the next case is read: one case in memory at a time

    result = score_predictions(
        loaded(), soft=soft, n_bins=n_bins, boundary_width=boundary_width, ignore_index=ignore_index, spacing=spacing
    )
    result.settings["reference"] = kind
    return result


def score_predictions(
    cases: Iterable[Case],
    *,
    soft: bool,
    n_bins: int = 15,
    boundary_width: float = 2.0,
    ignore_index: int | None = None,
    spacing: Sequence[float] | None = None,
) -> ScoreResult:
    """Score predictions already in memory, one :class:`~softlabels.data.prediction_files.Case` at a time.

    The loop behind :func:`score_cases` (and ``softlabels evaluate``): each case (``probs (1, C, *spatial)``, a hard
    ``(1, *spatial)`` or soft ``(1, C, *spatial)`` target) updates the streaming metrics and is dropped.

    Args:
        cases: an iterable of cases (e.g. a generator over a model's predictions).
        soft: whether the targets are soft (rater mean, probability map) rather than label maps.
        n_bins: equal-width bins of the calibration errors.
        boundary_width: half-width of the boundary band, in voxels.
        ignore_index: label whose voxels are dropped (label-map targets only).
        spacing: voxel size for HD95; ``None`` uses each case's own (else 1).

    Returns:
        The :class:`ScoreResult`.

    Raises:
        ValueError: no case, or invalid values (the case is named).

    Example:
        >>> probs = torch.full((1, 2, 4, 4), 0.5)
        >>> case = Case("a", probs, torch.zeros(1, 4, 4, dtype=torch.long), None)
        >>> score_predictions([case], soft=False).summary["ece_top_label"]
        0.5
    """
    _check_options(n_bins, boundary_width, None, soft, ignore_index)
    rows: list[dict[str, Any]] = []
    scorer: _Scorer | None = None
    num_classes = 0
    with torch.no_grad():
        for case in cases:
            if scorer is None:
                num_classes = case.probs.shape[1]
                scorer = _Scorer(
                    case.probs.shape[1], n_bins=n_bins, boundary_width=boundary_width, ignore_index=ignore_index,
                    soft=soft,
                )  # fmt: skip
            rows.append(_score_one(scorer, case, spacing))
            del case
    if scorer is None:
        raise ValueError("score_predictions needs at least one case; got none.")
    settings = {
        "reference": "soft" if soft else "labels",
        "num_classes": num_classes,
        "n_bins": n_bins,
        "boundary_width": boundary_width,
        "ignore_index": ignore_index,
        "spacing": None if spacing is None else [float(s) for s in spacing],
        "classes": scorer.class_names,
    }
    return ScoreResult(scorer.summary(rows), rows, scorer.diagrams(), settings)


def score_folders(
    probs_dir: Path | str, reference_dir: Path | str, *, kind: ReferenceKind, **options: Any
) -> ScoreResult:
    """Match the files of two folders by case name and score them; ``options`` go to :func:`score_cases`.

    Example:
        >>> from softlabels.data.prediction_files import example_folder
        >>> root = example_folder()
        >>> result = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
        >>> len(result.cases), sorted(result.summary["dice"])
        (4, ['1', '2'])
    """
    return score_cases(list_cases(probs_dir, reference_dir, kind=kind), kind=kind, **options)


def nanmean(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN (NaN if none).

    Example:
        >>> nanmean([1.0, float("nan"), 3.0])
        2.0
    """
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
