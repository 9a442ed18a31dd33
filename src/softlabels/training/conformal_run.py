"""``softlabels conformal --checkpoint``: thresholds or prediction sets fitted on a split of a run's data.

A segmentation run gets per-structure thresholds on its (calibrated) probabilities controlling the FNR or FDR
(:class:`~softlabels.conformal.SegmentationRiskControl`, streamed batch by batch); a classification run gets
LAC / APS / RAPS prediction sets (:func:`~softlabels.conformal.fit_prediction_sets`). The probabilities are those
``softlabels predict`` writes — the checkpoint's model with its stored temperature — and the fitted file records
that temperature, so ``predict --conformal`` refuses a file fitted on other probabilities.

The default split is ``val``: the test split stays untouched for measuring what the guarantee delivers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from softlabels.conformal import ConformalSets, ConformalThresholds, SegmentationRiskControl, fit_prediction_sets
from softlabels.evaluation.conformal_fitting import structure_names
from softlabels.evaluation.references import batch_references, resolve_risk_reference, risk_reference
from softlabels.training.inference import split_loader
from softlabels.training.run import load_run

__all__ = ["fit_conformal"]

_SET_OPTIONS = ("method", "mondrian", "randomized", "k_reg", "lambda_reg")


def fit_conformal(
    checkpoint: str | Path,
    *,
    split: str = "val",
    alpha: float = 0.1,
    loss: str = "fnr",
    procedure: str = "crc",
    delta: float = 0.1,
    reference: str = "auto",
    num_levels: int = 1001,
    sets: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[ConformalThresholds | ConformalSets, dict[str, Any]]:
    """Fit thresholds (segmentation) or prediction sets (classification) on ``split`` of the run of ``checkpoint``.

    Args:
        checkpoint: a checkpoint of ``softlabels train``.
        split: the calibration split (``val`` by default).
        alpha: the risk level (segmentation) or miscoverage (classification).
        loss: ``"fnr"`` or ``"fdr"`` (segmentation).
        procedure: ``"crc"`` or ``"ltt"`` (segmentation).
        delta: LTT's tolerance.
        reference: the truth with raters (:data:`~softlabels.evaluation.references.RISK_REFERENCES`).
        num_levels: threshold levels in [0, 1].
        sets: classification options of :func:`~softlabels.conformal.fit_prediction_sets` (``method``, ``mondrian``,
            ``randomized``, ``k_reg``, ``lambda_reg``); default APS.
        seed: the seed of the randomised sets.

    Returns:
        ``(fitted, provenance)``: the provenance holds the checkpoint, split and temperature.

    Example:
        >>> import tempfile
        >>> from softlabels.training.config import config_from_dict
        >>> from softlabels.training.run import train
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"task": "classification", "output_dir": tmp.name, "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 32, 8]}},
        ...     "trainer": {"max_epochs": 1, "enable_progress_bar": False}})
        >>> _ = train(config)
        >>> fitted, provenance = fit_conformal(f"{tmp.name}/checkpoints/last.ckpt", alpha=0.2)
        >>> fitted.method, fitted.n_calibration, provenance["split"]
        ('aps', 32, 'val')
        >>> tmp.cleanup()
    """
    config, dm, task = load_run(checkpoint)
    loader = split_loader(dm, split)
    provenance = {"checkpoint": str(checkpoint), "split": split, "temperature": float(task.scaler.temperature_)}
    names = list(task.class_names) or None
    if config.task == "classification":
        options = dict(sets or {})
        unknown = sorted(set(options) - set(_SET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown prediction-set option(s) {unknown}; known: {list(_SET_OPTIONS)}.")
        probs, labels = _classification_outputs(task, loader)
        generator = torch.Generator().manual_seed(seed)
        fitted = fit_prediction_sets(probs, labels, alpha=alpha, generator=generator, **options)
        return fitted, provenance
    control = SegmentationRiskControl(task.num_classes, loss=loss, num_levels=num_levels)
    used = reference
    with torch.no_grad():
        for batch in loader:
            probs = torch.softmax(task.predict_logits(batch["image"]).float(), 1)
            refs = batch_references(batch, task.num_classes, task.spatial_dims)
            used = resolve_risk_reference(refs, reference)
            control.update(probs, risk_reference(refs, task.num_classes, used))
    structures = structure_names(task.num_classes, names)
    return control.fit(alpha, procedure=procedure, delta=delta, structures=structures, reference=used), provenance


def _classification_outputs(task: Any, loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
    probs, labels = [], []
    with torch.no_grad():
        for batch in loader:
            probs.append(torch.softmax(task.predict_logits(batch["image"]).float(), 1))
            labels.append(batch_references(batch, task.num_classes, 0).hard)
    return torch.cat(probs), torch.cat(labels)
