"""ResNet-50 from MONAI (2D and 3D) with ``forward_features``/``forward_head`` and a choice of stem.

He et al., "Deep residual learning for image recognition", CVPR 2016; MONAI's ``ResNet`` follows Hara et al.,
"Can spatiotemporal 3D CNNs retrace the history of 2D CNNs and ImageNet?", CVPR 2018 (the stride on the 3×3
convolution of each bottleneck, "ResNet v1.5", as torchvision).

Two stems (the layers before ``layer1``):

- ``stem="monai"`` (the default; MONAI 1.6's ``conv1_t_size=7, conv1_t_stride=1, no_max_pool=False``): a 7×7
  (7×7×7) convolution of stride **1**, then a 3×3 max-pool of stride 2 — the input is halved before ``layer1`` and
  divided by 16 overall, which keeps detail in small medical images (28-64 px);
- ``stem="torchvision"``: a 7×7 convolution of stride **2**, then the same max-pool — divided by 4 before
  ``layer1`` and by 32 overall, as torchvision's and timm's ResNet-50 for 224-px images.

MONAI's 1×1 downsampling convolutions have a bias by default (``bias_downsample=True``); torchvision's have none.
With ``stem="torchvision", bias_downsample=False`` in 2D the state dict has exactly torchvision's ``resnet50`` keys
and shapes (25,557,032 parameters for 1000 classes), so its weights load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
from monai.networks.nets import ResNet as MonaiResNet
from monai.networks.nets.resnet import ResNetBottleneck, get_inplanes
from torch import Tensor, nn

from softlabels._options import look_up_option
from softlabels.models.registry import register_model

__all__ = ["ResNet"]

Stem = Literal["monai", "torchvision"]
STEM_STRIDES: dict[str, int] = {"monai": 1, "torchvision": 2}  # the 7×7 convolution's stride; max-pool in both


class ResNet(MonaiResNet):
    """MONAI's bottleneck ResNet plus ``forward_features → (N, F)``, ``forward_head`` and ``num_features``.

    The parameters and their names are MONAI's (``conv1``, ``bn1``, ``layer1``-``layer4``, ``fc``).

    Args:
        in_channels: input channels.
        num_classes: output classes.
        spatial_dims: 2 or 3.
        stem: ``"monai"`` (7×7 stride-1 conv + max-pool) or ``"torchvision"`` (7×7 stride-2 conv + max-pool).
        layers: bottleneck blocks per stage (``(3, 4, 6, 3)`` is ResNet-50).
        shortcut_type: MONAI's ``"B"`` (1×1 conv + norm) or ``"A"`` (zero-padded identity).
        widen_factor: channel multiplier.
        bias_downsample: a bias in the 1×1 downsampling convolutions (MONAI's default; torchvision has none).
        act: MONAI activation name/args.
        norm: MONAI normalisation name/args.

    Example:
        >>> model = ResNet(in_channels=1, num_classes=3, spatial_dims=2, layers=(1, 1, 1, 1), widen_factor=0.25)
        >>> x = torch.zeros(2, 1, 32, 32)
        >>> model.num_features, model.forward_features(x).shape, model(x).shape
        (512, torch.Size([2, 512]), torch.Size([2, 3]))
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        spatial_dims: int,
        stem: Stem = "monai",
        layers: Sequence[int] = (3, 4, 6, 3),
        shortcut_type: str = "B",
        widen_factor: float = 1.0,
        bias_downsample: bool = True,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        stem = look_up_option("stem", stem, STEM_STRIDES, where="ResNet")  # type: ignore[assignment]
        if len(layers) != 4:
            raise ValueError(f"`layers` of ResNet must have 4 block counts; got {layers!r}.")
        super().__init__(
            ResNetBottleneck, list(layers), get_inplanes(), spatial_dims=spatial_dims, n_input_channels=in_channels,
            conv1_t_size=7, conv1_t_stride=STEM_STRIDES[stem], no_max_pool=False, shortcut_type=shortcut_type,
            widen_factor=widen_factor, num_classes=num_classes, feed_forward=True, bias_downsample=bias_downsample,
            act=act, norm=norm,
        )  # fmt: skip
        self.stem = stem
        self.num_features = cast(nn.Linear, self.fc).in_features

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled embedding ``(N, num_features)`` before ``fc``."""
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of an embedding ``(N, num_features)``."""
        logits: Tensor = cast(nn.Linear, self.fc)(features)  # feed_forward=True: never None
        return logits

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of ``x (N, in_channels, *spatial)``."""
        return self.forward_head(self.forward_features(x))


@register_model("resnet50", task="classification", head=("fc",))
def _resnet50(
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    stem: Stem = "monai",
    shortcut_type: str = "B",
    widen_factor: float = 1.0,
    bias_downsample: bool = True,
    act: str | tuple = ("relu", {"inplace": True}),
    norm: str | tuple = "batch",
) -> nn.Module:
    """MONAI ResNet-50 (bottleneck 3-4-6-3), MONAI stem by default, ``stem="torchvision"`` for torchvision's."""
    return ResNet(
        in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims, stem=stem,
        shortcut_type=shortcut_type, widen_factor=widen_factor, bias_downsample=bias_downsample, act=act, norm=norm,
    )  # fmt: skip
