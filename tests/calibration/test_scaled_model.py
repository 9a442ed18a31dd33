import io

import pytest
import torch

from softlabels.calibration import TemperatureScaledModel, TemperatureScaler, VectorScaler


@pytest.mark.parametrize("scaler", [TemperatureScaler(2.0), VectorScaler(3)])
def test_the_wrapped_model_returns_scaled_logits_and_saves_both_parts(scaler):
    model = TemperatureScaledModel(torch.nn.Conv2d(1, 3, 1), scaler)
    x = torch.randn(2, 1, 4, 4)
    assert torch.allclose(model(x), scaler(model.model(x)))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    blank = TemperatureScaler() if isinstance(scaler, TemperatureScaler) else VectorScaler(3)
    fresh = TemperatureScaledModel(torch.nn.Conv2d(1, 3, 1), blank)
    fresh.load_state_dict(torch.load(buffer))
    assert torch.equal(fresh(x), model(x))


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="`model` of TemperatureScaledModel"):
        TemperatureScaledModel("net", TemperatureScaler())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`scaler` of TemperatureScaledModel"):
        TemperatureScaledModel(torch.nn.Identity(), torch.nn.Identity())  # type: ignore[arg-type]
