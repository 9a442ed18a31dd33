"""The streaming evaluator: every metric of the spec, one case (or batch) at a time, in fixed-size summed state.

:meth:`Evaluator.step` takes ``probs (N, C, *spatial)`` (classification ``(N, C)``) and their
:class:`~softlabels.evaluation.references.References`, computes the **per-case arrays** of the batch — one fused
calibration pass (:func:`~softlabels.metrics.functional.calibration_pass`) for the top-label, classwise, foreground
and boundary-band histograms, Brier and NLL; Dice, soft Dice, HD95, the QUBIQ Dice and GED per case — adds their
sums to the state and returns them, so a caller can keep per-case rows (small arrays) while the volumes are dropped.
:meth:`Evaluator.compute` gives the dataset values by the pooling rules of :mod:`softlabels.evaluation.spec`;
:func:`summarize` gives the same values from stored per-case arrays (the benchmark's ``cases.npz``), so a value
never depends on which command produced it.

The state is summed (``dist_reduce_fx="sum"``: int64 counts, float64 sums), so the values are exact over a whole
split and synced across DDP processes by torchmetrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from softlabels._memory import release_freed_memory
from softlabels._ops import argmax
from softlabels._options import look_up_option
from softlabels.evaluation.references import References
from softlabels.evaluation.spec import MetricSpec, spec_for
from softlabels.metrics import EmbeddingCompactness
from softlabels.metrics.functional import (
    boundary_band,
    calibration_pass,
    dice_per_threshold,
    dice_score,
    foreground_mask,
    generalized_energy_distance,
    hausdorff_distance_95,
    soft_dice_score,
    thresholded_dice,
)
from softlabels.metrics.functional.calibration import (
    CalibrationHistogram,
    ReliabilityDiagram,
    _reliability_diagram_compute,
)

__all__ = ["CURVE_THRESHOLDS", "HISTOGRAMS", "Evaluator", "case_values", "ece_from_histogram", "per_class", "summarize"]

CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""Thresholds of the Dice-vs-threshold curve (0.05 … 0.95), kept with ``curves=True``.

Example:
    >>> CURVE_THRESHOLDS[0], CURVE_THRESHOLDS[-1], len(CURVE_THRESHOLDS)
    (0.05, 0.95, 19)
"""
HISTOGRAMS: dict[str, str] = {
    "ece": "hist_ece",
    "ece_classwise": "hist_cece",
    "ece_foreground": "hist_fg",
    "ece_boundary": "hist_band",
}
"""Histogram metric → its per-case array ``(K, rows, n_bins, 3)`` (count, confidence sum, outcome sum).

Example:
    >>> HISTOGRAMS["ece_boundary"]
    'hist_band'
"""
_CASE_METRICS = ("dice", "soft_dice", "hd95", "thresholded_dice", "ged", "top1", "top5")
_PER_CLASS = ("dice", "soft_dice", "hd95", "thresholded_dice")
CASE_BY_CASE = 2**20
"""Probabilities per case above which a batch is evaluated one case at a time (bounded transient memory).

Example:
    >>> CASE_BY_CASE
    1048576
"""


def _histogram(array: np.ndarray | Tensor) -> CalibrationHistogram:
    """A summed ``(..., rows, n_bins, 3)`` array as the metrics layer's histogram."""
    a = torch.as_tensor(array, dtype=torch.float64)
    return CalibrationHistogram(a[..., 0].round().long(), a[..., 1], a[..., 2])


