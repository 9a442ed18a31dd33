"""Scoring predictions for calibration and overlap, one case at a time in constant memory.

The loop reads one case (``probs (1, C, *spatial)`` and its reference), feeds it to the streaming
:class:`~softlabels.evaluation.evaluator.Evaluator` (which returns the case's per-case arrays and adds them to the
dataset state) and drops it; only the fixed-size state and one row of numbers per case are kept. ``softlabels
score`` (prediction files) and ``softlabels evaluate`` (a model on a split) both produce a :class:`ScoreResult`
this way, so their numbers and names are those of docs/metrics.md.

A file's reference is a label map (hard) or a soft map (rater mean, probability map); the reference rule of
:mod:`softlabels.evaluation.references` applies: calibration, Brier, NLL and the QUBIQ Dice use the soft map, Dice,
HD95 and the foreground/boundary regions its labels (argmax; a single channel: ``> 0.5``). Voxels labelled
``ignore_index`` are dropped from every metric; the region masks are computed on the label map as given, so the rim
of an ignored region counts as a boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from softlabels._errors import is_user_error
from softlabels._memory import bounded_heap, release_freed_memory
from softlabels.data.prediction_files import Case, CaseFiles, ReferenceKind, list_cases, load_case
from softlabels.evaluation.evaluator import HISTOGRAMS, Evaluator, case_values, ece_from_histogram
from softlabels.evaluation.references import References
from softlabels.evaluation.spec import MetricSpec

if TYPE_CHECKING:
    from softlabels.metrics.functional.calibration import ReliabilityDiagram

__all__ = ["ScoreResult", "Scoring", "nanmean", "score_cases", "score_folders", "score_predictions"]


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring run measured.

    Attributes:
        summary: dataset values ``{name: float}`` (per-class metrics: the mean over the foreground classes).
        cases: one row per case: ``{"case": name, <metric>: float, "per_class": {metric: {class: float}},
            "spacing": [...] or None}``.
        diagrams: reliability-diagram data, ``"top_label"`` and ``"classwise"``.
        settings: the options used (``n_bins``, ``boundary_width``, ``ignore_index``, ``num_classes``, ``classes``
            (the per-class keys), ``class_names`` (the names given, or ``None``), ``reference_form`` (``"soft"``,
            ``"hard"`` — a label map, against whose one-hot map ``soft_dice`` is scored — or ``"mixed"``), ...).
        per_class: dataset values of the per-class metrics, ``{metric: {class: float}}``; a class is keyed by its
            name when :class:`Scoring` was given ``class_names``, else by its index (``"1"``, ``"2"``, ...).

    NaN marks a value without data (e.g. the foreground ECE of a case without foreground).

    Example:
        >>> result = ScoreResult({"ece": 0.1, "dice": 0.8}, [], {}, per_class={"dice": {"1": 0.8}})
        >>> result.summary["dice"] == result.per_class["dice"]["1"]
        True
    """

    summary: dict[str, Any]
    cases: list[dict[str, Any]]
    diagrams: dict[str, ReliabilityDiagram]
    settings: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)


def _row_value(spec: MetricSpec, arrays: dict[str, np.ndarray], i: int) -> float | None:
    """The value of one case (row ``i`` of a batch's arrays) for a metric, or ``None`` when not computed."""
    name = spec.name
    if name in HISTOGRAMS:
        key = HISTOGRAMS[name]
        return float(ece_from_histogram(arrays[key][i])) if key in arrays else None
    if name == "mce":
        return float(ece_from_histogram(arrays["hist_ece"][i], norm="max"))
    if name == "ece_case_mean":
        return None  # the row's own ECE is ``ece``
    if name not in arrays:
        return None
    return float(case_values({name: arrays[name][i : i + 1]}, name)[0])


