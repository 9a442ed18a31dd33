"""Where nnU-Net finds softlabels' trainers: the folder for ``nnUNet_extTrainer``, and the install hint without it.

nnU-Net v2 (2.8+) looks for a ``-tr`` class outside its own package in the folders of the ``nnUNet_extTrainer``
environment variable (``os.pathsep``-separated), importing every module there. The folder returned here holds one
module that re-exports :mod:`softlabels.integrations.nnunet.trainers`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["INSTALL_HINT", "trainers_folder"]

INSTALL_HINT = "nnunetv2 is not installed here: pip install 'softlabels[nnunet]' (see docs/nnunet.md)"
"""What a command that needs nnU-Net says when ``nnunetv2`` cannot be imported."""


def trainers_folder(*, require_nnunet: bool = True) -> Path:
    """The folder to put in ``nnUNet_extTrainer`` so that ``nnUNetv2_train ... -tr nnUNetTrainerSVLS`` finds it.

    Raises:
        ValueError: ``require_nnunet`` and ``nnunetv2`` is not importable (the message says how to install it).

    Example:
        >>> folder = trainers_folder(require_nnunet=False)
        >>> sorted(p.name for p in folder.glob("*.py"))
        ['softlabels_nnunet_trainers.py']
    """
    if require_nnunet and importlib.util.find_spec("nnunetv2") is None:
        raise ValueError(INSTALL_HINT + ".")
    return Path(__file__).resolve().parent.parent / "nnunet_external"