def ece_from_histogram(hist: np.ndarray | Tensor, *, norm: str = "l1") -> np.ndarray:
    r"""Calibration error of (summed) histograms ``(..., rows, n_bins, 3)`` → ``(...)``: the mean over rows.

    .. math:: \mathrm{ECE} = \frac{1}{|R|}\sum_{r \in R} \sum_b \frac{|S^{conf}_{rb} - S^{out}_{rb}|}{n_r}, \qquad
        \mathrm{MCE} = \frac{1}{|R|}\sum_{r \in R} \max_{b: n_{rb} > 0} \frac{|S^{conf}_{rb} - S^{out}_{rb}|}{n_{rb}}

    ``norm="l1"`` (ECE) or ``"max"`` (MCE); rows without samples are left out (NaN when no row has any). Sums
    over any multiset of cases give the exact pooled value of that multiset (the benchmark's bootstrap uses this).

    Example:
        >>> h = np.array([[[2.0, 1.8, 1.0], [0.0, 0.0, 0.0]]])  # 1 row, 2 bins: 2 samples, conf 0.9, acc 0.5
        >>> float(ece_from_histogram(h)), float(ece_from_histogram(h, norm="max"))
        (0.4, 0.4)
    """
    h = np.asarray(hist, dtype=np.float64)
    counts = h[..., 0]
    gap = np.abs(h[..., 1] - h[..., 2])
    total = counts.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if norm == "l1":
            per_row = gap.sum(-1) / total
        elif norm == "max":
            per_row = np.where(counts > 0, gap / np.where(counts > 0, counts, 1.0), 0.0).max(-1)
        else:
            raise ValueError(f"`norm` of ece_from_histogram must be 'l1' or 'max'; got {norm!r}.")
        per_row = np.where(total > 0, per_row, np.nan)
        if per_row.shape[-1] == 1:
            return per_row[..., 0]
        kept = np.isfinite(per_row)
        return np.where(kept.any(-1), np.where(kept, per_row, 0.0).sum(-1) / kept.sum(-1), np.nan)


def case_values(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """``(K,)`` per-case values of metric ``name`` from per-case arrays (per-class: NaN-skipping class mean).

    Example:
        >>> case_values({"dice": np.array([[0.5, 1.0], [np.nan, 0.2]])}, "dice").tolist()
        [0.75, 0.2]
    """
    if name == "ece_case_mean":
        return ece_from_histogram(arrays["hist_ece"])
    values = np.asarray(arrays[name], dtype=np.float64)
    if values.ndim == 1:
        return values
    flat = values.reshape(len(values), -1)
    finite = np.isfinite(flat)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(1), np.where(finite, flat, 0.0).sum(1) / np.maximum(finite.sum(1), 1), np.nan)


def _finite_mean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite.any(axis), np.where(finite, values, 0.0).sum(axis) / finite.sum(axis), np.nan)