def _check_class_names(class_names: Sequence[str] | None, num_classes: int, *, where: str) -> list[str] | None:
    """The class names as a list, checked: one non-empty, distinct name per class (index 0: the background).

    ``num_classes`` is the channels ``C`` of the predictions; a single channel (a binary foreground probability)
    has two classes, background and foreground.

    Raises:
        ValueError: not one name per class, an empty or repeated name (the value is named).
        TypeError: a string or not a sequence.

    Example:
        >>> _check_class_names(["background", "tumour"], 1, where="Scoring")
        ['background', 'tumour']
        >>> try:
        ...     _check_class_names(["a", "b"], 3, where="Scoring")
        ... except ValueError as err:
        ...     print(str(err).split(";")[-1])
         got 2: ['a', 'b'].
    """
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"`class_names` of {where} must be a sequence of names; got {class_names!r}.")
    names, expected = list(class_names), max(num_classes, 2)
    if len(names) != expected:
        raise ValueError(
            f"`class_names` of {where} must be {expected} names, one per class (0: background; the predictions "
            f"have {num_classes} channel(s)); got {len(names)}: {names!r}."
        )
    if any(not isinstance(n, str) or not n.strip() for n in names) or len(set(names)) != len(names):
        raise ValueError(f"`class_names` of {where} must be distinct non-empty strings; got {names!r}.")
    return names


class Scoring:
    """Per-case rows and the dataset result of a stream of cases, through one :class:`Evaluator`.

    Args:
        evaluator: the evaluator (task, classes, bins, band width, ignore index).
        keep_rows: keep one row per case (``False`` for classification items).
        class_names: one name per class, index 0 the background (a data source's ``info["class_names"]``): the
            per-class keys and report columns of the foreground classes; ``None``: their indices ``"1"``, ``"2"``, ...

    Raises:
        ValueError: ``class_names`` is not one distinct, non-empty name per class (the names given are quoted).
        TypeError: ``class_names`` is a string or not a sequence.

    Example:
        >>> scoring = Scoring(Evaluator("segmentation", 2, spatial_dims=2), class_names=["background", "lesion"])
        >>> probs = torch.full((1, 2, 4, 4), 0.5)
        >>> scoring.add(["a"], probs, References(torch.zeros(1, 4, 4, dtype=torch.long)))
        >>> result = scoring.result()
        >>> result.summary["ece"], result.cases[0]["case"], list(result.per_class["dice"])
        (0.5, 'a', ['lesion'])
    """

    def __init__(
        self, evaluator: Evaluator, *, keep_rows: bool = True, class_names: Sequence[str] | None = None
    ) -> None:
        self.evaluator, self.keep_rows = evaluator, keep_rows
        c = evaluator.num_classes
        self.class_names = _check_class_names(class_names, c, where="Scoring")
        self.classes = self.class_names[1:] if self.class_names else [str(k) for k in range(1, max(c, 2))]
        self.rows: list[dict[str, Any]] = []
        self._forms: set[str] = set()  # "soft" / "hard": the forms of the references seen

    def add(
        self,
        names: Sequence[str],
        probs: Tensor,
        refs: References,
        spacing: Sequence[float] | None = None,
        features: Tensor | None = None,
    ) -> None:
        """Add the cases of a batch (``names`` in batch order)."""
        arrays = self.evaluator.step(probs, refs, spacing=spacing, features=features)
        self._forms.add("hard" if refs.soft is None else "soft")
        if not self.keep_rows:
            return
        for i, name in enumerate(names):
            row: dict[str, Any] = {"case": name}
            per_class: dict[str, dict[str, float]] = {}
            for spec in self.evaluator.spec:
                value = _row_value(spec, arrays, i)
                if value is None:
                    continue
                row[spec.name] = value
                if spec.per_class:
                    values = np.asarray(arrays[spec.name][i], dtype=np.float64).reshape(-1)
                    per_class[spec.name] = dict(zip(self.classes, map(float, values), strict=True))
            row["per_class"] = per_class
            row["spacing"] = None if spacing is None else [float(s) for s in spacing]
            self.rows.append(row)

    def result(self, settings: dict[str, Any] | None = None) -> ScoreResult:
        """The :class:`ScoreResult` of every case added."""
        ev = self.evaluator
        per_class = {
            name: dict(zip(self.classes, values, strict=True)) for name, values in ev.compute_per_class().items()
        }
        base = {
            "num_classes": ev.num_classes, "n_bins": ev.n_bins, "boundary_width": ev.boundary_width,
            "ignore_index": ev.ignore_index, "classes": self.classes, "class_names": self.class_names,
            "reference_form": "mixed" if len(self._forms) > 1 else next(iter(self._forms), None),
        }  # fmt: skip
        return ScoreResult(ev.compute(), self.rows, ev.reliability_diagrams(), {**base, **(settings or {})}, per_class)


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


