"""The tiny test networks: sizes, parameter counts by hand, 2D and 3D, options."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from softlabels.models import create_model
from softlabels.models.small import SmallCNN


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 2), (3, 5)])
def test_small_cnn_parameter_count_by_hand(spatial_dims, in_channels, num_classes):
    model = create_model("small_cnn", in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims)
    k = 3**spatial_dims
    expected = in_channels * 8 * k + 2 * 8 + 8 * 16 * k + 2 * 16 + 16 * num_classes + num_classes
    assert sum(p.numel() for p in model.parameters()) == expected
    assert 1_000 <= expected <= 5_000


def test_small_cnn_features_head_and_channels():
    model = create_model("small_cnn", in_channels=2, num_classes=3, channels=(4, 6, 10)).eval()
    x = torch.randn(5, 2, 9, 7)
    features = model.forward_features(x)
    assert features.shape == (5, 10) and model.num_features == 10
    torch.testing.assert_close(model.forward_head(features), model(x))
    assert [m.stride for m in model.features if isinstance(m, torch.nn.Conv2d)] == [(1, 1), (2, 2), (2, 2)]
    with pytest.raises(ValueError, match="`channels` of SmallCNN must hold at least one width"):
        SmallCNN(in_channels=1, num_classes=2, channels=())
    with pytest.raises(ValueError, match="`spatial_dims` of SmallCNN must be 2 or 3; got 1"):
        SmallCNN(in_channels=1, num_classes=2, spatial_dims=1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_small_unet(spatial_dims):
    model = create_model("small_unet", in_channels=2, num_classes=3, spatial_dims=spatial_dims)
    assert isinstance(model, UNet)
    assert (model.channels, model.strides, model.num_res_units) == ((8, 16), (2,), 0)
    assert sum(p.numel() for p in model.parameters()) < 10_000  # 1,973 in 2D, 5,861 in 3D
    x = torch.randn(1, 2, *(6,) * spatial_dims)
    assert model(x).shape == (1, 3, *(6,) * spatial_dims)


def test_small_cnn_norms_and_per_sample_layer_norm():
    kinds = {k: SmallCNN(in_channels=1, num_classes=2, norm=k) for k in ("batch", "layer", "none")}
    assert isinstance(kinds["batch"].features[1], torch.nn.BatchNorm2d)
    assert isinstance(kinds["layer"].features[1], torch.nn.GroupNorm) and kinds["layer"].features[1].num_groups == 1
    assert isinstance(kinds["none"].features[1], torch.nn.Identity)
    x = torch.randn(4, 1, 8, 8)
    model = kinds["layer"].train()
    torch.testing.assert_close(torch.cat([model(x[:2]), model(x[2:])]), model(x))  # no batch statistics
    with pytest.raises(ValueError, match=r"`norm` of SmallCNN must be one of \['batch', 'layer', 'none'\]; got 'bn'"):
        SmallCNN(in_channels=1, num_classes=2, norm="bn")