def summarize(arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Dataset values of stored per-case arrays (a multiset of cases), by the spec's pooling rules.

    Example:
        >>> ev = Evaluator("classification", 2)
        >>> arrays = ev.step(torch.tensor([[0.9, 0.1], [0.4, 0.6]]), References(torch.tensor([0, 0])))
        >>> summary = summarize(arrays)
        >>> summary["top1"], round(summary["ece"], 4), summary == ev.compute()
        (0.5, 0.35, True)
    """
    out: dict[str, float] = {}
    for name, key in HISTOGRAMS.items():
        if key in arrays:
            out[name] = float(ece_from_histogram(np.asarray(arrays[key]).sum(0)))
    if "hist_ece" in arrays:
        out["mce"] = float(ece_from_histogram(np.asarray(arrays["hist_ece"]).sum(0), norm="max"))
        out["ece_case_mean"] = float(_finite_mean(case_values(arrays, "ece_case_mean")))
    if "voxels" in arrays:
        voxels = np.asarray(arrays["voxels"], dtype=np.float64)
        for name in ("brier", "nll"):
            total = float((np.asarray(arrays[name], dtype=np.float64) * voxels).sum())
            out[name] = total / float(voxels.sum()) if voxels.sum() > 0 else math.nan
    for name in _CASE_METRICS:
        if name in arrays:
            out[name] = float(_finite_mean(case_values(arrays, name)))
    order = [m.name for m in spec_for("segmentation") + spec_for("classification")]
    return {name: out[name] for name in sorted(out, key=order.index)}


def per_class(arrays: Mapping[str, np.ndarray], name: str) -> list[float]:
    """Dataset value of a per-class metric for each foreground class: the mean over the cases with a value.

    Example:
        >>> per_class({"dice": np.array([[0.5, 1.0], [np.nan, 0.2]])}, "dice")
        [0.5, 0.6]
    """
    return [float(v) for v in _finite_mean(np.asarray(arrays[name], dtype=np.float64).reshape(len(arrays[name]), -1))]


class Evaluator(Metric):
    """The spec's metrics of one task, streamed case by case; see the module docstring.

    Args:
        task: ``"segmentation"`` or ``"classification"``.
        num_classes: channels ``C`` of the predictions.
        spatial_dims: 2 or 3 (segmentation), 0 (classification).
        n_bins: equal-width calibration bins.
        boundary_width: half-width of the boundary band, in voxels.
        ignore_index: label whose voxels are dropped (hard references only).
        num_features: embedding size for ``compactness`` (classification; ``None``: not reported).
        metrics: the metrics to compute and report (names of :mod:`softlabels.evaluation.spec`; ``None``: all of
            the task). Leaving out ``hd95`` skips its distance transforms.
        curves: also return the per-case Dice-vs-threshold curve and the structure fractions (benchmark figures).

    Example:
        >>> ev = Evaluator("segmentation", 3, spatial_dims=2)
        >>> probs = torch.softmax(torch.randn(2, 3, 8, 8), 1)
        >>> arrays = ev.step(probs, References(probs.argmax(1)))
        >>> values = ev.compute()
        >>> values["dice"], values["ece"] == summarize(arrays)["ece"], arrays["dice"].shape
        (1.0, True, (2, 2))
    """

    full_state_update = False
    higher_is_better = None

    def __init__(
        self,
        task: str,
        num_classes: int,
        *,
        spatial_dims: int = 2,
        n_bins: int = 15,
        boundary_width: float = 2.0,
        ignore_index: int | None = None,
        num_features: int | None = None,
        metrics: Sequence[str] | None = None,
        curves: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task = look_up_option("task", task, ("segmentation", "classification"), where="Evaluator")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` of Evaluator must be an int >= 1; got {num_classes!r}.")
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"`n_bins` of Evaluator must be an int >= 1; got {n_bins!r}.")
        if isinstance(boundary_width, bool) or not isinstance(boundary_width, int | float) or not boundary_width > 0:
            raise ValueError(f"`boundary_width` of Evaluator must be a positive number; got {boundary_width!r}.")
        self.num_classes, self.spatial_dims, self.n_bins = num_classes, spatial_dims, n_bins
        self.boundary_width, self.ignore_index, self.curves = float(boundary_width), ignore_index, curves
        known = [m.name for m in spec_for(self.task)]
        for name in metrics or ():
            look_up_option("metric", name, known, where=f"Evaluator ({self.task})")
        if metrics is not None and "compactness" in metrics and not num_features:
            raise ValueError("Evaluator needs `num_features` (the embedding size) for the 'compactness' metric.")
        self.spec: tuple[MetricSpec, ...] = tuple(
            m
            for m in spec_for(self.task)
            if (metrics is None or m.name in metrics) and (m.requires != "features" or num_features)
        )
        self.names = frozenset(m.name for m in self.spec)
        self.compactness = (
            EmbeddingCompactness(num_classes, num_features=int(num_features)) if num_features else None
        )  # fmt: skip
        rows = max(num_classes, 2)
        foreground = max(num_classes - 1, 1)
        hists = ("hist_ece", "hist_cece") + (("hist_fg", "hist_band") if self.task == "segmentation" else ())
        for key in hists:
            self.add_state(key, torch.zeros(rows if key == "hist_cece" else 1, n_bins, 3, dtype=torch.float64), "sum")
        self.add_state("voxels", torch.zeros((), dtype=torch.int64), "sum")
        for key in ("nll_total", "brier_total", "ece_case_sum"):
            self.add_state(key, torch.zeros((), dtype=torch.float64), "sum")
        self.add_state("ece_case_count", torch.zeros((), dtype=torch.int64), "sum")
        for name in _CASE_METRICS:
            width = foreground if name in _PER_CLASS else 1
            self.add_state(f"{name}_sum", torch.zeros(width, dtype=torch.float64), "sum")
            self.add_state(f"{name}_count", torch.zeros(width, dtype=torch.int64), "sum")
            self.add_state(f"{name}_case_sum", torch.zeros((), dtype=torch.float64), "sum")
            self.add_state(f"{name}_case_count", torch.zeros((), dtype=torch.int64), "sum")
            self.add_state(f"{name}_cases", torch.zeros((), dtype=torch.int64), "sum")

    # ------------------------------------------------------------------ per-case arrays
    def case_arrays(
        self, probs: Tensor, refs: References, *, spacing: Sequence[float] | None = None
    ) -> dict[str, np.ndarray]:
        """The per-case arrays of one batch, without touching the state (see :meth:`step`).

        A batch of large cases (more than :data:`CASE_BY_CASE` probabilities per case) is processed one case at a
        time, so the transient memory of the metrics is that of one case whatever the batch size.
        """
        n = probs.shape[0]
        if self.task == "segmentation" and n > 1 and probs[0].numel() > CASE_BY_CASE:
            parts = []
            for i in range(n):
                parts.append(self._batch_arrays(probs[i : i + 1], refs.case(i), spacing))
                release_freed_memory()
            return {key: np.concatenate([part[key] for part in parts], axis=0) for key in parts[0]}
        return self._batch_arrays(probs, refs, spacing)

    def _batch_arrays(self, probs: Tensor, refs: References, spacing: Sequence[float] | None) -> dict[str, np.ndarray]:
        refs = refs.to(probs.device)
        target = refs.soft_or_hard
        labels = refs.soft_argmax
        masks: dict[str, Tensor] = {}
        if self.task == "segmentation":
            masks = {"hist_fg": foreground_mask(labels), "hist_band": boundary_band(labels, width=self.boundary_width)}
        calib = calibration_pass(probs, target, n_bins=self.n_bins, masks=masks, ignore_index=self.ignore_index)
        voxels = calib.voxels.double().clamp_min(1.0)
        out: dict[str, np.ndarray] = {
            "hist_ece": calib.top_label.cpu().numpy(),
            "hist_cece": calib.classwise.cpu().numpy(),
            "voxels": calib.voxels.cpu().numpy(),
            "nll": torch.where(calib.voxels > 0, calib.nll_sum / voxels, torch.nan).cpu().numpy(),
            "brier": torch.where(calib.voxels > 0, calib.brier_sum / voxels, torch.nan).cpu().numpy(),
        }
        out |= {key: hist.cpu().numpy() for key, hist in calib.masked.items()}
        if self.task == "segmentation":
            out |= self._segmentation_arrays(probs, refs, labels, spacing)
        else:
            hard = refs.hard
            k = min(5, self.num_classes)
            out["top1"] = argmax(probs, 1).eq(hard).double().cpu().numpy()
            out["top5"] = probs.topk(k, dim=1).indices.eq(hard.unsqueeze(1)).any(1).double().cpu().numpy()
        return out

    def _segmentation_arrays(
        self, probs: Tensor, refs: References, labels: Tensor, spacing: Sequence[float] | None
    ) -> dict[str, np.ndarray]:
        c, ignore = self.num_classes, self.ignore_index
        space = None if spacing is None else tuple(float(s) for s in spacing)
        out: dict[str, np.ndarray] = {}
        if "dice" in self.names:
            out["dice"] = dice_score(probs, labels, num_classes=c, ignore_index=ignore).cpu().numpy()
        if "soft_dice" in self.names:
            out["soft_dice"] = self._soft_dice(probs, refs)
        if "hd95" in self.names:
            out["hd95"] = hausdorff_distance_95(probs, labels, spacing=space, ignore_index=ignore).cpu().numpy()
        if refs.soft is not None and "thresholded_dice" in self.names:
            out["thresholded_dice"] = thresholded_dice(probs, refs.soft).cpu().numpy()
        if refs.raters is not None and refs.raters.shape[1] >= 1 and "ged" in self.names:
            samples = argmax(probs, 1).unsqueeze(0)  # one deterministic sample per case: the argmax map
            raters = refs.raters.long().movedim(1, 0)
            out["ged"] = generalized_energy_distance(samples, raters, num_classes=max(c, 2)).cpu().numpy()
        if self.curves:
            onehot = torch.nn.functional.one_hot(argmax(probs, 1), c).flatten(1, -2).double().mean(1)
            out["pred_fraction"] = onehot[:, 1:].cpu().numpy()
            ref = refs.soft_or_hard
            if refs.soft is not None:
                out["ref_fraction"] = ref.double().flatten(2).mean(2)[:, 1:].cpu().numpy()
                out["dice_curve"] = dice_per_threshold(probs, refs.soft, thresholds=CURVE_THRESHOLDS).cpu().numpy()
            else:
                ref_onehot = torch.nn.functional.one_hot(refs.hard, c).flatten(1, -2).double().mean(1)
                out["ref_fraction"] = ref_onehot[:, 1:].cpu().numpy()
        return out

    def _soft_dice(self, probs: Tensor, refs: References) -> np.ndarray:
        """Soft Dice ``(N, C - 1)`` of the probabilities against the soft reference (a hard one: its one-hot map).

        :func:`~softlabels.metrics.functional.soft_dice_score`, the one definition: ``2 Σ min(p, q) / (Σ p + Σ q)``
        (the Dice semimetric), which is ``2 Σ p q / (Σ p + Σ q)`` against a one-hot reference. Voxels labelled
        ``ignore_index`` are dropped.
        """
        keep = None if self.ignore_index is None else refs.hard != self.ignore_index
        target = refs.soft if refs.soft is not None else refs.hard
        if keep is not None and refs.soft is None:
            target = torch.where(keep, target, 0)  # dropped by the mask; any valid label passes the value check
        return soft_dice_score(probs, target, mask=keep).cpu().numpy()

    # ------------------------------------------------------------------ Metric API
    def step(
        self, probs: Tensor, refs: References, *, spacing: Sequence[float] | None = None, features: Tensor | None = None
    ) -> dict[str, np.ndarray]:
        """Add a batch and return its per-case arrays (what :meth:`update` adds to the state).

        Args:
            probs: ``(N, C, *spatial)`` probabilities (classification ``(N, C)``).
            refs: the batch's references (:func:`~softlabels.evaluation.references.batch_references`).
            spacing: voxel size for HD95 (``None``: 1 per axis).
            features: embeddings ``(N, F)`` for ``compactness``.

        Returns:
            The per-case arrays (first axis: the ``N`` cases): ``hist_ece``, ``hist_cece`` (``(N, rows, n_bins,
            3)``), ``hist_fg``, ``hist_band`` (segmentation), ``voxels``, ``nll`` and ``brier`` (voxel means),
            ``dice``/``soft_dice``/``hd95``/``thresholded_dice`` (``(N, C - 1)``), ``ged``, ``top1``/``top5``
            (classification),
            and with ``curves`` ``dice_curve``, ``pred_fraction``, ``ref_fraction``.
        """
        with torch.no_grad():
            arrays = self.case_arrays(probs, refs, spacing=spacing)
        self.update(arrays=arrays, refs=refs, features=features)
        return arrays

    def update(  # type: ignore[override]
        self,
        probs: Tensor | None = None,
        refs: References | None = None,
        *,
        spacing: Sequence[float] | None = None,
        features: Tensor | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Add a batch (``probs`` and ``refs``, or its per-case ``arrays`` from :meth:`case_arrays`)."""
        if arrays is None:
            if probs is None or refs is None:
                raise ValueError("Evaluator.update needs `probs` and `refs` (or the per-case `arrays`).")
            with torch.no_grad():
                arrays = self.case_arrays(probs, refs, spacing=spacing)
        self._add(arrays)
        if self.compactness is not None and features is not None and refs is not None:
            self.compactness.update(features, refs.hard.to(features.device))

    def _add(self, arrays: Mapping[str, np.ndarray]) -> None:
        dev = self._state("voxels").device
        sum_of = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64).sum(0), device=dev)  # noqa: E731
        for key in HISTOGRAMS.values():
            if key in arrays:
                setattr(self, key, self._state(key) + sum_of(arrays[key]))
        voxels = np.asarray(arrays["voxels"], dtype=np.int64)
        self.voxels = self._state("voxels") + int(voxels.sum())
        for name in ("nll", "brier"):
            total = np.where(voxels > 0, np.asarray(arrays[name]) * voxels, 0.0).sum()
            setattr(self, f"{name}_total", self._state(f"{name}_total") + float(total))
        per_case_ece = ece_from_histogram(arrays["hist_ece"])
        finite = np.isfinite(per_case_ece)
        self.ece_case_sum = self._state("ece_case_sum") + float(per_case_ece[finite].sum())
        self.ece_case_count = self._state("ece_case_count") + int(finite.sum())
        for name in _CASE_METRICS:
            if name not in arrays:
                continue
            values = np.asarray(arrays[name], dtype=np.float64).reshape(len(arrays[name]), -1)
            ok = np.isfinite(values)
            setattr(self, f"{name}_sum", self._state(f"{name}_sum") + sum_of(np.where(ok, values, 0.0)))
            setattr(self, f"{name}_count", self._state(f"{name}_count") + torch.as_tensor(ok.sum(0), device=dev))
            case = case_values(arrays, name)
            kept = np.isfinite(case)
            setattr(self, f"{name}_case_sum", self._state(f"{name}_case_sum") + float(case[kept].sum()))
            setattr(self, f"{name}_case_count", self._state(f"{name}_case_count") + int(kept.sum()))
            setattr(self, f"{name}_cases", self._state(f"{name}_cases") + len(case))

    def _state(self, name: str) -> Tensor:
        value = getattr(self, name)
        assert isinstance(value, Tensor)  # noqa: S101 (a state registered by add_state)
        return value

    def compute(self) -> dict[str, float]:
        """The dataset value of every metric that received data (the spec's pooling rules)."""
        out: dict[str, float] = {}
        if int(self._state("voxels")) == 0:
            return out
        for name, key in HISTOGRAMS.items():
            if hasattr(self, key):
                out[name] = float(ece_from_histogram(self._state(key).cpu().numpy()))
        out["mce"] = float(ece_from_histogram(self._state("hist_ece").cpu().numpy(), norm="max"))
        count = int(self._state("ece_case_count"))
        out["ece_case_mean"] = float(self._state("ece_case_sum")) / count if count else math.nan
        out["brier"] = float(self._state("brier_total")) / int(self._state("voxels"))
        out["nll"] = float(self._state("nll_total")) / int(self._state("voxels"))
        for name in _CASE_METRICS:
            if int(self._state(f"{name}_cases")):
                n = int(self._state(f"{name}_case_count"))
                out[name] = float(self._state(f"{name}_case_sum")) / n if n else math.nan
        if self.compactness is not None and self.compactness.update_count:
            out["compactness"] = float(self.compactness.compute())
        return {m.name: out[m.name] for m in self.spec if m.name in out}

    def compute_per_class(self) -> dict[str, list[float]]:
        """Per foreground class, the dataset value of every per-class metric that received data."""
        out: dict[str, list[float]] = {}
        for m in self.spec:
            if m.per_class and int(self._state(f"{m.name}_cases")):
                sums, counts = self._state(f"{m.name}_sum"), self._state(f"{m.name}_count")
                values = torch.where(counts > 0, sums / counts.clamp_min(1).double(), torch.nan)
                out[m.name] = [float(v) for v in values.cpu()]
        return out

    def reliability_diagrams(self) -> dict[str, ReliabilityDiagram]:
        """Reliability-diagram data of the pooled top-label and classwise histograms."""
        return {
            "top_label": _reliability_diagram_compute(_histogram(self._state("hist_ece").cpu()), mode="top_label"),
            "classwise": _reliability_diagram_compute(_histogram(self._state("hist_cece").cpu()), mode="classwise"),
        }

    def reset(self) -> None:
        """Clear the state (and the compactness metric's)."""
        super().reset()
        if self.compactness is not None:
            self.compactness.reset()
