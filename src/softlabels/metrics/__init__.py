"""Streaming metrics (torchmetrics ``Metric`` classes) with fixed-size, summable float64/int64 state.

Functional twins live in :mod:`softlabels.metrics.functional`; drawing in :mod:`softlabels.metrics.plot`.
"""

from softlabels.metrics.calibration import AdaptiveCalibrationError, CalibrationError
from softlabels.metrics.proper_scoring import BrierScore, NegativeLogLikelihood

__all__ = [
    "AdaptiveCalibrationError",
    "BrierScore",
    "CalibrationError",
    "NegativeLogLikelihood",
]
