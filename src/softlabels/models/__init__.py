"""The model factory: segmentation and classification networks by name, 2D and 3D, local weights only.

>>> from softlabels.models import create_model, list_models
>>> create_model("small_cnn", in_channels=1, num_classes=2).num_features
16

Segmentation: ``unet``, ``basic_unet``, ``dynunet`` (MONAI), ``small_unet``. Classification: ``resnet50`` (MONAI,
MONAI or torchvision stem), ``mobilenet_v2``, ``vgg19``, ``vgg19_bn`` (torchvision's layouts, 2D), ``small_cnn``,
and ``"timm:<name>"`` when timm is installed. See ``docs/models.md``.
"""

from __future__ import annotations

from softlabels.models import mobilenet, resnet, segmentation, small, vgg  # noqa: F401  (they register the models)
from softlabels.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from softlabels.models.weights import load_weights, read_state_dict

__all__ = [
    "ModelInfo",
    "create_model",
    "list_models",
    "load_weights",
    "model_info",
    "read_state_dict",
    "register_model",
]
