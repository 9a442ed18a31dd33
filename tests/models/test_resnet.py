"""ResNet-50: MONAI's and torchvision's stems, parameter counts, torchvision's state-dict layout, features/head."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import ResNet as MonaiResNet

from softlabels.models import create_model
from softlabels.models.resnet import ResNet

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # ResNet-50: (planes, blocks); bottleneck expansion 4


def torchvision_resnet50_keys() -> list[str]:
    """torchvision's ``resnet50().state_dict()`` keys, in order, from its module structure."""
    keys = ["conv1.weight", *(f"bn1.{s}" for s in BN)]
    for stage, (_, blocks) in enumerate(STAGES, start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            for i in (1, 2, 3):
                keys += [f"{p}.conv{i}.weight", *(f"{p}.bn{i}.{s}" for s in BN)]
            if block == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{s}" for s in BN)]
    return [*keys, "fc.weight", "fc.bias"]


def resnet50_parameter_count(
    num_classes: int, in_channels: int = 3, *, downsample_bias: bool = False, spatial_dims: int = 2
) -> int:
    """Parameters of ResNet-50 by hand: convolution weights, BatchNorm scale and shift, the linear head."""
    total = in_channels * 64 * 7**spatial_dims + 2 * 64
    width = 64
    for planes, blocks in STAGES:
        for block in range(blocks):
            total += (
                width * planes
                + 3**spatial_dims * planes * planes
                + planes * 4 * planes
                + 2 * (planes + planes + 4 * planes)
            )
            if block == 0:
                total += width * 4 * planes + 2 * 4 * planes + (4 * planes if downsample_bias else 0)
            width = 4 * planes
    return total + 2048 * num_classes + num_classes


def test_parameter_counts_match_torchvision_and_monai():
    assert resnet50_parameter_count(1000) == 25_557_032  # torchvision's resnet50, the reference number
    with torch.device("meta"):
        torchvision_like = create_model(
            "resnet50", in_channels=3, num_classes=1000, stem="torchvision", bias_downsample=False
        )
        monai_default = create_model("resnet50", in_channels=3, num_classes=1000)
        medical = create_model("resnet50", in_channels=1, num_classes=2, spatial_dims=3)
    assert sum(p.numel() for p in torchvision_like.parameters()) == 25_557_032
    # MONAI's default adds a bias to the four 1×1 downsampling convolutions: 256 + 512 + 1024 + 2048 = 3840
    assert sum(p.numel() for p in monai_default.parameters()) == 25_557_032 + 3840 == 25_560_872
    assert resnet50_parameter_count(1000, downsample_bias=True) == 25_560_872
    expected_3d = resnet50_parameter_count(2, in_channels=1, downsample_bias=True, spatial_dims=3)
    assert sum(p.numel() for p in medical.parameters()) == expected_3d


def test_torchvision_stem_without_downsample_bias_has_torchvision_state_dict_keys_and_shapes():
    with torch.device("meta"):
        model = create_model("resnet50", in_channels=3, num_classes=1000, stem="torchvision", bias_downsample=False)
    state = model.state_dict()
    assert list(state) == torchvision_resnet50_keys() and len(state) == 320
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer3.5.conv2.weight"].shape == (256, 256, 3, 3)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["fc.weight"].shape == (1000, 2048)
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # "v1.5"


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_the_two_stems_have_the_documented_first_layers(spatial_dims):
    models = {
        stem: create_model("resnet50", in_channels=2, num_classes=3, spatial_dims=spatial_dims, stem=stem)
        for stem in ("monai", "torchvision")
    }
    for stem, stride in (("monai", 1), ("torchvision", 2)):
        model = models[stem]
        assert isinstance(model, ResNet) and isinstance(model, MonaiResNet) and model.stem == stem
        assert model.conv1.weight.shape == (64, 2, *(7,) * spatial_dims)
        assert model.conv1.stride == (stride,) * spatial_dims and model.conv1.padding == (3,) * spatial_dims
        assert model.no_max_pool is False
        assert model.maxpool.kernel_size in (3, (3,) * spatial_dims) and model.maxpool.stride in (
            2,
            (2,) * spatial_dims,
        )
    x = torch.zeros(1, 2, *(32,) * spatial_dims)
    for stem, side in (("monai", 16), ("torchvision", 8)):  # halved vs quartered before layer1
        model = models[stem].eval()
        with torch.no_grad():
            stemmed = model.maxpool(model.act(model.bn1(model.conv1(x))))
        assert stemmed.shape == (1, 64, *(side,) * spatial_dims)


def test_forward_features_and_head():
    model = create_model("resnet50", in_channels=1, num_classes=5, stem="torchvision").eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 2048) == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(features), model(x))
        torch.testing.assert_close(model(x), MonaiResNet.forward(model, x))  # MONAI's own forward agrees
    assert create_model("resnet50", in_channels=1, num_classes=5, widen_factor=0.5).num_features == 1024


def test_unknown_stem():
    with pytest.raises(ValueError, match=r"`stem` of ResNet must be one of 'monai', 'torchvision'; got 'tv'"):
        create_model("resnet50", in_channels=1, num_classes=2, stem="tv")
    with pytest.raises(ValueError, match="did you mean 'torchvision'"):
        create_model("resnet50", in_channels=1, num_classes=2, stem="torchvison")
    with pytest.raises(ValueError, match="`layers` of ResNet must have 4 block counts"):
        ResNet(in_channels=1, num_classes=2, spatial_dims=2, layers=(1, 1))
