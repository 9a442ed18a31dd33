"""Training: Lightning tasks, callbacks, checkpoint I/O, and the configured runs behind the CLI."""

from __future__ import annotations

from softlabels.training.callbacks import MethodHooks
from softlabels.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from softlabels.training.task import ClassificationTask, SegmentationTask

__all__ = [
    "AtomicCheckpointIO",
    "ClassificationTask",
    "MethodHooks",
    "SegmentationTask",
    "load_checkpoint",
]
