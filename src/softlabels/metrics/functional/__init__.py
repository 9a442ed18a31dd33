"""Functional metrics: stateless ``f(probs, target, ...)`` twins of the streaming classes in ``softlabels.metrics``."""

from softlabels.metrics.functional.adaptive_calibration import BoundedValue, adaptive_calibration_error
from softlabels.metrics.functional.calibration import ReliabilityDiagram, calibration_error, reliability_diagram
from softlabels.metrics.functional.proper_scoring import brier_score, negative_log_likelihood
from softlabels.metrics.functional.regions import boundary_band, foreground_mask

__all__ = [
    "BoundedValue",
    "ReliabilityDiagram",
    "adaptive_calibration_error",
    "boundary_band",
    "brier_score",
    "calibration_error",
    "foreground_mask",
    "negative_log_likelihood",
    "reliability_diagram",
]
