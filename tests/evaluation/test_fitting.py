import math

import pytest
import torch

from softlabels.calibration import TemperatureScaler, VectorScaler
from softlabels.evaluation.fitting import ObservedLogits, fit_scaler


def _loader(seed=0, with_truth=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        raters = torch.randint(0, 3, (2, 4, 6, 6), generator=g)
        votes = torch.nn.functional.one_hot(raters, 3).float().mean(1).movedim(-1, 1)
        image = 6 * votes + torch.randn(2, 3, 6, 6, generator=g)  # the "logits": informative, over-confident
        batch = {
            "image": image,
            "label": raters[:, :1],
            "raters": raters,
            "true_probs": torch.softmax(image / 3, 1),  # p*: what T = 3 would give
        }
        out.append(batch if with_truth else {k: v for k, v in batch.items() if k != "true_probs"})
    return out


def test_the_stream_is_re_iterable_and_carries_the_observed_reference():
    stream = ObservedLogits(lambda x: x, _loader(), num_classes=3, spatial_dims=2)
    first, second = list(stream), list(stream)
    assert len(first) == len(second) == 3
    target = first[0][1]
    assert target.shape == (2, 3, 6, 6) and torch.allclose(target.sum(1), torch.ones(2, 6, 6))
    assert torch.equal(target, second[0][1])
    label = ObservedLogits(lambda x: x, _loader(), num_classes=3, spatial_dims=2, reference="label")
    assert not next(iter(label))[1].is_floating_point()


def test_temperature_and_vector_scaling_ignore_true_probs_unless_named():
    with_truth = ObservedLogits(lambda x: x, _loader(), num_classes=3, spatial_dims=2)
    without = ObservedLogits(lambda x: x, _loader(with_truth=False), num_classes=3, spatial_dims=2)
    t_with = fit_scaler(TemperatureScaler(), with_truth).temperature_
    assert t_with == fit_scaler(TemperatureScaler(), without).temperature_ and math.isfinite(t_with)
    v_with = fit_scaler(VectorScaler(3), with_truth)
    v_without = fit_scaler(VectorScaler(3), without)
    assert torch.equal(v_with.weight, v_without.weight)
    named = ObservedLogits(lambda x: x, _loader(), num_classes=3, spatial_dims=2, reference="true_probs")
    assert fit_scaler(TemperatureScaler(), named).temperature_ != pytest.approx(t_with, rel=1e-3)
