"""Functional metrics: stateless ``f(probs, target, ...)`` twins of the streaming classes in ``softlabels.metrics``."""

from softlabels.metrics.functional.adaptive_calibration import BoundedValue, adaptive_calibration_error
from softlabels.metrics.functional.calibration import ReliabilityDiagram, calibration_error, reliability_diagram
from softlabels.metrics.functional.calibration_pass import CalibrationPass, calibration_pass
from softlabels.metrics.functional.classification import embedding_compactness, top_k_accuracy
from softlabels.metrics.functional.multirater import (
    LeaveOneRaterOut,
    dice_per_threshold,
    generalized_energy_distance,
    leave_one_rater_out,
    thresholded_dice,
)
from softlabels.metrics.functional.proper_scoring import brier_score, negative_log_likelihood
from softlabels.metrics.functional.regions import boundary_band, foreground_mask
from softlabels.metrics.functional.segmentation import (
    average_surface_distance,
    dice_score,
    hausdorff_distance_95,
    iou_score,
    soft_dice_score,
)

__all__ = [
    "BoundedValue",
    "CalibrationPass",
    "LeaveOneRaterOut",
    "ReliabilityDiagram",
    "adaptive_calibration_error",
    "average_surface_distance",
    "boundary_band",
    "brier_score",
    "calibration_error",
    "calibration_pass",
    "dice_per_threshold",
    "dice_score",
    "embedding_compactness",
    "foreground_mask",
    "generalized_energy_distance",
    "hausdorff_distance_95",
    "iou_score",
    "leave_one_rater_out",
    "negative_log_likelihood",
    "reliability_diagram",
    "soft_dice_score",
    "thresholded_dice",
    "top_k_accuracy",
]
