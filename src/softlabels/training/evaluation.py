"""The validation/test metrics of a training task: the foundation's streaming metrics, fed batch by batch.

References (``reference="auto"``): overlap and distance metrics (Dice, HD95, top-k, compactness) and the boundary
band use the hard label ``batch["label"]``; calibration and proper scores (ECE, classwise ECE, boundary ECE, Brier,
NLL) and the QUBIQ thresholded Dice use the **soft reference** when the batch has one — the known truth
``"true_probs"`` (synthetic data), else a given ``"soft_label"``, else the mean of the ``"raters"`` — and the hard
label otherwise. ``reference="label"`` always uses the hard label. Every metric keeps fixed-size, summable state, so
the values are exact over the whole split and synced across DDP processes by torchmetrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from softlabels._options import look_up_option
from softlabels.metrics import (
    BrierScore,
    CalibrationError,
    DiceScore,
    EmbeddingCompactness,
    HausdorffDistance95,
    NegativeLogLikelihood,
    ThresholdedDice,
    TopKAccuracy,
)
from softlabels.metrics.functional.regions import boundary_band

__all__ = ["CLASSIFICATION_METRICS", "SEGMENTATION_METRICS", "CaseNames", "MetricSuite", "batch_references"]

SEGMENTATION_METRICS: tuple[str, ...] = (
    "dice", "hd95", "ece", "ece_classwise", "ece_boundary", "brier", "nll", "thresholded_dice",
)  # fmt: skip
"""The segmentation metrics a task can report.

Example:
    >>> "ece_boundary" in SEGMENTATION_METRICS
    True
"""
CLASSIFICATION_METRICS: tuple[str, ...] = ("top1", "top5", "ece", "ece_classwise", "brier", "nll", "compactness")
"""The classification metrics a task can report.

Example:
    >>> CLASSIFICATION_METRICS[:2]
    ('top1', 'top5')
