"""Soft-label target construction for 2D and 3D segmentation: label smoothing, SVLS, rater fusion, confidence.

Every function takes hard labels ``(N, *spatial)`` (integer) and returns float targets ``(N, C, *spatial)`` that are
distributions over ``C`` at every voxel (except ``confidence_threshold``, which returns hard labels, and
``confidence_weights``, which returns voxel weights). See ``../shared/methods.md`` §1.2, §3.1, §3.5, §3.6.
"""

from __future__ import annotations

from softlabels.targets.confidence import confidence_soft, confidence_threshold, confidence_weights
from softlabels.targets.raters import FuseRatersd, fuse_raters
from softlabels.targets.smoothing import LabelSmoothingd, boundary_label_smoothing, label_smoothing
from softlabels.targets.svls import SVLSd, svls, svls_kernel

__all__ = [
    "FuseRatersd",
    "LabelSmoothingd",
    "SVLSd",
    "boundary_label_smoothing",
    "confidence_soft",
    "confidence_threshold",
    "confidence_weights",
    "fuse_raters",
    "label_smoothing",
    "svls",
    "svls_kernel",
]
