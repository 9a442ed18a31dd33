"""Soft-label target construction, 2D/3D and classification: LS, SVLS, rater fusion, confidence, OLS, Tf-KD.

Every function takes hard labels ``(N, *spatial)`` (integer) and returns float targets ``(N, C, *spatial)`` that are
distributions over ``C`` at every voxel (except ``confidence_threshold``, which returns hard labels, and
``confidence_weights``, which returns voxel weights). ``OnlineLabelSmoother`` holds the OLS soft-label matrix;
``virtual_teacher``/``self_teacher`` give the Tf-KD teacher distributions. See ``docs/methods.md``.
"""

from __future__ import annotations

from softlabels.targets.confidence import ConfidenceTargetd, confidence_soft, confidence_threshold, confidence_weights
from softlabels.targets.ols import OnlineLabelSmoother
from softlabels.targets.raters import FuseRatersd, fuse_raters
from softlabels.targets.smoothing import (
    BoundaryLabelSmoothingd,
    LabelSmoothingd,
    boundary_label_smoothing,
    label_smoothing,
)
from softlabels.targets.svls import SVLSd, svls, svls_kernel
from softlabels.targets.tfkd import VirtualTeacherd, self_teacher, virtual_teacher

__all__ = [
    "BoundaryLabelSmoothingd",
    "ConfidenceTargetd",
    "FuseRatersd",
    "LabelSmoothingd",
    "OnlineLabelSmoother",
    "SVLSd",
    "VirtualTeacherd",
    "boundary_label_smoothing",
    "confidence_soft",
    "confidence_threshold",
    "confidence_weights",
    "fuse_raters",
    "label_smoothing",
    "self_teacher",
    "svls",
    "svls_kernel",
    "virtual_teacher",
]
