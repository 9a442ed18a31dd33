"""Post-hoc calibration of trained networks: streaming temperature and vector scaling (Guo et al., ICML 2017)."""

from softlabels.calibration.scaled_model import TemperatureScaledModel
from softlabels.calibration.temperature import TemperatureScaler
from softlabels.calibration.vector import VectorScaler

__all__ = ["TemperatureScaledModel", "TemperatureScaler", "VectorScaler"]
