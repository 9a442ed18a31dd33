"""MONAI segmentation networks: the registered defaults reach MONAI, overrides work, bad options are refused."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet, DynUNet, UNet

from softlabels.models import create_model, model_info


def test_unet_defaults_and_overrides():
    model = create_model("unet", in_channels=2, num_classes=4, spatial_dims=3)
    assert isinstance(model, UNet)
    assert (model.channels, model.strides, model.num_res_units) == ((16, 32, 64, 128), (2, 2, 2), 2)
    assert (model.dimensions, model.in_channels, model.out_channels) == (3, 2, 4)
    assert (model.act, model.norm, model.dropout, model.kernel_size) == ("PRELU", "INSTANCE", 0.0, 3)
    small = create_model("unet", in_channels=1, num_classes=2, channels=[4, 8, 16], strides=[2, 2], num_res_units=0)
    assert (small.channels, small.strides, small.num_res_units) == ((4, 8, 16), (2, 2), 0)
    assert small(torch.zeros(1, 1, 24, 40)).shape == (1, 2, 24, 40)  # any multiple of the total stride 4


def test_unet_refuses_inconsistent_channels_and_strides():
    with pytest.raises(ValueError, match=r"`channels` and `strides` .* got channels=\(8, 16\), strides=\(2, 2\)"):
        create_model("unet", in_channels=1, num_classes=2, channels=(8, 16), strides=(2, 2))
    with pytest.raises(ValueError, match=r"lengths k >= 2 and k - 1"):
        create_model("unet", in_channels=1, num_classes=2, channels=(8,), strides=())


def test_basic_unet_defaults():
    model = create_model("basic_unet", in_channels=1, num_classes=3)
    assert isinstance(model, BasicUNet)
    assert model_info("basic_unet").defaults["features"] == (32, 32, 64, 128, 256, 32)
    assert model.conv_0.conv_0.conv.in_channels == 1 and model.final_conv.out_channels == 3
    assert model.conv_0.conv_0.conv.out_channels == 32 and model.down_4.convs.conv_0.conv.out_channels == 256
    with pytest.raises(
        ValueError, match=r"`features` of basic_unet in create_model must have 6 numbers; got \(8, 16\)"
    ):
        create_model("basic_unet", in_channels=1, num_classes=3, features=(8, 16))


@pytest.mark.parametrize("depth", [3, 5])
def test_dynunet_kernels_and_strides_follow_depth(depth):
    model = create_model("dynunet", in_channels=1, num_classes=2, depth=depth, filters=[4 * 2**i for i in range(depth)])
    assert isinstance(model, DynUNet)
    assert model.kernel_size == [3] * depth
    assert model.strides == [1] + [2] * (depth - 1)
    assert model.upsample_kernel_size == [2] * (depth - 1)
    assert model.deep_supervision is False
    side = 2 ** (depth - 1) * 3
    model.train()  # deep supervision off: one tensor even in training mode
    assert model(torch.zeros(2, 1, side, side)).shape == (2, 2, side, side)


def test_dynunet_default_filters_and_options():
    model = create_model("dynunet", in_channels=1, num_classes=2, spatial_dims=3)
    assert model.filters == [32, 64, 128, 256] and model.kernel_size == [3, 3, 3, 3]
    assert create_model("dynunet", in_channels=1, num_classes=2, kernel_size=5).kernel_size == [5] * 4
    with pytest.raises(ValueError, match="`depth` of dynunet in create_model must be an int >= 3; got 2"):
        create_model("dynunet", in_channels=1, num_classes=2, depth=2)
    with pytest.raises(ValueError, match=r"`filters` of dynunet .* must have depth=4 numbers; got \[8, 16\]"):
        create_model("dynunet", in_channels=1, num_classes=2, filters=[8, 16])
