"""Segmentation networks from MONAI (2D and 3D): ``unet``, ``basic_unet``, ``dynunet``, logits ``(N, C, *spatial)``.

- ``unet``: MONAI ``UNet``, residual units (Kerfoot et al., "Left-ventricle quantification using residual U-Net",
  STACOM 2018), after Ronneberger et al., "U-Net", MICCAI 2015.
- ``basic_unet``: MONAI ``BasicUNet``, the plain four-level U-Net (Falk et al., Nature Methods 2019).
- ``dynunet``: MONAI ``DynUNet``, the nnU-Net architecture (Isensee et al., Nature Methods 2021), kernels and
  strides derived from a ``depth``; deep supervision off, so the output is one tensor.

An input side must be divisible by the network's total stride: 8 for the default ``unet`` (three strides of 2),
16 for ``basic_unet``, ``2 ** (depth - 1)`` for ``dynunet``. The small ``small_unet`` for tests is in
:mod:`softlabels.models.small`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.networks.nets import BasicUNet, DynUNet, UNet
from torch import nn

from softlabels.models.registry import register_model

__all__: list[str] = []  # the models are reached through softlabels.models.create_model


def _build_unet(in_channels: int, num_classes: int, spatial_dims: int, **options: Any) -> nn.Module:
    """MONAI ``UNet`` with the given options (shared by ``unet`` and ``small_unet``)."""
    channels, strides = tuple(options.pop("channels")), tuple(options.pop("strides"))
    if len(channels) < 2 or len(strides) != len(channels) - 1:
        raise ValueError(
            "`channels` and `strides` of the UNet in create_model must have lengths k >= 2 and k - 1; "
            f"got channels={channels!r}, strides={strides!r}."
        )
    return UNet(spatial_dims, in_channels, num_classes, channels, strides, **options)


@register_model("unet", task="segmentation", head=("model.2",))
def _unet(
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 2,
    kernel_size: int = 3,
    up_kernel_size: int = 3,
    act: str | tuple = "PRELU",
    norm: str | tuple = "INSTANCE",
    dropout: float = 0.0,
    bias: bool = True,
    adn_ordering: str = "NDA",
) -> nn.Module:
    """MONAI UNet with residual units, four levels of 16-128 channels (MONAI's own defaults otherwise)."""
    return _build_unet(
        in_channels, num_classes, spatial_dims, channels=channels, strides=strides, num_res_units=num_res_units,
        kernel_size=kernel_size, up_kernel_size=up_kernel_size, act=act, norm=norm, dropout=dropout, bias=bias,
        adn_ordering=adn_ordering,
    )  # fmt: skip


@register_model("basic_unet", task="segmentation", head=("final_conv",))
def _basic_unet(
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    features: Sequence[int] = (32, 32, 64, 128, 256, 32),
    act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
    norm: str | tuple = ("instance", {"affine": True}),
    bias: bool = True,
    dropout: float | tuple = 0.0,
    upsample: str = "deconv",
) -> nn.Module:
    """MONAI BasicUNet: two convolutions per level, five levels of 32-256 features (MONAI's defaults)."""
    features = tuple(features)
    if len(features) != 6:
        raise ValueError(f"`features` of basic_unet in create_model must have 6 numbers; got {features!r}.")
    return BasicUNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, features=features, act=act,
        norm=norm, bias=bias, dropout=dropout, upsample=upsample,
    )  # fmt: skip


@register_model("dynunet", task="segmentation", head=("output_block",))
def _dynunet(
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int,
    depth: int = 4,
    kernel_size: int = 3,
    filters: Sequence[int] | None = None,
    dropout: float | None = None,
    norm_name: str | tuple = ("INSTANCE", {"affine": True}),
    act_name: str | tuple = ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
    res_block: bool = False,
    trans_bias: bool = False,
) -> nn.Module:
    """MONAI DynUNet (nnU-Net): ``depth`` levels, ``kernel_size`` kernels, strides 1, 2, 2, …; no deep supervision.

    ``filters=None`` is MONAI's ``32, 64, 128, …`` (capped at 320).
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 3:  # MONAI's DynUNet needs 3 levels
        raise ValueError(f"`depth` of dynunet in create_model must be an int >= 3; got {depth!r}.")
    if filters is not None and len(filters) != depth:
        raise ValueError(f"`filters` of dynunet in create_model must have depth={depth} numbers; got {filters!r}.")
    strides = [1] + [2] * (depth - 1)
    return DynUNet(
        spatial_dims, in_channels, num_classes, kernel_size=[kernel_size] * depth, strides=strides,
        upsample_kernel_size=strides[1:], filters=None if filters is None else list(filters), dropout=dropout,
        norm_name=norm_name, act_name=act_name, deep_supervision=False, res_block=res_block, trans_bias=trans_bias,
    )  # fmt: skip
