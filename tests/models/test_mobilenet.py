"""MobileNetV2: torchvision's parameter count, state-dict keys and computation, width_mult, in/out sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from softlabels.models import create_model
from softlabels.models.mobilenet import MobileNetV2, make_divisible

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# torchvision's inverted_residual_setting: t (expansion), c (channels), n (repeats), s (first stride)
SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def blocks() -> list[tuple[int, int, int, int]]:
    """(in, out, stride, t) of features.1 … features.17 at width 1."""
    out, width = [], 32
    for t, c, n, s in SETTING:
        for i in range(n):
            out.append((width, c, s if i == 0 else 1, t))
            width = c
    return out


def torchvision_keys() -> list[str]:
    """torchvision's ``mobilenet_v2().state_dict()`` keys, in order, from its module structure."""

    def conv_bn(prefix: str, conv: int = 0) -> list[str]:  # Conv2dNormActivation, or conv + BN in a Sequential
        return [f"{prefix}.{conv}.weight", *(f"{prefix}.{conv + 1}.{s}" for s in BN)]

    keys = conv_bn("features.0")
    for index, (_, _, _, t) in enumerate(blocks(), start=1):
        p = f"features.{index}.conv"
        layers = [conv_bn(f"{p}.0"), conv_bn(f"{p}.1")] if t != 1 else [conv_bn(f"{p}.0")]
        keys += [k for layer in layers for k in layer] + conv_bn(p, conv=len(layers))
    return [*keys, *conv_bn("features.18"), "classifier.1.weight", "classifier.1.bias"]


def parameter_count(num_classes: int = 1000, in_channels: int = 3) -> int:
    """By hand: bias-free convolutions, BatchNorm scale and shift, the linear classifier."""
    total = in_channels * 32 * 9 + 2 * 32
    for cin, cout, _, t in blocks():
        hidden = cin * t
        if t != 1:
            total += cin * hidden + 2 * hidden
        total += 9 * hidden + 2 * hidden + hidden * cout + 2 * cout
    return total + 320 * 1280 + 2 * 1280 + 1280 * num_classes + num_classes


@pytest.fixture(scope="module")
def meta_model() -> MobileNetV2:
    with torch.device("meta"):
        return create_model("mobilenet_v2", in_channels=3, num_classes=1000)


def test_parameter_count_is_torchvision_s(meta_model):
    assert parameter_count() == 3_504_872  # torchvision's mobilenet_v2, the reference number
    assert sum(p.numel() for p in meta_model.parameters()) == 3_504_872


def test_state_dict_keys_are_torchvision_s(meta_model):
    state = meta_model.state_dict()
    assert list(state) == torchvision_keys()
    assert len(state) == 314  # 52 convolutions with BatchNorm (6 entries each) and the classifier's 2
    for key, shape in {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.running_mean": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),  # t = 1: depthwise first
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.num_batches_tracked": (),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),  # t = 6: expansion first
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.2.conv.2.weight": (24, 96, 1, 1),
        "features.2.conv.3.running_var": (24,),
        "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
        "classifier.1.bias": (1000,),
    }.items():
        assert state[key].shape == shape, key


def test_strides_residuals_and_classifier(meta_model):
    strides = [meta_model.features[0][0].stride[0]] + [
        b.conv[0][0].stride[0] if len(b.conv) == 3 else b.conv[1][0].stride[0] for b in meta_model.features[1:18]
    ]
    assert strides == [2] + [s for _, _, s, _ in blocks()]
    assert [b.use_residual for b in meta_model.features[1:18]] == [s == 1 and i == o for i, o, s, _ in blocks()]
    assert sum(b.use_residual for b in meta_model.features[1:18]) == 10
    dropout, linear = meta_model.classifier
    assert isinstance(dropout, torch.nn.Dropout) and dropout.p == 0.2 and isinstance(linear, torch.nn.Linear)
    assert isinstance(meta_model.features[0][2], torch.nn.ReLU6)


def test_in_channels_and_num_classes_change_only_the_first_and_last_layers(meta_model):
    reference = {k: v.shape for k, v in meta_model.state_dict().items()}
    with torch.device("meta"):
        other = create_model("mobilenet_v2", in_channels=1, num_classes=7).state_dict()
    changed = {k for k in reference if other[k].shape != reference[k]}
    assert changed == {"features.0.0.weight", "classifier.1.weight", "classifier.1.bias"}
    assert other["features.0.0.weight"].shape == (32, 1, 3, 3) and other["classifier.1.weight"].shape == (7, 1280)


def test_width_mult_as_torchvision():
    assert [make_divisible(c * 0.5, 8) for c in (32, 16, 24, 32, 64, 96, 160, 320)] == [16, 8, 16, 16, 32, 48, 80, 160]
    assert make_divisible(1280 * 1.4, 8) == 1792 and make_divisible(3.0, 8) == 8 and make_divisible(20.0, 8) == 24
    with torch.device("meta"):
        half = create_model("mobilenet_v2", in_channels=3, num_classes=10, width_mult=0.5)
        wide = create_model("mobilenet_v2", in_channels=3, num_classes=10, width_mult=1.4)
    assert half.features[0][0].out_channels == 16 and half.num_features == 1280  # the last layer is never narrowed
    assert wide.features[0][0].out_channels == 48 and wide.num_features == 1792
    assert wide.classifier[1].in_features == 1792
    with pytest.raises(ValueError, match="`width_mult` of MobileNetV2 must be > 0; got 0"):
        MobileNetV2(width_mult=0)


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's MobileNetV2 computation (eval mode) written with torch.nn.functional on a state dict."""

    def conv_bn(x, prefix, stride=1, groups=1, conv=0, act=True):
        w = state[f"{prefix}.{conv}.weight"]
        x = F.conv2d(x, w, stride=stride, padding=(w.shape[-1] - 1) // 2, groups=groups)
        bn = [state[f"{prefix}.{conv + 1}.{s}"] for s in ("running_mean", "running_var", "weight", "bias")]
        x = F.batch_norm(x, *bn, training=False, eps=1e-5)
        return F.relu6(x) if act else x

    x = conv_bn(x, "features.0", stride=2)
    for index, (cin, cout, stride, t) in enumerate(blocks(), start=1):
        p, y = f"features.{index}.conv", x
        if t != 1:
            y = conv_bn(y, f"{p}.0")
        y = conv_bn(y, f"{p}.{int(t != 1)}", stride=stride, groups=cin * t)
        y = conv_bn(y, p, conv=1 + int(t != 1), act=False)
        x = x + y if stride == 1 and cin == cout else y
    x = conv_bn(x, "features.18").mean(dim=(2, 3))
    return F.linear(x, state["classifier.1.weight"], state["classifier.1.bias"])


def test_the_computation_is_torchvision_s():
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", in_channels=3, num_classes=10).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.copy_(torch.rand(buffer.shape, generator=g) * 0.5 + (0.75 if "var" in name else -0.25))
        for name, p in model.named_parameters():
            if ".1." in name and p.ndim == 1:  # BatchNorm scale and shift away from 1 and 0
                p.copy_(torch.rand(p.shape, generator=g) + 0.5 if name.endswith("weight") else p + 0.1)
        x = torch.randn(2, 3, 32, 40, generator=g)
        torch.testing.assert_close(model(x), reference_forward(model.state_dict(), x), rtol=1e-4, atol=1e-5)
        features = model.forward_features(x)
        assert features.shape == (2, 1280)
        torch.testing.assert_close(model.forward_head(features), model(x))