def _score_one(scoring: Scoring, case: Case, spacing: Sequence[float] | None) -> None:
    """Add one case, naming it in any error raised by the metrics."""
    try:
        scoring.add([case.name], case.probs, References.from_target(case.target), spacing)
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
    class_names: Sequence[str] | None = None,
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
        class_names: one name per class (index 0 the background), the per-class keys; ``None``: ``"1"``, ``"2"``...
        progress: show a tqdm bar; ``None`` shows it on a terminal only.

    Returns:
        The :class:`ScoreResult`.

    Raises:
        ValueError: bad option, no case, unreadable file, invalid values, a NIfTI reference on another voxel grid
            than its prediction (the case or file is named; see :mod:`softlabels.data.prediction_files`), or not one
            class name per class.

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
        >>> round(result.summary["ece"], 6), len(result.cases)
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
        loaded(), soft=soft, n_bins=n_bins, boundary_width=boundary_width, ignore_index=ignore_index, spacing=spacing,
        class_names=class_names,
    )  # fmt: skip
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
    class_names: Sequence[str] | None = None,
) -> ScoreResult:
    """Score predictions already in memory, one :class:`~softlabels.data.prediction_files.Case` at a time.

    The loop behind :func:`score_cases`: each case (``probs (1, C, *spatial)``, a hard ``(1, *spatial)`` or soft
    ``(1, C, *spatial)`` target) updates the streaming evaluator and is dropped.

    Args:
        cases: an iterable of cases (e.g. a generator over a model's predictions).
        soft: whether the targets are soft (rater mean, probability map) rather than label maps.
        n_bins: equal-width bins of the calibration errors.
        boundary_width: half-width of the boundary band, in voxels.
        ignore_index: label whose voxels are dropped (label-map targets only).
        spacing: voxel size for HD95; ``None`` uses each case's own (else 1).
        class_names: one name per class (index 0 the background), the per-class keys (:class:`Scoring`).

    Returns:
        The :class:`ScoreResult`.

    Raises:
        ValueError: no case, invalid values (the case is named), or not one class name per class.

    Example:
        >>> probs = torch.full((1, 2, 4, 4), 0.5)
        >>> case = Case("a", probs, torch.zeros(1, 4, 4, dtype=torch.long), None)
        >>> score_predictions([case], soft=False).summary["ece"]
        0.5
    """
    _check_options(n_bins, boundary_width, None, soft, ignore_index)
    scoring: Scoring | None = None
    with torch.no_grad(), bounded_heap():  # else glibc's heap grows with the number of cases (softlabels._memory)
        for case in cases:
            if scoring is None:
                evaluator = Evaluator(
                    "segmentation", case.probs.shape[1], spatial_dims=case.probs.ndim - 2, n_bins=n_bins,
                    boundary_width=boundary_width, ignore_index=ignore_index,
                )  # fmt: skip
                scoring = Scoring(evaluator, class_names=class_names)
            _score_one(scoring, case, spacing if spacing is not None else case.spacing)
            del case
            release_freed_memory()  # else glibc's heap grows with the number of cases (softlabels._memory)
    if scoring is None:
        raise ValueError("score_predictions needs at least one case; got none.")
    settings = {"reference": "soft" if soft else "labels", "spacing": None if spacing is None else list(spacing)}
    return scoring.result(settings)


def score_folders(
    probs_dir: Path | str, reference_dir: Path | str, *, kind: ReferenceKind, **options: Any
) -> ScoreResult:
    """Match the files of two folders by case name and score them; ``options`` go to :func:`score_cases`.

    ``options`` are those of :func:`score_cases`: ``n_bins``, ``boundary_width``, ``ignore_index``, ``num_classes``,
    ``spacing``, ``class_names`` (the per-class keys), ``progress``.

    Example:
        >>> from softlabels.data.prediction_files import example_folder
        >>> root = example_folder()
        >>> result = score_folders(root / "probs", root / "labels", kind="labels", progress=False)
        >>> len(result.cases), sorted(result.per_class["dice"])
        (4, ['1', '2'])
        >>> named = score_folders(root / "probs", root / "labels", kind="labels", class_names=["bg", "a", "b"])
        >>> sorted(named.per_class["soft_dice"]), named.settings["class_names"]
        (['a', 'b'], ['bg', 'a', 'b'])
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
