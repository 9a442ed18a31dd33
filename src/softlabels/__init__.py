"""softlabels: soft labels and exact, streaming calibration metrics for medical-image models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
