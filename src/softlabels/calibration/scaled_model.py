"""A network and its fitted post-hoc scaler in one module: ``forward`` returns the scaled logits."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from softlabels.calibration.temperature import TemperatureScaler
from softlabels.calibration.vector import VectorScaler

__all__ = ["TemperatureScaledModel"]


class TemperatureScaledModel(nn.Module):
    """Wrap ``model`` so that ``forward`` returns temperature-scaled logits ``model(x) / T``.

    Shapes follow ``model``: logits ``(N, C, *spatial)`` in, same shape out. ``state_dict`` holds both the model
    weights (prefix ``model.``) and the temperature (``scaler.log_temperature``), so one ``torch.save`` keeps both.

    Reference: Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017.

    Args:
        model: a network returning logits.
        scaler: a (fitted) :class:`TemperatureScaler` or :class:`~softlabels.calibration.VectorScaler`.

    Example:
        >>> import torch
        >>> wrapped = TemperatureScaledModel(torch.nn.Identity(), TemperatureScaler(2.0))
        >>> wrapped(torch.tensor([[4.0, 2.0]]))
        tensor([[2., 1.]], grad_fn=<DivBackward0>)
        >>> sorted(wrapped.state_dict())
        ['scaler.log_temperature']
    """

    def __init__(self, model: nn.Module, scaler: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` of TemperatureScaledModel must be an nn.Module; got {type(model).__name__}.")
        if not isinstance(scaler, TemperatureScaler | VectorScaler):
            raise TypeError(
                "`scaler` of TemperatureScaledModel must be a TemperatureScaler or a VectorScaler; "
                f"got {type(scaler).__name__}."
            )
        self.model = model
        self.scaler = scaler

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """Return ``model(*args, **kwargs) / T``."""
        return self.scaler(self.model(*args, **kwargs))
