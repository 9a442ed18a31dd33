"""VGG-19 (and with BatchNorm): torchvision's parameter counts, keys and computation; 2D only.

VGG-19 has 143 M parameters: the counts and keys are read off models built on the ``meta`` device (no memory, no
initialisation), and one real model is built for the whole module, run once on a 32×32 image.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from softlabels.models import create_model
from softlabels.models.vgg import VGG

# torchvision's cfgs["E"]
CONFIG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(batch_norm: bool) -> list[str]:
    """torchvision's ``vgg19[_bn]().state_dict()`` keys: one flat features Sequential, linear layers 0, 3, 6."""
    keys, index, channels = [], 0, 3
    for layer in CONFIG_E:
        if layer == "M":
            index += 1
            continue
        keys += [f"features.{index}.weight", f"features.{index}.bias"]
        if batch_norm:
            keys += [f"features.{index + 1}.{s}" for s in BN]
        index += 3 if batch_norm else 2  # conv, [bn,] relu
        channels = layer
    assert channels == 512
    return keys + [f"classifier.{i}.{s}" for i in (0, 3, 6) for s in ("weight", "bias")]


def parameter_count(batch_norm: bool, num_classes: int = 1000, in_channels: int = 3) -> int:
    """By hand: 3×3 convolutions with bias, BatchNorm scale and shift, 25088 → 4096 → 4096 → C."""
    total, channels = 0, in_channels
    for layer in CONFIG_E:
        if layer != "M":
            total += channels * layer * 9 + layer + (2 * layer if batch_norm else 0)
            channels = layer
    return total + (512 * 7 * 7 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * num_classes


@pytest.fixture(scope="module")
def vgg19() -> VGG:
    torch.manual_seed(0)
    return create_model("vgg19", in_channels=3, num_classes=1000).eval()


@pytest.mark.parametrize(
    ("name", "batch_norm", "count"), [("vgg19", False, 143_667_240), ("vgg19_bn", True, 143_678_248)]
)
def test_parameter_counts_and_keys_are_torchvision_s(name, batch_norm, count):
    assert parameter_count(batch_norm) == count  # torchvision's vgg19 / vgg19_bn, the reference numbers
    with torch.device("meta"):
        model = create_model(name, in_channels=3, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == count
    state = model.state_dict()
    assert list(state) == torchvision_keys(batch_norm)
    assert len(state) == (118 if batch_norm else 38)
    assert state["features.0.weight"].shape == (64, 3, 3, 3)
    assert state["classifier.0.weight"].shape == (4096, 25088)
    assert state["classifier.3.weight"].shape == (4096, 4096)
    assert state["classifier.6.weight"].shape == (1000, 4096)
    last_conv = "features.49.weight" if batch_norm else "features.34.weight"
    assert state[last_conv].shape == (512, 512, 3, 3)
    if batch_norm:
        assert state["features.1.running_mean"].shape == (64,)
    assert isinstance(model.features[-1], torch.nn.MaxPool2d) and len(model.features) == (53 if batch_norm else 37)
    assert model.avgpool.output_size == (7, 7)
    assert [type(m).__name__ for m in model.classifier] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert model.classifier[2].p == model.classifier[5].p == 0.5


def test_in_channels_and_num_classes_change_only_the_first_and_last_layers():
    with torch.device("meta"):
        reference = create_model("vgg19_bn", in_channels=3, num_classes=1000).state_dict()
        other = create_model("vgg19_bn", in_channels=1, num_classes=4).state_dict()
    changed = {k for k in reference if other[k].shape != reference[k].shape}
    assert changed == {"features.0.weight", "classifier.6.weight", "classifier.6.bias"}


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's VGG-19 computation (eval mode) with torch.nn.functional on its state dict."""
    index = 0
    for layer in CONFIG_E:
        if layer == "M":
            x, index = F.max_pool2d(x, 2, 2), index + 1
        else:
            x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
            index += 2
    x = torch.flatten(F.adaptive_avg_pool2d(x, (7, 7)), 1)
    x = F.relu(F.linear(x, state["classifier.0.weight"], state["classifier.0.bias"]))
    x = F.relu(F.linear(x, state["classifier.3.weight"], state["classifier.3.bias"]))
    return F.linear(x, state["classifier.6.weight"], state["classifier.6.bias"])


def test_a_32_pixel_image_runs_through_the_adaptive_pooling_as_torchvision(vgg19):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = vgg19(x)
        assert logits.shape == (1, 1000)
        torch.testing.assert_close(logits, reference_forward(vgg19.state_dict(), x), rtol=1e-4, atol=1e-6)
        features = vgg19.forward_features(x)
        assert features.shape == (1, 4096) == (1, vgg19.num_features)
        torch.testing.assert_close(vgg19.forward_head(features), logits)


@torch.no_grad()
def test_initialisation_as_torchvision(vgg19):
    assert all(float(vgg19.classifier[i].bias.abs().max()) == 0 for i in (0, 3, 6))
    assert abs(float(vgg19.classifier[6].weight.std()) - 0.01) < 1e-3
    conv = vgg19.features[0].weight  # He, fan-out: std = sqrt(2 / (64 · 9))
    assert abs(float(conv.std()) - (2 / (64 * 9)) ** 0.5) < 0.01
    assert float(vgg19.features[0].bias.abs().max()) == 0


def test_vgg_is_2d_only_and_checks_its_layers():
    with pytest.raises(ValueError, match="`spatial_dims` of create_model for model 'vgg19' must be 2; got 3"):
        create_model("vgg19", in_channels=1, num_classes=2, spatial_dims=3)
    with pytest.raises(ValueError, match="`layers` of VGG must hold channel counts >= 1 and 'M'; got 'X'"):
        VGG([8, "X"], hidden_features=4)
    with pytest.raises(ValueError, match="at least one convolution"):
        VGG(["M"], hidden_features=4)
    small = VGG([8, "M", 16], in_channels=2, num_classes=3, batch_norm=True, hidden_features=8)
    assert small(torch.zeros(2, 2, 8, 8)).shape == (2, 3) and small.classifier[0].in_features == 16 * 49
