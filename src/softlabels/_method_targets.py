"""Batch → training target adapters of the method registry (``softlabels.methods``): read batch keys, call targets.

Each adapter is a small picklable callable (it crosses DDP spawn and DataLoader workers) that reads the keys
documented in :mod:`softlabels.methods` and returns a :class:`TrainingTarget`. Soft targets of ignored voxels are
filled with the uniform distribution (so they remain valid distributions) and dropped through ``keep_mask``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from softlabels._checks import check_distribution
from softlabels._options import look_up_option
from softlabels.targets import (
    boundary_label_smoothing,
    confidence_soft,
    confidence_threshold,
    confidence_weights,
    fuse_raters,
    label_smoothing,
    svls,
)
from softlabels.targets.raters import _stack_raters, _votes
from softlabels.targets.smoothing import _check_ignore_index, _check_labels, _check_num_classes
from softlabels.targets.svls import _check_kernel_args, _svls_filter
from softlabels.targets.tfkd import _check_temperature, self_teacher

# Every builder checks its options when it is made (``__post_init__``), with the checks of the target function it
# calls (a dry run on one voxel where they are inline), so ``create_method`` refuses a bad option at once.
_ONE_LABEL = (1, 1, 1)  # the (N, H, W) shape of the dry runs


def _dry_run() -> dict[str, Tensor]:
    """A one-voxel batch of class 0 that a builder's ``__call__`` turns into a target: its options get checked."""
    return {"label": torch.zeros(_ONE_LABEL, dtype=torch.long)}


@dataclass(frozen=True)
class TrainingTarget:
    """What a loss is called with: the target and, optionally, voxel weights, a keep mask and a teacher.

    ``target`` is hard ``(N, *spatial)`` integer or soft ``(N, C, *spatial)``; ``weight`` float and ``keep_mask``
    bool are ``(N, *spatial)``; ``teacher`` is a distribution ``(N, C, *spatial)`` (distillation methods).

    Example:
        >>> TrainingTarget(torch.tensor([1, 0])).weight is None
        True
    """

    target: Tensor
    weight: Tensor | None = None
    keep_mask: Tensor | None = None
    teacher: Tensor | None = None


def _tensor(batch: Mapping[str, Any], key: str) -> Tensor:
    value = batch[key]
    if not isinstance(value, Tensor):
        raise TypeError(f"`batch[{key!r}]` must be a torch.Tensor; got {type(value).__name__}.")
    return value


def hard_labels(batch: Mapping[str, Any]) -> Tensor:
    """``batch["label"]`` as ``(N, *spatial)``: a channel axis of size 1 is dropped when the image has as many axes."""
    labels = _tensor(batch, "label")
    image = batch.get("image")
    if isinstance(image, Tensor) and labels.ndim == image.ndim and labels.ndim > 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    return labels


def _voxel_map(batch: Mapping[str, Any], key: str, like: Tensor) -> Tensor:
    value = _tensor(batch, key)
    if value.ndim == like.ndim + 1 and value.shape[1] == 1:
        value = value[:, 0]
    return value


def rater_stack(batch: Mapping[str, Any]) -> Tensor:
    """``batch["raters"] (N, R, *spatial)`` as ``(R, N, *spatial)``, the layout of :func:`fuse_raters`."""
    raters = _tensor(batch, "raters")
    if raters.ndim < 2:
        raise ValueError(f"`batch['raters']` must be (N, R, *spatial) or (N, R); got shape {tuple(raters.shape)}.")
    return raters.movedim(1, 0)


