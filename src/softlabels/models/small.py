"""Tiny networks for tests and smoke runs (2D and 3D): ``small_cnn`` (classification) and ``small_unet``.

``small_cnn`` is a few-thousand-parameter CNN (3×3 convolution, a normalisation and ReLU per width, stride 2 after
the first, global average pooling, a linear head); ``small_unet`` is a two-level MONAI ``UNet`` (8 and 16 channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from softlabels.models.registry import register_model
from softlabels.models.segmentation import _build_unet

__all__ = ["SmallCNN"]

CONV: dict[int, type[nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
NORMS = ("batch", "layer", "none")


def _norm(kind: str, width: int, spatial_dims: int) -> nn.Module:
    if kind == "batch":
        return NORM[spatial_dims](width)
    return nn.GroupNorm(1, width) if kind == "layer" else nn.Identity()


class SmallCNN(nn.Module):
    """A tiny CNN: ``conv3-norm-ReLU`` per width (stride 1, then 2), global average pooling, a linear head.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        spatial_dims: 2 or 3.
        channels: the convolution widths; the last one is ``num_features``.
        norm: ``"batch"`` (BatchNorm), ``"layer"`` (``GroupNorm(1, width)``: per sample, so a batch split across
            processes computes what one process computes; SyncBatchNorm needs GPUs) or ``"none"``.

    Example:
        >>> model = SmallCNN(in_channels=1, num_classes=3, spatial_dims=3)
        >>> x = torch.zeros(2, 1, 6, 6, 6)
        >>> model.forward_features(x).shape, model(x).shape, sum(p.numel() for p in model.parameters())
        (torch.Size([2, 16]), torch.Size([2, 3]), 3771)
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        channels: Sequence[int] = (8, 16),
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"`norm` of SmallCNN must be one of {list(NORMS)}; got {norm!r}.")
        if spatial_dims not in CONV:
            raise ValueError(f"`spatial_dims` of SmallCNN must be 2 or 3; got {spatial_dims!r}.")
        if len(channels) < 1:
            raise ValueError(f"`channels` of SmallCNN must hold at least one width; got {channels!r}.")
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(channels):
            conv = CONV[spatial_dims](previous, width, kernel_size=3, stride=1 if i == 0 else 2, padding=1, bias=False)
            layers += [conv, _norm(norm, width, spatial_dims), nn.ReLU(inplace=True)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.num_features = int(channels[-1])
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """The globally average-pooled embedding ``(N, num_features)``."""
        return torch.flatten(self.features(x).mean(dim=tuple(range(2, x.ndim)), keepdim=True), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of an embedding."""
        logits: Tensor = self.head(features)
        return logits

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` of ``x (N, in_channels, *spatial)``."""
        return self.forward_head(self.forward_features(x))


@register_model("small_cnn", task="classification", head=("head",))
def _small_cnn(
    *, in_channels: int, num_classes: int, spatial_dims: int, channels: Sequence[int] = (8, 16), norm: str = "batch"
) -> nn.Module:
    """A tiny CNN for tests (two conv-norm-ReLU layers of 8 and 16 channels, ~1-4 thousand parameters)."""
    return SmallCNN(
        in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims, channels=channels, norm=norm
    )


@register_model("small_unet", task="segmentation", head=("model.2",))
def _small_unet(
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    channels: Sequence[int] = (8, 16),
    strides: Sequence[int] = (2,),
    num_res_units: int = 0,
) -> nn.Module:
    """A tiny MONAI UNet for tests: two levels of 8 and 16 channels, one stride of 2 (inputs of even size)."""
    return _build_unet(
        in_channels, num_classes, spatial_dims, channels=channels, strides=strides, num_res_units=num_res_units
    )
