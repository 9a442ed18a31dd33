"""Decisions with guarantees from calibrated probabilities: conformal risk control and conformal prediction sets.

* Segmentation: per-structure thresholds ``p >= t̂`` whose expected false-negative (or false-discovery) rate on new
  cases is ``≤ α`` (conformal risk control, Angelopoulos et al., ICLR 2024), or ``≤ α`` with probability ``1 − δ``
  (Learn then Test, Angelopoulos et al., 2021), fitted exactly and streaming from per-case histograms
  (:class:`SegmentationRiskControl`).
* Classification: LAC / APS / RAPS prediction sets with marginal or class-conditional (Mondrian) coverage ``1 − α``.
* Files: :func:`write_conformal` / :func:`read_conformal` (JSON).
"""

from softlabels.conformal.files import read_conformal, read_provenance, write_conformal
from softlabels.conformal.prediction_sets import (
    ConformalSets,
    class_coverage,
    class_scores,
    conformal_quantile,
    coverage,
    fit_prediction_sets,
    set_sizes,
)
from softlabels.conformal.risk_control import (
    ConformalThresholds,
    SegmentationRiskControl,
    crc_index,
    fit_thresholds,
    hoeffding_bentkus_pvalue,
    ltt_index,
)
from softlabels.conformal.risk_curves import case_curves, threshold_levels

__all__ = [
    "ConformalSets",
    "ConformalThresholds",
    "SegmentationRiskControl",
    "case_curves",
    "class_coverage",
    "class_scores",
    "conformal_quantile",
    "coverage",
    "crc_index",
    "fit_prediction_sets",
    "fit_thresholds",
    "hoeffding_bentkus_pvalue",
    "ltt_index",
    "read_conformal",
    "read_provenance",
    "set_sizes",
    "threshold_levels",
    "write_conformal",
]