def _fill_ignored(target: Tensor, labels: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """Uniform rows at ignored voxels (still a distribution) and the keep mask that drops them."""
    if ignore_index is None:
        return target, None
    ignored = labels == ignore_index
    if not bool(ignored.any()):
        return target, None
    uniform = torch.full_like(target, 1.0 / target.shape[1])
    return torch.where(ignored.unsqueeze(1), uniform, target), ~ignored


@dataclass(frozen=True)
class LabelTarget:
    """The hard label itself, checked to hold classes in ``[0, C)`` (or ``ignore_index``)."""

    num_classes: int
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        _check_ignore_index(self.ignore_index, _check_num_classes(self.num_classes, "make_target"), "make_target")

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        labels = hard_labels(batch)
        _check_labels(
            labels,
            self.num_classes,
            "make_target",
            spatial=False,
            ignore_index=self.ignore_index,
            name="batch['label']",
        )
        return TrainingTarget(labels)


@dataclass(frozen=True)
class SmoothedTarget:
    """Label smoothing of the hard label."""

    num_classes: int
    epsilon: float
    convention: str
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        self(_dry_run())

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        labels = hard_labels(batch)
        target = label_smoothing(
            labels, self.num_classes, epsilon=self.epsilon, convention=self.convention,  # type: ignore[arg-type]
            ignore_index=self.ignore_index,
        )  # fmt: skip
        target, keep = _fill_ignored(target, labels, self.ignore_index)
        return TrainingTarget(target, keep_mask=keep)


@dataclass(frozen=True)
class BoundarySmoothedTarget:
    """Label smoothing on boundary voxels only."""

    num_classes: int
    epsilon: float
    width: int
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        self(_dry_run())

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        labels = hard_labels(batch)
        target = boundary_label_smoothing(
            labels, self.num_classes, epsilon=self.epsilon, width=self.width, ignore_index=self.ignore_index
        )
        target, keep = _fill_ignored(target, labels, self.ignore_index)
        return TrainingTarget(target, keep_mask=keep)


@dataclass(frozen=True)
class SVLSTarget:
    """SVLS of the hard label (``source="label"``) or of the rater mean (``source="raters"``)."""

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
        if self.source == "raters":  # SVLS of the rater mean = SVLS of the vote counts / R (linear; no re-check)
            raters = rater_stack(batch)
            counts = _votes(_stack_raters(raters, self.num_classes, "fuse_raters"), self.num_classes)
            scale = 1.0 / raters.shape[0]
            return TrainingTarget(_svls_filter(counts, self.sigma, self.kernel_size, self.spacing, scale=scale))
        return TrainingTarget(svls(hard_labels(batch), self.num_classes, self.sigma, self.kernel_size, self.spacing))


@dataclass(frozen=True)
class RaterTarget:
    """Fusion of the raters' maps: mean, weighted mean or majority."""

    num_classes: int
    method: str
    reference_quirk: bool = False

    def __post_init__(self) -> None:
        self({"raters": torch.zeros(1, 1, dtype=torch.long)})

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        fused = fuse_raters(
            rater_stack(batch), self.num_classes, method=self.method,  # type: ignore[arg-type]
            reference_quirk=self.reference_quirk,
        )  # fmt: skip
        return TrainingTarget(fused)


@dataclass(frozen=True)
class GivenSoftTarget:
    """A soft target in the batch (``batch["soft_label"]``, or ``key``), checked to be a distribution."""

    num_classes: int
    key: str = "soft_label"

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes, "make_target")

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        soft = _tensor(batch, self.key)
        if soft.ndim < 2 or soft.shape[1] != self.num_classes or not soft.is_floating_point():
            raise ValueError(
                f"`batch[{self.key!r}]` must be a float (N, C={self.num_classes}, *spatial) distribution; "
                f"got {soft.dtype} of shape {tuple(soft.shape)}."
            )
        check_distribution(soft, self.key, f"batch[{self.key!r}]")
        return TrainingTarget(soft)


@dataclass(frozen=True)
class ConfidenceTarget:
    """Annotator-confidence targets: thresholded hard labels, soft, or hard with confidence weights."""

    num_classes: int
    mode: str
    tau: float = 0.6
    below: str = "background"
    ignore_index: int = 255

    def __post_init__(self) -> None:
        self({**_dry_run(), "confidence": torch.ones(_ONE_LABEL)})

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        labels = hard_labels(batch)
        confidence = _voxel_map(batch, "confidence", labels)
        if self.mode == "threshold":
            hard = confidence_threshold(
                labels, confidence, self.num_classes, tau=self.tau, below=self.below,  # type: ignore[arg-type]
                ignore_index=self.ignore_index,
            )  # fmt: skip
            return TrainingTarget(hard)
        if self.mode == "soft":
            return TrainingTarget(confidence_soft(labels, confidence, self.num_classes))
        return TrainingTarget(labels, weight=confidence_weights(confidence))


@dataclass
class SelfTeacherTarget:
    """The hard label with a trained teacher's softened outputs on ``batch["image"]`` (Tf-KD_self)."""

    num_classes: int
    temperature: float
    teacher: nn.Module | None = None

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes, "self_teacher", 2)
        _check_temperature(self.temperature, "self_teacher")

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        if self.teacher is None:
            raise ValueError(
                "method 'tfkd_self' needs a trained teacher network: pass teacher= to create_method or call "
                "method.prepare(teacher=...)."
            )
        image = _tensor(batch, "image")
        self.teacher.to(image.device).eval()
        with torch.no_grad():
            logits = self.teacher(image)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the teacher of 'tfkd_self' gives {logits.shape[1]} classes; expected {self.num_classes}."
            )
        return TrainingTarget(hard_labels(batch), teacher=self_teacher(logits, temperature=self.temperature))


def set_teacher(method: Any, *, teacher: nn.Module) -> None:
    """Preparation of ``tfkd_self``: attach a trained, frozen teacher network."""
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"`teacher` of method 'tfkd_self' must be an nn.Module; got {type(teacher).__name__}.")
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    method.build_target.teacher = teacher


def source_target(source: str, num_classes: int, ignore_index: int | None = None) -> tuple[Any, tuple[str, ...]]:
    """The builder and required keys of a named soft-target source (``dml``'s ``source``)."""
    builders: dict[str, tuple[Any, tuple[str, ...]]] = {
        "label": (LabelTarget(num_classes, ignore_index), ("label",)),
        "raters_mean": (RaterTarget(num_classes, "mean"), ("raters",)),
        "raters_svls": (SVLSTarget(num_classes, 1.0, 3, None, source="raters"), ("raters",)),
        "svls": (SVLSTarget(num_classes, 1.0, 3, None), ("label",)),
        "soft_label": (GivenSoftTarget(num_classes), ("soft_label",)),
    }
    return builders[look_up_option("source", source, builders, where="method 'dml'")]
