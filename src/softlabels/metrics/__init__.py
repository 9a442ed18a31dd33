"""Streaming metrics (torchmetrics ``Metric`` classes) with fixed-size, summable float64/int64 state.

Functional twins live in :mod:`softlabels.metrics.functional`; drawing in :mod:`softlabels.metrics.plot`.
"""

from softlabels.metrics.calibration import AdaptiveCalibrationError, CalibrationError
from softlabels.metrics.classification import EmbeddingCompactness, TopKAccuracy
from softlabels.metrics.multirater import GeneralizedEnergyDistance, ThresholdedDice
from softlabels.metrics.proper_scoring import BrierScore, NegativeLogLikelihood
from softlabels.metrics.segmentation import (
    AverageSurfaceDistance,
    DiceScore,
    HausdorffDistance95,
    IoUScore,
    SoftDiceScore,
)

__all__ = [
    "AdaptiveCalibrationError",
    "AverageSurfaceDistance",
    "BrierScore",
    "CalibrationError",
    "DiceScore",
    "EmbeddingCompactness",
    "GeneralizedEnergyDistance",
    "HausdorffDistance95",
    "IoUScore",
    "NegativeLogLikelihood",
    "SoftDiceScore",
    "ThresholdedDice",
    "TopKAccuracy",
]
