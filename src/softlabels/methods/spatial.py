"""Segmentation methods that smooth in space: ``boundary_ls``, ``svls``, ``raters_svls`` (§1.2, §3.1) and ``nacl``.

The targets of ``boundary_ls`` and the SVLS pair depend on each voxel's neighbourhood
(:class:`BoundarySmoothedTarget`, :class:`SVLSTarget`); ``nacl`` trains on the hard label with a penalty that ties
the logits to the local class proportions (§3.2).

References: Islam & Glocker, "Spatially Varying Label Smoothing: Capturing Uncertainty from Expert Annotations",
IPMI 2021; Murugesan, Vasudeva, Dolz, Lombaert, Ben Ayed, Galdran, "Neighbor-Aware Calibration of Segmentation
Networks with Penalty-Based Constraints", MedIA 2024.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from softlabels.losses import NACLLoss, SoftCrossEntropyLoss
from softlabels.methods.base import SEGMENTATION, Method, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import LabelTarget, TrainingTarget, _dry_run, _fill_ignored, hard_labels, rater_stack
from softlabels.targets import boundary_label_smoothing, svls
from softlabels.targets.label_checks import _check_num_classes
from softlabels.targets.raters import _stack_raters, _votes
from softlabels.targets.svls import _check_kernel_args, _svls_filter

__all__ = ["BoundarySmoothedTarget", "SVLSTarget"]


@dataclass(frozen=True)
class BoundarySmoothedTarget:
    """Label smoothing on boundary voxels only; ignored voxels get a uniform row and are dropped by ``keep_mask``.

    Example:
        >>> import torch
        >>> target = BoundarySmoothedTarget(2, epsilon=0.5, width=1)({"label": torch.tensor([[[0, 0, 0, 1]]])})
        >>> target.target[0, 1, 0].tolist()
        [0.0, 0.0, 0.25, 0.75]
    """

    num_classes: int
    epsilon: float
    width: int
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        self(_dry_run())

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """The boundary-smoothed target of ``batch["label"]``, with the keep mask of ``ignore_index``."""
        labels = hard_labels(batch)
        target = boundary_label_smoothing(
            labels, self.num_classes, epsilon=self.epsilon, width=self.width, ignore_index=self.ignore_index
        )
        target, keep = _fill_ignored(target, labels, self.ignore_index)
        return TrainingTarget(target, keep_mask=keep)


@dataclass(frozen=True)
class SVLSTarget:
    """SVLS of the hard label (``source="label"``) or of the rater mean (``source="raters"``).

    Example:
        >>> import torch
        >>> target = SVLSTarget(2, sigma=1.0, kernel_size=3, spacing=None)({"label": torch.tensor([[[0, 1]]])})
        >>> target.target.sum(1).allclose(torch.ones(1, 1, 2))
        True
    """

    num_classes: int
    sigma: float
    kernel_size: int
    spacing: Sequence[float] | None
    source: str = "label"

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes, "svls")
        spacing = self.spacing  # one value per spatial axis: 2 or 3 (the number of axes is known at the first batch)
        dims = 3 if isinstance(spacing, Sequence) and not isinstance(spacing, str) and len(spacing) == 3 else 2
        _check_kernel_args(self.sigma, self.kernel_size, dims, spacing, "svls")

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """SVLS of ``batch["label"]`` or of the mean of ``batch["raters"]``."""
        if self.source == "raters":  # SVLS of the rater mean = SVLS of the vote counts / R (linear; no re-check)
            raters = rater_stack(batch)
            counts = _votes(_stack_raters(raters, self.num_classes, "fuse_raters"), self.num_classes)
            scale = 1.0 / raters.shape[0]
            return TrainingTarget(_svls_filter(counts, self.sigma, self.kernel_size, self.spacing, scale=scale))
        return TrainingTarget(svls(hard_labels(batch), self.num_classes, self.sigma, self.kernel_size, self.spacing))


@register_method("boundary_ls", tasks=SEGMENTATION)
def _boundary_ls(
    num_classes: int, *, task: Task | None = None, epsilon: float = 0.5, width: int = 1, ignore_index: int | None = None
) -> Method:
    """Label smoothing on class boundaries only (JDTLosses: ε = 0.5, 3×3 window, §1.2)."""
    build = BoundarySmoothedTarget(num_classes, epsilon=epsilon, width=width, ignore_index=ignore_index)
    return Method("boundary_ls", SoftCrossEntropyLoss(validate_args=False), build)


@register_method("svls", tasks=SEGMENTATION)
def _svls(
    num_classes: int, *, task: Task | None = None, sigma: float = 1.0, kernel_size: int = 3, spacing: Any = None
) -> Method:
    """Spatially varying label smoothing of the hard label map (centre 0.5, Gaussian neighbours, §3.1)."""
    build = SVLSTarget(num_classes, sigma=sigma, kernel_size=kernel_size, spacing=spacing)
    return Method("svls", SoftCrossEntropyLoss(validate_args=False), build)


@register_method("raters_svls", tasks=SEGMENTATION)
def _raters_svls(
    num_classes: int, *, task: Task | None = None, sigma: float = 1.0, kernel_size: int = 3, spacing: Any = None
) -> Method:
    """Multi-rater SVLS: SVLS of the rater mean (= mean of the per-rater SVLS maps, §3.1)."""
    build = SVLSTarget(num_classes, sigma=sigma, kernel_size=kernel_size, spacing=spacing, source="raters")
    return Method("raters_svls", SoftCrossEntropyLoss(validate_args=False), build, requires=("raters",))


@register_method("nacl", tasks=SEGMENTATION)
def _nacl(
    num_classes: int,
    *,
    task: Task | None = None,
    lambda_nacl: float = 0.1,
    kernel_size: int = 3,
    kernel: Literal["mean", "gaussian", "gaussian_monai"] = "mean",
    sigma: float = 1.0,
    distance: Literal["l1", "l2"] = "l1",
    padding: Literal["background", "zeros", "replicate"] | None = None,
    ignore_index: int | None = None,
) -> Method:
    """NACL: CE + λ·|local class proportions − logits| (λ = 0.1, 3-window mean, §3.2)."""
    loss = NACLLoss(
        lambda_nacl, kernel_size, kernel=kernel, sigma=sigma, distance=distance, padding=padding,
        ignore_index=ignore_index, validate_args=False,
    )  # fmt: skip
    build = LabelTarget(num_classes, ignore_index)
    return Method("nacl", loss, build, params={"padding": loss.window["padding"]})  # None → the kernel's own
