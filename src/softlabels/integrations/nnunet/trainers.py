"""nnU-Net v2 trainers for softlabels' segmentation recipes: ``nnUNetv2_train D 2d 0 -tr nnUNetTrainerSVLS``.

Each trainer is nnU-Net's own ``nnUNetTrainer`` (planning, preprocessing, augmentation, network, optimiser, schedule,
checkpoints and inference unchanged) with one difference: its loss is a registry method (:mod:`softlabels.methods`,
built by ``create_method``; no second implementation), trained on the method's own target of nnU-Net's augmented label
map, decoded by the dataset's :class:`~softlabels.integrations.nnunet.encoding.LabelEncoding` (rater bits, confidence
levels, or plain labels), with its own area-averaged target at every deep-supervision output
(:mod:`softlabels.integrations.nnunet.soft_targets`). The method's loss replaces nnU-Net's Dice + CE, as in the
method's own paper and code.

On a dataset written by ``softlabels nnunet convert`` (whose ``dataset.json`` declares nested regions for the plain
``nnUNetTrainer``), a softlabels trainer trains a softmax over background/foreground instead: it hands nnU-Net a copy
of ``dataset.json`` whose labels are the encoding's classes, which is also the ``dataset.json`` nnU-Net copies into the
results folder, so ``nnUNetv2_predict`` writes softmax probabilities. nnU-Net's online validation Dice is computed
against the hard label (the raters' majority, ``q > 0.5``).

nnU-Net finds these classes through the ``nnUNet_extTrainer`` environment variable: ``softlabels nnunet trainers-path``
prints the folder to put there. A subclass changes the method's parameters (``method_params``). For tiny runs (tests,
benchmarks) the environment variables ``SOFTLABELS_NNUNET_EPOCHS`` and ``SOFTLABELS_NNUNET_ITERATIONS`` (training
iterations per epoch; validation iterations are capped to the same number) override nnU-Net's 1000 × 250; the log
file says so.

This module imports ``nnunetv2``: install it with ``pip install 'softlabels[nnunet]'`` (docs/nnunet.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, ClassVar

import torch

from softlabels.integrations.nnunet.soft_targets import (
    DeepSupervisedMethodLoss,
    deep_supervision_weights,
    encoding_of_dataset,
    hard_label_map,
    method_batch,
)
from softlabels.methods import create_method

try:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
except ImportError as error:  # pragma: no cover - the message is what a user without nnU-Net sees
    raise ImportError(
        "softlabels' nnU-Net trainers need nnunetv2: pip install 'softlabels[nnunet]' (see docs/nnunet.md)."
    ) from error

__all__ = [
    "TRAINERS",
    "nnUNetTrainerBoundaryLS",
    "nnUNetTrainerConfidenceSoft",
    "nnUNetTrainerConfidenceThreshold",
    "nnUNetTrainerConfidenceWeighted",
    "nnUNetTrainerDML",
    "nnUNetTrainerFLSD",
    "nnUNetTrainerFocal",
    "nnUNetTrainerHard",
    "nnUNetTrainerLS",
    "nnUNetTrainerMbLS",
    "nnUNetTrainerNACL",
    "nnUNetTrainerRatersDML",
    "nnUNetTrainerRatersMajority",
    "nnUNetTrainerRatersMean",
    "nnUNetTrainerRatersSVLS",
    "nnUNetTrainerRatersWeighted",
    "nnUNetTrainerSVLS",
    "nnUNetTrainerSoftLabels",
]

EPOCHS_VARIABLE, ITERATIONS_VARIABLE = "SOFTLABELS_NNUNET_EPOCHS", "SOFTLABELS_NNUNET_ITERATIONS"


def _positive_int_from_environment(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"the environment variable {name} must be a positive integer; got {raw!r}.")
    return int(raw)


class nnUNetTrainerSoftLabels(nnUNetTrainer):
    """nnU-Net's trainer with a softlabels registry method as its loss (``method_name``, ``method_params``).

    The base class trains ``hard`` (cross-entropy on the label); every named trainer below sets another method. The
    method is checked against the dataset when the trainer is built: a rater recipe on a dataset without raters,
    or a confidence recipe on plain labels, is refused with one line.

    Example:
        >>> nnUNetTrainerSVLS.method_name, nnUNetTrainerRatersDML.method_params
        ('svls', {'source': 'raters_mean'})
    """

    method_name: ClassVar[str] = "hard"
    method_params: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),  # noqa: B008 - nnU-Net's signature
    ) -> None:
        encoding = encoding_of_dataset(dataset_json)
        method = create_method(self.method_name, encoding.num_classes, task="segmentation", **self.method_params)
        try:
            method_batch(torch.zeros(1, 1, 1, dtype=torch.long), encoding, method.requires)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__} (method {self.method_name!r}) cannot train on this dataset: "
                             f"{err}") from None  # fmt: skip
        labels = {name: c for c, name in enumerate(encoding.class_names)}
        as_labels = {k: v for k, v in dataset_json.items() if k != "regions_class_order"} | {"labels": labels}
        super().__init__(plans, configuration, fold, as_labels, device)
        self.encoding, self.method = encoding, method
        epochs, iterations = (_positive_int_from_environment(v) for v in (EPOCHS_VARIABLE, ITERATIONS_VARIABLE))
        if epochs is not None:
            self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = min(self.num_val_iterations_per_epoch, iterations)  # type: ignore[has-type]
        self.print_to_log_file(
            f"softlabels: method {method.name!r} {method.params}, encoding {encoding.to_dict()}, "
            f"{self.num_epochs} epochs x {self.num_iterations_per_epoch} iterations"
        )

    def _build_loss(self) -> DeepSupervisedMethodLoss:
        """The method's loss over every deep-supervision output, with nnU-Net's output weights."""
        scales = len(self._get_deep_supervision_scales()) if self.enable_deep_supervision else 1
        weights = deep_supervision_weights(scales)
        if self.is_ddp and scales > 1:
            weights[-1] = 1e-6  # nnU-Net's own fix: DDP refuses parameters that receive no gradient
        return DeepSupervisedMethodLoss(self.method, self.encoding, weights).to(self.device)

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step: the loss from the encoded map, the online Dice from its hard labels."""
        if self.encoding.kind == "labels":
            return super().validation_step(batch)
        codes = batch["target"]
        hard = [hard_label_map(t, self.encoding) for t in codes] if isinstance(codes, list) else hard_label_map(
            codes, self.encoding
        )  # fmt: skip
        self.loss.held = codes
        try:
            return super().validation_step({**batch, "target": hard})
        finally:
            self.loss.held = None

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's final validation, its Dice scored against the hard labels of the encoded reference maps.

        nnU-Net scores ``<preprocessed>/gt_segmentations``, which hold the encoded maps (rater bits, levels); the
        validation cases' hard labels (the majority, ``q > 0.5``) are written to a temporary folder, beside a copy of
        the split file (which nnU-Net reads from the same attribute), and nnU-Net is pointed there while it validates,
        so its output folders stay as they are.
        """
        if self.encoding.kind == "labels":
            return super().perform_actual_validation(save_probabilities)
        base = self.preprocessed_dataset_folder_base  # type: ignore[has-type]
        with tempfile.TemporaryDirectory(prefix="softlabels-reference-") as reference:
            splits = os.path.join(base, "splits_final.json")  # nnU-Net's split is read from the same folder
            if os.path.isfile(splits):
                shutil.copy(splits, reference)
            if self.local_rank == 0:
                gt = "gt_segmentations"
                self._write_hard_references(os.path.join(base, gt), os.path.join(reference, gt))
            self.preprocessed_dataset_folder_base = reference
            try:
                super().perform_actual_validation(save_probabilities)
            finally:
                self.preprocessed_dataset_folder_base = base
        return None

    def _write_hard_references(self, source: str, target: str) -> None:
        """The hard label map of every validation case's encoded reference, written with nnU-Net's reader/writer."""
        os.makedirs(target, exist_ok=True)
        io = self.plans_manager.image_reader_writer_class()
        ending = self.dataset_json["file_ending"]
        for case in self.do_split()[1]:
            seg, properties = io.read_seg(os.path.join(source, case + ending))
            hard = hard_label_map(torch.from_numpy(seg.astype("int64")), self.encoding).numpy()
            io.write_seg(hard[0].astype("uint8"), os.path.join(target, case + ending), properties)


class nnUNetTrainerHard(nnUNetTrainerSoftLabels):
    """Cross-entropy on the hard label (``hard``), nnU-Net's pipeline otherwise unchanged.

    Example:
        >>> nnUNetTrainerHard.method_name
        'hard'
    """

    method_name = "hard"


class nnUNetTrainerLS(nnUNetTrainerSoftLabels):
    """Label smoothing (``ls``, ε = 0.1).

    Example:
        >>> nnUNetTrainerLS.method_name
        'ls'
    """

    method_name = "ls"


class nnUNetTrainerBoundaryLS(nnUNetTrainerSoftLabels):
    """Label smoothing at class boundaries only (``boundary_ls``).

    Example:
        >>> nnUNetTrainerBoundaryLS.method_name
        'boundary_ls'
    """

    method_name = "boundary_ls"


class nnUNetTrainerSVLS(nnUNetTrainerSoftLabels):
    """Spatially varying label smoothing (``svls``; Islam & Glocker, IPMI 2021).

    Example:
        >>> nnUNetTrainerSVLS.method_name
        'svls'
    """

    method_name = "svls"


class nnUNetTrainerMbLS(nnUNetTrainerSoftLabels):
    """Margin-based label smoothing (``mbls``; Liu et al., CVPR 2022), the segmentation margin.

    Example:
        >>> nnUNetTrainerMbLS.method_name
        'mbls'
    """

    method_name = "mbls"


class nnUNetTrainerNACL(nnUNetTrainerSoftLabels):
    """Neighbour-aware calibration loss (``nacl``; Murugesan et al., MICCAI 2023).

    Example:
        >>> nnUNetTrainerNACL.method_name
        'nacl'
    """

    method_name = "nacl"


class nnUNetTrainerFocal(nnUNetTrainerSoftLabels):
    """Focal loss (``focal``, γ = 3).

    Example:
        >>> nnUNetTrainerFocal.method_name
        'focal'
    """

    method_name = "focal"


class nnUNetTrainerFLSD(nnUNetTrainerSoftLabels):
    """Sample-dependent focal loss (``flsd``; Mukhoti et al., NeurIPS 2020).

    Example:
        >>> nnUNetTrainerFLSD.method_name
        'flsd'
    """

    method_name = "flsd"


class nnUNetTrainerDML(nnUNetTrainerSoftLabels):
    """Soft-correct Dice (DML) + CE on the label (``dml``; Wang et al., MICCAI 2023).

    Example:
        >>> nnUNetTrainerDML.method_params
        {}
    """

    method_name = "dml"


class nnUNetTrainerRatersDML(nnUNetTrainerSoftLabels):
    """DML + CE on the rater mean (``dml``, ``source="raters_mean"``), the paper's multi-rater setting.

    Example:
        >>> nnUNetTrainerRatersDML.method_name
        'dml'
    """

    method_name = "dml"
    method_params: ClassVar[dict[str, Any]] = {"source": "raters_mean"}


class nnUNetTrainerRatersMean(nnUNetTrainerSoftLabels):
    """Soft CE on the raters' mean (``raters_mean``).

    Example:
        >>> nnUNetTrainerRatersMean.method_name
        'raters_mean'
    """

    method_name = "raters_mean"


class nnUNetTrainerRatersSVLS(nnUNetTrainerSoftLabels):
    """SVLS of the raters' mean (``raters_svls``).

    Example:
        >>> nnUNetTrainerRatersSVLS.method_name
        'raters_svls'
    """

    method_name = "raters_svls"


class nnUNetTrainerRatersWeighted(nnUNetTrainerSoftLabels):
    """Raters weighted by their Dice against the majority (``raters_weighted``).

    Example:
        >>> nnUNetTrainerRatersWeighted.method_name
        'raters_weighted'
    """

    method_name = "raters_weighted"


class nnUNetTrainerRatersMajority(nnUNetTrainerSoftLabels):
    """CE on the raters' majority vote (``raters_majority``).

    Example:
        >>> nnUNetTrainerRatersMajority.method_name
        'raters_majority'
    """

    method_name = "raters_majority"


class nnUNetTrainerConfidenceThreshold(nnUNetTrainerSoftLabels):
    """Hard labels kept where the annotator confidence is ≥ τ = 0.6 (``confidence_threshold``).

    Example:
        >>> nnUNetTrainerConfidenceThreshold.method_name
        'confidence_threshold'
    """

    method_name = "confidence_threshold"


class nnUNetTrainerConfidenceSoft(nnUNetTrainerSoftLabels):
    """The annotator confidence as a soft target (``confidence_soft``).

    Example:
        >>> nnUNetTrainerConfidenceSoft.method_name
        'confidence_soft'
    """

    method_name = "confidence_soft"


class nnUNetTrainerConfidenceWeighted(nnUNetTrainerSoftLabels):
    """CE weighted by the annotator confidence (``confidence_weighted``).

    Example:
        >>> nnUNetTrainerConfidenceWeighted.method_name
        'confidence_weighted'
    """

    method_name = "confidence_weighted"


TRAINERS: dict[str, type[nnUNetTrainerSoftLabels]] = {
    cls.__name__: cls for cls in nnUNetTrainerSoftLabels.__subclasses__()
}
"""Every softlabels trainer by its class name (the ``-tr`` value)."""
