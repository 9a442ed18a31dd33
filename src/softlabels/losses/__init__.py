"""Losses on hard or soft targets for 2D/3D segmentation and classification (``nn.Module``, logits in).

Every loss takes logits ``input (N, C, *spatial)`` and a hard ``(N, *spatial)`` integer or soft ``(N, C, *spatial)``
target, plus optional voxel ``weight`` and ``keep_mask`` ``(N, *spatial)``; see ``docs/methods.md``.
"""

from __future__ import annotations

from softlabels.losses.cross_entropy import KLDivLoss, SoftCrossEntropyLoss
from softlabels.losses.dice import DiceCELoss, DiceLoss
from softlabels.losses.distillation import DistillationLoss, VirtualTeacherLoss
from softlabels.losses.focal import FLSD53_BANDS, FocalLoss
from softlabels.losses.margin import MarginLoss
from softlabels.losses.nacl import NACLLoss, neighbourhood_proportions
from softlabels.losses.online_label_smoothing import OnlineLabelSmoothingLoss

__all__ = [
    "FLSD53_BANDS",
    "DiceCELoss",
    "DiceLoss",
    "DistillationLoss",
    "FocalLoss",
    "KLDivLoss",
    "MarginLoss",
    "NACLLoss",
    "OnlineLabelSmoothingLoss",
    "SoftCrossEntropyLoss",
    "VirtualTeacherLoss",
    "neighbourhood_proportions",
]
