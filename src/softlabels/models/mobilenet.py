"""MobileNetV2 with torchvision's exact layers and parameter names (2D), so its state dicts load strictly.

Sandler et al., "MobileNetV2: inverted residuals and linear bottlenecks", CVPR 2018. MONAI has no MobileNetV2; this
one reproduces the layout of torchvision's ``mobilenet_v2`` (``features.0`` … ``features.18``, ``classifier.1``)
and its initialisation, written for this package. For 3 input channels and 1000 classes it has 3,504,872
parameters, as torchvision's. ``in_channels`` changes only the first convolution and ``num_classes`` only the last
linear layer; ``width_mult`` scales every width (rounded to multiples of ``round_nearest``), as torchvision's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from softlabels.models.registry import register_model

__all__ = ["MobileNetV2"]

# expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
INVERTED_RESIDUALS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS, LAST_CHANNELS = 32, 1280


def make_divisible(value: float, divisor: int) -> int:
    """The multiple of ``divisor`` nearest ``value`` (at least ``divisor``, never more than 10 % below ``value``).

    Example:
        >>> make_divisible(32 * 0.35, 8), make_divisible(1280 * 1.0, 8)
        (16, 1280)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class _ConvBNReLU6(nn.Sequential):
    """Convolution (no bias) → BatchNorm → ReLU6 as keys ``0.weight``, ``1.*``."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class _InvertedResidual(nn.Module):
    """1×1 expansion (unless ``t = 1``) → 3×3 depthwise → 1×1 linear projection, with a skip when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        expand = [_ConvBNReLU6(in_channels, hidden, kernel_size=1)] if expand_ratio != 1 else []
        self.conv = nn.Sequential(
            *expand,
            _ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """The block's output (plus ``x`` when the shapes allow)."""
        out: Tensor = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (2D), torchvision's parameter layout, with ``forward_features``/``forward_head``.

    Args:
        in_channels: input channels (3 for ImageNet weights).
        num_classes: output classes.
        width_mult: width multiplier of every layer (the last one is never narrowed below 1280).
        round_nearest: widths are rounded to multiples of this.
        dropout: dropout before the linear classifier.

    Example:
        >>> model = MobileNetV2(in_channels=1, num_classes=4, width_mult=0.25)
        >>> x = torch.zeros(2, 1, 32, 32)
        >>> model.num_features, model.forward_features(x).shape, model(x).shape
        (1280, torch.Size([2, 1280]), torch.Size([2, 4]))
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"`width_mult` of MobileNetV2 must be > 0; got {width_mult!r}.")
        channels = make_divisible(STEM_CHANNELS * width_mult, round_nearest)
        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult), round_nearest)
        layers: list[nn.Module] = [_ConvBNReLU6(in_channels, channels, stride=2)]
        for expand_ratio, width, repeats, stride in INVERTED_RESIDUALS:
            out_channels = make_divisible(width * width_mult, round_nearest)
            for i in range(repeats):
                block = _InvertedResidual(
                    channels, out_channels, stride=stride if i == 0 else 1, expand_ratio=expand_ratio
                )
                layers.append(block)
                channels = out_channels
        layers.append(_ConvBNReLU6(channels, self.num_features, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        """Initialise as torchvision:: He (fan-out) convolutions, unit BatchNorm, N(0, 0.01) linear."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The globally average-pooled embedding ``(N, num_features)``."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(N, num_classes)``: dropout and the linear classifier."""
        logits: Tensor = self.classifier(features)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of ``x (N, in_channels, H, W)``."""
        return self.forward_head(self.forward_features(x))


@register_model("mobilenet_v2", task="classification", spatial_dims=(2,), head=("classifier.1",))
def _mobilenet_v2(
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    width_mult: float = 1.0,
    round_nearest: int = 8,
    dropout: float = 0.2,
) -> nn.Module:
    """MobileNetV2, torchvision's layout (2D; 3,504,872 parameters for 3 → 1000)."""
    return MobileNetV2(
        in_channels=in_channels, num_classes=num_classes, width_mult=width_mult, round_nearest=round_nearest,
        dropout=dropout,
    )  # fmt: skip
