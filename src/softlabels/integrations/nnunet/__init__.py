"""softlabels inside nnU-Net v2: the soft-label encoding of its integer label maps and the raw-format converter.

Nothing here imports ``nnunetv2``: the converter writes nnU-Net's raw format with NiBabel, and the encoding helpers
are plain NumPy/PyTorch, so they work (and are tested) without nnU-Net installed.
"""

from softlabels.integrations.nnunet.convert import convert_to_nnunet
from softlabels.integrations.nnunet.encoding import (
    LabelEncoding,
    decode_foreground,
    decode_regions,
    downsample_soft,
    encode_confidence,
    encode_raters,
)

__all__ = [
    "LabelEncoding",
    "convert_to_nnunet",
    "decode_foreground",
    "decode_regions",
    "downsample_soft",
    "encode_confidence",
    "encode_raters",
]
