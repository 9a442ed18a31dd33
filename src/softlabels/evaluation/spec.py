"""The metric spec: every reported quantity's one public name, its reference, region, pooling and direction.

This table is the single source of the names in JSON keys, report columns, logs and docs/metrics.md (whose table
:func:`spec_table` renders and a test compares). How each value is pooled over a dataset:

* ``histogram`` — summed per-case calibration histograms, then the error of the sum (exact pooled ECE over voxels);
* ``voxel_mean`` — summed per-case totals over summed voxel (item) counts;
* ``case_mean`` — one value per case (per-class metrics: the mean over the foreground classes with a value), then
  the mean over the cases with a value; per class, the mean over the cases with a value for that class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CLASSIFICATION_SPEC", "SEGMENTATION_SPEC", "MetricSpec", "metric_spec", "spec_for", "spec_table"]

Reference = Literal["label", "soft", "soft_argmax"]
Region = Literal["all", "foreground", "boundary"]
Pooling = Literal["histogram", "voxel_mean", "case_mean", "pooled"]


@dataclass(frozen=True)
class MetricSpec:
    """One reported quantity.

    Attributes:
        name: the public name (JSON key, report column, log key).
        title: a short human title.
        reference: ``"label"``, ``"soft"`` or ``"soft_argmax"`` (:mod:`softlabels.evaluation.references`).
        region: voxels scored: ``"all"``, ``"foreground"`` (reference labels not background) or ``"boundary"``
            (the band of ``boundary_width`` voxels on both sides of every reference boundary).
        pooling: how the dataset value is formed (module docstring).
        higher_is_better: the direction.
        per_class: one value per foreground class (and their mean).
        requires: what a case must carry: ``None``, ``"soft"`` (a soft reference), ``"raters"``, ``"features"``.
        tasks: the tasks that report it.

    Example:
        >>> metric_spec("dice").reference, metric_spec("ece").pooling
        ('soft_argmax', 'histogram')
    """

    name: str
    title: str
    reference: Reference
    region: Region
    pooling: Pooling
    higher_is_better: bool
    per_class: bool = False
    requires: str | None = None
    tasks: tuple[str, ...] = ("segmentation", "classification")


_S, _C = ("segmentation",), ("classification",)
_ALL: tuple[MetricSpec, ...] = (
    MetricSpec("ece", "ECE, top-label (pooled)", "soft", "all", "histogram", False),
    MetricSpec("ece_case_mean", "ECE, top-label (mean of per-case values)", "soft", "all", "case_mean", False),
    MetricSpec("ece_classwise", "ECE, classwise", "soft", "all", "histogram", False),
    MetricSpec("mce", "MCE, top-label (maximum bin gap)", "soft", "all", "histogram", False),
    MetricSpec("ece_foreground", "ECE, top-label, reference foreground", "soft", "foreground", "histogram", False,
               tasks=_S),
    MetricSpec("ece_boundary", "ECE, top-label, boundary band", "soft", "boundary", "histogram", False, tasks=_S),
    MetricSpec("brier", "Brier score (voxel mean)", "soft", "all", "voxel_mean", False),
    MetricSpec("nll", "NLL (voxel mean)", "soft", "all", "voxel_mean", False),
    MetricSpec("dice", "Dice (argmax vs argmax of the reference)", "soft_argmax", "all", "case_mean", True,
               per_class=True, tasks=_S),
    MetricSpec("soft_dice", "soft Dice (probabilities vs soft reference)", "soft", "all", "case_mean", True,
               per_class=True, tasks=_S),
    MetricSpec("hd95", "HD95 (units of the spacing)", "soft_argmax", "all", "case_mean", False, per_class=True,
               tasks=_S),
    MetricSpec("thresholded_dice", "thresholded Dice (QUBIQ)", "soft", "all", "case_mean", True, per_class=True,
               requires="soft", tasks=_S),
    MetricSpec("ged", "GED² (argmax vs raters)", "label", "all", "case_mean", False, requires="raters", tasks=_S),
    MetricSpec("top1", "Top-1 accuracy", "label", "all", "case_mean", True, tasks=_C),
    MetricSpec("top5", "Top-5 accuracy", "label", "all", "case_mean", True, tasks=_C),
    MetricSpec("compactness", "embedding compactness", "label", "all", "pooled", True, requires="features", tasks=_C),
)  # fmt: skip
SEGMENTATION_SPEC: tuple[MetricSpec, ...] = tuple(m for m in _ALL if "segmentation" in m.tasks)
"""The segmentation metrics, in report order.

Example:
    >>> [m.name for m in SEGMENTATION_SPEC][:3]
    ['ece', 'ece_case_mean', 'ece_classwise']
"""
CLASSIFICATION_SPEC: tuple[MetricSpec, ...] = tuple(m for m in _ALL if "classification" in m.tasks)
"""The classification metrics, in report order.

Example:
    >>> [m.name for m in CLASSIFICATION_SPEC][-3:]
    ['top1', 'top5', 'compactness']
"""
_BY_NAME = {m.name: m for m in _ALL}


def metric_spec(name: str) -> MetricSpec:
    """The spec of the metric ``name``.

    Raises:
        ValueError: an unknown name (the known ones are listed).

    Example:
        >>> metric_spec("hd95").higher_is_better
        False
    """
    if name not in _BY_NAME:
        raise ValueError(f"unknown metric {name!r}; the metrics are {sorted(_BY_NAME)}.")
    return _BY_NAME[name]


def spec_for(task: str) -> tuple[MetricSpec, ...]:
    """The metrics of ``task`` (``"segmentation"`` or ``"classification"``).

    Example:
        >>> "top1" in [m.name for m in spec_for("classification")]
        True
    """
    if task not in ("segmentation", "classification"):
        raise ValueError(f"task must be 'segmentation' or 'classification'; got {task!r}.")
    return SEGMENTATION_SPEC if task == "segmentation" else CLASSIFICATION_SPEC


def spec_table() -> str:
    """The Markdown table of every metric (docs/metrics.md holds exactly this).

    Example:
        >>> spec_table().splitlines()[0].startswith("| name |")
        True
    """
    lines = [
        "| name | quantity | reference | region | dataset value | better | per class | needs | tasks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in _ALL:
        lines.append(
            f"| `{m.name}` | {m.title} | {m.reference} | {m.region} | {m.pooling} | "
            f"{'higher' if m.higher_is_better else 'lower'} | {'yes' if m.per_class else ''} | {m.requires or ''} | "
            f"{', '.join(m.tasks)} |"
        )
    return "\n".join(lines)
