"""The model registry: a name → a small builder whose keyword defaults are the model's defaults (timm-style).

Each family file registers its builders with :func:`register_model`; :func:`create_model` checks the sizes, the
spatial dimensions and the keyword overrides against the builder's signature, builds the model, and loads local
weights if asked. ``"timm:<name>"`` passes through to ``timm.create_model`` when timm is importable.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from softlabels._options import look_up_option
from softlabels.models.weights import _local_file, load_weights

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]

Task = Literal["segmentation", "classification"]
TASKS: tuple[Task, ...] = ("segmentation", "classification")
SIZES = ("in_channels", "num_classes", "spatial_dims")  # what every builder takes; not overridable by **kwargs
TIMM_PREFIX = "timm:"
TIMM_MISSING = (
    "`name` {name!r} of create_model needs timm, which is not importable here. Install it with `pip install timm` "
    "in an environment whose torchvision matches its torch build (timm depends on torchvision; in this project's "
    "CPU environment torchvision must stay uninstalled), or use a registered model: {names}."
)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows of a model: its task, spatial dimensions, head and keyword defaults.

    Args:
        name: the registry name.
        task: ``"segmentation"`` (logits ``(N, C, *spatial)``) or ``"classification"`` (logits ``(N, C)``).
        spatial_dims: the supported numbers of spatial dimensions.
        head: the state-dict prefixes of the layers whose shape depends on ``num_classes`` (dropped from a
            checkpoint by ``ignore_head=True``).
        builder: the registered function ``(*, in_channels, num_classes, spatial_dims, **defaults) → nn.Module``.
        defaults: the builder's keyword defaults (what :func:`create_model` uses unless overridden).
        summary: the builder's one-line summary.

    Example:
        >>> info = model_info("unet")
        >>> info.task, info.spatial_dims, info.defaults["channels"]
        ('segmentation', (2, 3), (16, 32, 64, 128))
    """

    name: str
    task: Task
    spatial_dims: tuple[int, ...]
    head: tuple[str, ...]
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str, *, task: Task, spatial_dims: tuple[int, ...] = (2, 3), head: tuple[str, ...] = ()
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``(*, in_channels, num_classes, spatial_dims, **options) → nn.Module`` under ``name``.

    The builder's keyword defaults (other than the three sizes) are the model's defaults, and the only keyword
    arguments :func:`create_model` accepts for it.

    Args:
        name: the registry name (must be new and must not start with ``"timm:"``).
        task: ``"segmentation"`` or ``"classification"``.
        spatial_dims: the supported numbers of spatial dimensions.
        head: state-dict prefixes of the ``num_classes``-dependent layers (see :class:`ModelInfo`).

    Returns:
        The decorator, which returns the builder unchanged.

    Raises:
        ValueError: the name is taken or reserved, an unknown task, or a builder lacking a size argument.

    Example:
        >>> "small_cnn" in list_models("classification")
        True
    """
    look_up_option("task", task, TASKS, where="register_model")
    if name in _REGISTRY or name.startswith(TIMM_PREFIX):
        raise ValueError(f"`name` of register_model must be new and not start with {TIMM_PREFIX!r}; got {name!r}.")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        params = inspect.signature(builder).parameters
        missing = [size for size in SIZES if size not in params]
        if missing:
            raise ValueError(f"the builder of model {name!r} in register_model lacks the argument(s) {missing}.")
        named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        defaults = {p.name: p.default for p in params.values() if p.name not in SIZES and p.kind in named}
        summary = ((inspect.getdoc(builder) or "").splitlines() or [""])[0]
        _REGISTRY[name] = ModelInfo(name, task, tuple(spatial_dims), tuple(head), builder, defaults, summary)
        return builder

    return decorator


def list_models(task: Task | None = None) -> list[str]:
    """The registered model names (for ``task``, if given), sorted; ``"timm:<name>"`` models are not listed.

    Example:
        >>> list_models("segmentation")
        ['basic_unet', 'dynunet', 'small_unet', 'unet']
        >>> {"resnet50", "mobilenet_v2", "vgg19", "vgg19_bn", "small_cnn"} <= set(list_models("classification"))
        True
    """
    if task is not None:
        look_up_option("task", task, TASKS, where="list_models")
    return sorted(name for name, info in _REGISTRY.items() if task is None or info.task == task)


def model_info(name: str) -> ModelInfo:
    """The registry entry of model ``name`` (task, spatial dimensions, head, defaults).

    Raises:
        ValueError: an unknown name (the valid ones and the closest match are listed).

    Example:
        >>> model_info("small_unet").defaults["channels"]
        (8, 16)
    """
    return _REGISTRY[look_up_option("name", name, _REGISTRY, where="model_info")]


def create_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    spatial_dims: int = 2,
    weights: str | os.PathLike[str] | None = None,
    strict: bool = True,
    ignore_head: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name`` (or ``"timm:<name>"``), optionally loading local weights.

    Segmentation models map ``(N, in_channels, *spatial)`` to logits ``(N, num_classes, *spatial)``; classification
    models to logits ``(N, num_classes)`` and also have ``forward_features(x) → (N, F)`` (the penultimate
    embedding), ``forward_head(features) → logits`` and ``num_features`` (``F``).

    Args:
        name: a name of :func:`list_models`, or ``"timm:<name>"`` for a timm model (needs timm).
        in_channels: input channels (``≥ 1``).
        num_classes: output classes (``≥ 1``).
        spatial_dims: 2 or 3 (as the model supports, see :func:`model_info`).
        weights: a local checkpoint file (a state dict, or a Lightning checkpoint); never a URL.
        strict: require the checkpoint's keys to match the model's exactly.
        ignore_head: drop the checkpoint's head weights whose shape differs (another ``num_classes``), with a
            warning naming them; the model keeps its fresh head.
        **kwargs: overrides of the model's defaults (see :func:`model_info`).

    Returns:
        The model, in training mode, on the default device (the CPU unless a ``torch.device`` context says).

    Raises:
        ValueError: unknown name or keyword (the valid ones listed), unsupported ``spatial_dims``, sizes ``< 1``,
            a URL or a checkpoint that does not fit (see :func:`~softlabels.models.weights.load_weights`).
        TypeError: a size that is not an int.
        ImportError: a ``"timm:"`` name without timm installed.

    Example:
        >>> import torch
        >>> model = create_model("small_cnn", in_channels=1, num_classes=3)
        >>> model(torch.zeros(2, 1, 8, 8)).shape, model.forward_features(torch.zeros(2, 1, 8, 8)).shape
        (torch.Size([2, 3]), torch.Size([2, 16]))
        >>> create_model("small_unet", in_channels=1, num_classes=2, spatial_dims=3)(torch.zeros(1, 1, 4, 4, 4)).shape
        torch.Size([1, 2, 4, 4, 4])
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` of create_model must be a str; got {type(name).__name__} {name!r}.")
    _check_size("in_channels", in_channels)
    _check_size("num_classes", num_classes)
    if weights is not None:
        _local_file(weights, "create_model")  # a URL or a missing file fails before the model is built
    if name.startswith(TIMM_PREFIX):
        model = _create_timm(
            name, in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims, **kwargs
        )
        head: tuple[str, ...] = tuple(filter(None, [getattr(model, "pretrained_cfg", {}).get("classifier")]))
    else:
        info = _REGISTRY[look_up_option("name", name, _REGISTRY, where="create_model")]
        _check_options(info, spatial_dims, kwargs)
        model = info.builder(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims, **kwargs)
        head = info.head
    if weights is not None:
        load_weights(model, weights, strict=strict, ignore_head=ignore_head, head=head)
    return model


def _check_size(arg: str, value: object) -> None:
    """Raise unless ``value`` is an int ``≥ 1``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"`{arg}` of create_model must be an int >= 1; got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"`{arg}` of create_model must be an int >= 1; got {value!r}.")


