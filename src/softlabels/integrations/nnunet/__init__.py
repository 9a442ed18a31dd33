"""softlabels inside nnU-Net v2: soft labels in its integer label maps, the converter, and trainers for every recipe.

What this package exports imports no ``nnunetv2``: the converter writes nnU-Net's raw format with NiBabel, the
encoding and soft-target helpers are plain NumPy/PyTorch, so they work (and are tested) without nnU-Net. The
``nnUNetTrainer`` subclasses live in :mod:`softlabels.integrations.nnunet.trainers`, which needs ``nnunetv2``
(``pip install 'softlabels[nnunet]'``); nnU-Net finds them through ``nnUNet_extTrainer`` (:func:`trainers_folder`).
"""

from softlabels.integrations.nnunet.convert import convert_to_nnunet
from softlabels.integrations.nnunet.encoding import (
    LabelEncoding,
    decode_foreground,
    decode_raters,
    decode_regions,
    downsample_soft,
    encode_confidence,
    encode_raters,
)
from softlabels.integrations.nnunet.soft_targets import (
    DeepSupervisedMethodLoss,
    deep_supervision_targets,
    deep_supervision_weights,
    downsample_target,
    encoding_of_dataset,
    hard_label_map,
    method_batch,
)
from softlabels.integrations.nnunet.trainer_folder import INSTALL_HINT, trainers_folder

__all__ = [
    "INSTALL_HINT",
    "DeepSupervisedMethodLoss",
    "LabelEncoding",
    "convert_to_nnunet",
    "decode_foreground",
    "decode_raters",
    "decode_regions",
    "deep_supervision_targets",
    "deep_supervision_weights",
    "downsample_soft",
    "downsample_target",
    "encode_confidence",
    "encode_raters",
    "encoding_of_dataset",
    "hard_label_map",
    "method_batch",
    "trainers_folder",
]
