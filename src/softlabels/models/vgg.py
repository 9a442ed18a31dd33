"""VGG-19 (with or without BatchNorm) with torchvision's exact layers and parameter names (2D).

Simonyan and Zisserman, "Very deep convolutional networks for large-scale image recognition", ICLR 2015
(configuration E). MONAI has no VGG; this one reproduces the layout of torchvision's ``vgg19``/``vgg19_bn``
(``features.<i>`` in one flat ``Sequential``, ``avgpool = AdaptiveAvgPool2d((7, 7))``, ``classifier.0/3/6``
linear layers 25088 → 4096 → 4096 → C with ReLU and dropout 0.5 between) and its initialisation, written for this
package: 143,667,240 parameters (``vgg19``) and 143,678,248 (``vgg19_bn``) for 3 → 1000, as torchvision's.

Inputs must be at least 32×32 (five 2×2 max-pools); the adaptive pooling then brings any map to 7×7 (a 1×1 map by
repetition), as in torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from softlabels.models.registry import register_model

__all__ = ["VGG"]

# configuration E: output channels of the 3×3 convolutions, "M" for a 2×2 max-pool of stride 2
VGG19_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
POOLED = (7, 7)


def _make_features(layers: Sequence[int | str], in_channels: int, batch_norm: bool) -> nn.Sequential:
    """The flat ``features`` Sequential: ``conv, [bn,] relu`` per number, a max-pool per ``"M"``."""
    modules: list[nn.Module] = []
    channels = in_channels
    for layer in layers:
        if layer == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        if not isinstance(layer, int) or isinstance(layer, bool) or layer < 1:
            raise ValueError(f"`layers` of VGG must hold channel counts >= 1 and 'M'; got {layer!r}.")
        modules.append(nn.Conv2d(channels, layer, kernel_size=3, padding=1))
        modules.extend([nn.BatchNorm2d(layer), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)])
        channels = layer
    return nn.Sequential(*modules)


class VGG(nn.Module):
    """VGG (2D), torchvision's parameter layout, with ``forward_features``/``forward_head``.

    ``forward_features`` is the 4096-wide output of the second fully connected layer (after its ReLU and dropout),
    the input of the last linear layer ``classifier.6``, which is ``forward_head``.

    Args:
        layers: channel counts of the 3×3 convolutions and ``"M"`` for max-pools (configuration E by default).
        in_channels: input channels (3 for ImageNet weights).
        num_classes: output classes.
        batch_norm: BatchNorm after each convolution (``vgg19_bn``).
        dropout: dropout after each of the two hidden linear layers.
        hidden_features: width of the two hidden linear layers (torchvision: 4096).

    Example:
        >>> model = VGG([8, "M"], in_channels=1, num_classes=3, hidden_features=16)
        >>> x = torch.zeros(2, 1, 8, 8)
        >>> model.num_features, model.forward_features(x).shape, model(x).shape
        (16, torch.Size([2, 16]), torch.Size([2, 3]))
    """

    def __init__(
        self,
        layers: Sequence[int | str] = VGG19_LAYERS,
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        batch_norm: bool = False,
        dropout: float = 0.5,
        hidden_features: int = 4096,
    ) -> None:
        super().__init__()
        widths = [layer for layer in layers if layer != "M"]
        if not widths:
            raise ValueError(f"`layers` of VGG must hold at least one convolution; got {layers!r}.")
        self.features = _make_features(layers, in_channels, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(POOLED)
        self.classifier = nn.Sequential(
            nn.Linear(int(widths[-1]) * POOLED[0] * POOLED[1], hidden_features),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_features, hidden_features),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_features, num_classes),
        )
        self.num_features = hidden_features
        self._init_weights()

    def _init_weights(self) -> None:
        """Initialise as torchvision:: He (fan-out, ReLU) convolutions, unit BatchNorm, N(0, 0.01) linear."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """The penultimate embedding ``(N, num_features)``: convolutions, 7×7 pooling, the two hidden layers."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        for layer in list(self.classifier)[:-1]:
            x = layer(x)
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(N, num_classes)``: the last linear layer ``classifier.6``."""
        logits: Tensor = self.classifier[-1](features)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of ``x (N, in_channels, H, W)``."""
        return self.forward_head(self.forward_features(x))


@register_model("vgg19", task="classification", spatial_dims=(2,), head=("classifier.6",))
def _vgg19(*, in_channels: int, num_classes: int, spatial_dims: int, dropout: float = 0.5) -> nn.Module:
    """VGG-19, torchvision's layout (2D; 143,667,240 parameters for 3 → 1000)."""
    return VGG(VGG19_LAYERS, in_channels=in_channels, num_classes=num_classes, dropout=dropout)


@register_model("vgg19_bn", task="classification", spatial_dims=(2,), head=("classifier.6",))
def _vgg19_bn(*, in_channels: int, num_classes: int, spatial_dims: int, dropout: float = 0.5) -> nn.Module:
    """VGG-19 with BatchNorm, torchvision's layout (2D; 143,678,248 parameters for 3 → 1000)."""
    return VGG(VGG19_LAYERS, in_channels=in_channels, num_classes=num_classes, batch_norm=True, dropout=dropout)