def _check_options(info: ModelInfo, spatial_dims: object, kwargs: dict[str, Any]) -> None:
    """Raise for a ``spatial_dims`` the model does not support or a keyword it does not take."""
    if spatial_dims not in info.spatial_dims or isinstance(spatial_dims, bool):
        allowed = " or ".join(map(str, info.spatial_dims))
        raise ValueError(
            f"`spatial_dims` of create_model for model {info.name!r} must be {allowed}; got {spatial_dims!r}."
        )
    unknown = sorted(set(kwargs) - set(info.defaults))
    if unknown:
        raise ValueError(
            f"unknown keyword(s) {unknown} of model {info.name!r} in create_model; "
            f"valid: {sorted(info.defaults) or 'none'}."
        )


def _create_timm(name: str, *, in_channels: int, num_classes: int, spatial_dims: int, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name[5:], pretrained=False, in_chans=..., num_classes=...)``: 2D, never downloads."""
    if spatial_dims != 2:
        raise ValueError(f"`spatial_dims` of create_model for timm model {name!r} must be 2; got {spatial_dims!r}.")
    if "pretrained" in kwargs:
        raise ValueError(
            f"`pretrained` of create_model for timm model {name!r} is not allowed (nothing is downloaded); "
            f"pass a local file as `weights=`; got pretrained={kwargs['pretrained']!r}."
        )
    try:
        timm = importlib.import_module("timm")
    except ImportError as err:
        raise ImportError(TIMM_MISSING.format(name=name, names=", ".join(list_models()))) from err
    model: nn.Module = timm.create_model(
        name[len(TIMM_PREFIX) :], pretrained=False, in_chans=in_channels, num_classes=num_classes, **kwargs
    )
    return model
