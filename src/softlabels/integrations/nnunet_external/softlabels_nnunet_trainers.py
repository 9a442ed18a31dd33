"""nnU-Net's door to softlabels' trainers: ``nnUNet_extTrainer`` names this folder.

``softlabels nnunet trainers-path`` prints the folder.

nnU-Net imports every module of that folder and takes the class named by ``-tr`` from it; this module re-exports the
trainers of :mod:`softlabels.integrations.nnunet.trainers`.
"""

from softlabels.integrations.nnunet.trainers import *  # noqa: F403
from softlabels.integrations.nnunet.trainers import __all__  # noqa: F401
