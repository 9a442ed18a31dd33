"""Post-hoc calibration of trained networks: streaming temperature scaling (Guo et al., ICML 2017)."""

from softlabels.calibration.temperature import TemperatureScaledModel, TemperatureScaler

__all__ = ["TemperatureScaledModel", "TemperatureScaler"]