"""
_SOFT = {"ece", "ece_classwise", "ece_boundary", "brier", "nll", "thresholded_dice"}


class CaseNames:
    """Unique per-sample names in loader order, for report rows and output files.

    A sample is named by its batch's ``"case"`` entry (``case_<index>`` without one). ``"case"`` is the grouping
    unit of a source (the patient of LIDC, the slab of MNI152), so it can repeat within a split: the second and later
    samples of a name get ``_1``, ``_2``, … appended (skipping names already used), so no output overwrites another.

    Example:
        >>> names = CaseNames()
        >>> names({"case": ["p1", "p1"]}, 2) + names({"case": ["p1", "p2"]}, 2) + names({}, 1)
        ['p1', 'p1_1', 'p1_2', 'p2', 'case_00004']
    """

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._index = 0

    def __call__(self, batch: Mapping[str, Any], count: int) -> list[str]:
        """The names of the ``count`` samples of ``batch``."""
        given = batch.get("case")
        names = []
        for i in range(count):
            base = str(given[i]) if isinstance(given, list | tuple) else f"case_{self._index:05d}"
            self._index += 1
            name, k = base, 0
            while name in self._used:
                k += 1
                name = f"{base}_{k}"
            self._used.add(name)
            names.append(name)
        return names


def batch_references(batch: Mapping[str, Any], num_classes: int, spatial_dims: int) -> tuple[Tensor, Tensor | None]:
    """The hard label ``(N, *spatial)`` and the soft reference ``(N, C, *spatial)`` (or ``None``) of a batch.

    Example:
        >>> hard, soft = batch_references({"label": torch.zeros(2, 1, 4, 4, dtype=torch.long)}, 2, 2)
        >>> tuple(hard.shape), soft is None
        ((2, 4, 4), True)
    """
    label = batch["label"]
    if label.ndim == spatial_dims + 2 and label.shape[1] == 1:
        label = label[:, 0]
    for key in ("true_probs", "soft_label"):
        value = batch.get(key)
        if isinstance(value, Tensor):
            return label.long(), value.float()
    raters = batch.get("raters")
    if isinstance(raters, Tensor):
        onehot = torch.nn.functional.one_hot(raters.long(), num_classes).float()  # (N, R, *S, C)
        return label.long(), onehot.mean(1).movedim(-1, 1)
    return label.long(), None


class MetricSuite(nn.Module):
    """The chosen metrics of one task and split; :meth:`update` per batch, :meth:`compute` per epoch.

    Args:
        task: ``"segmentation"`` or ``"classification"``.
        num_classes: classes ``C``.
        names: the metrics to report (a subset of :data:`SEGMENTATION_METRICS` / :data:`CLASSIFICATION_METRICS`;
            ``None``: all of the task, without ``compactness`` when the model gives no ``num_features``).
        spatial_dims: 2 or 3 (segmentation), 0 (classification).
        n_bins: calibration bins.
        boundary_width: half-width of the boundary band (voxels) for ``ece_boundary``.
        reference: ``"auto"`` (soft reference when the batch has one) or ``"label"``.
        num_features: embedding size for ``compactness`` (classification).

    Example:
        >>> suite = MetricSuite("classification", 3, names=("top1", "nll"))
        >>> suite.update(torch.tensor([[0.7, 0.2, 0.1]]), {"label": torch.tensor([0])})
        >>> sorted(suite.compute())
        ['nll', 'top1']
    """

    def __init__(
        self,
        task: Literal["segmentation", "classification"],
        num_classes: int,
        *,
        names: Sequence[str] | None = None,
        spatial_dims: int = 2,
        n_bins: int = 15,
        boundary_width: float = 2.0,
        reference: Literal["auto", "label"] = "auto",
        num_features: int | None = None,
    ) -> None:
        super().__init__()
        self.task = look_up_option("task", task, ("segmentation", "classification"), where="MetricSuite")
        allowed = SEGMENTATION_METRICS if task == "segmentation" else CLASSIFICATION_METRICS
        chosen = tuple(allowed if names is None else names)
        if names is None and not num_features:
            chosen = tuple(n for n in chosen if n != "compactness")
        for name in chosen:
            look_up_option("metric", name, allowed, where=f"MetricSuite ({task})")
        if "compactness" in chosen and not num_features:
            raise ValueError("MetricSuite needs `num_features` (the embedding size) for the 'compactness' metric.")
        self.reference = look_up_option("reference", reference, ("auto", "label"), where="MetricSuite")
        self.num_classes, self.spatial_dims, self.boundary_width = num_classes, spatial_dims, boundary_width
        self.metrics = nn.ModuleDict({n: _make(n, num_classes, n_bins, num_features) for n in chosen})
        self.updated: set[str] = set()

    @torch.no_grad()
    def update(self, probs: Tensor, batch: Mapping[str, Any], features: Tensor | None = None) -> None:
        """Add one batch: ``probs (N, C, *spatial)``, the batch dict (references), the embeddings ``(N, F)``."""
        dims = self.spatial_dims if self.task == "segmentation" else 0
        hard, soft = batch_references(batch, self.num_classes, dims)
        hard, soft = hard.to(probs.device), None if soft is None else soft.to(probs.device)
        calib = soft if (soft is not None and self.reference == "auto") else hard
        band = boundary_band(hard, width=self.boundary_width) if "ece_boundary" in self.metrics else None
        for name, module in self.metrics.items():
            metric: Any = module
            if name == "thresholded_dice" and soft is None:
                continue
            if name == "compactness":
                if features is not None:
                    metric.update(features, hard)
                    self.updated.add(name)
                continue
            target = calib if name in _SOFT else hard
            if name == "ece_boundary":
                metric.update(probs, target, mask=band)
            else:
                metric.update(probs, target)
            self.updated.add(name)

    def compute(self) -> dict[str, float]:
        """One number per updated metric (per-class metrics: the mean over foreground classes, NaN ignored)."""
        out: dict[str, float] = {}
        for name, module in self.metrics.items():
            if name not in self.updated:
                continue
            metric: Any = module
            value = metric.compute().double().reshape(-1)
            finite = value[~torch.isnan(value)]
            out[name] = float(finite.mean()) if finite.numel() else math.nan
        return out

    def reset(self) -> None:
        """Clear every metric's state."""
        for module in self.metrics.values():
            metric: Any = module
            metric.reset()
        self.updated.clear()


def _make(name: str, num_classes: int, n_bins: int, num_features: int | None) -> nn.Module:
    c = num_classes
    builders = {
        "dice": lambda: DiceScore(c, include_background=False),
        "hd95": lambda: HausdorffDistance95(c, include_background=False),
        "ece": lambda: CalibrationError(c, n_bins=n_bins),
        "ece_classwise": lambda: CalibrationError(c, n_bins=n_bins, mode="classwise"),
        "ece_boundary": lambda: CalibrationError(c, n_bins=n_bins),
        "brier": lambda: BrierScore(c),
        "nll": lambda: NegativeLogLikelihood(c),
        "thresholded_dice": lambda: ThresholdedDice(c, include_background=False),
        "top1": lambda: TopKAccuracy(k=1),
        "top5": lambda: TopKAccuracy(k=min(5, c)),
        "compactness": lambda: EmbeddingCompactness(c, num_features=int(num_features or 1)),
    }
    return builders[name]()
