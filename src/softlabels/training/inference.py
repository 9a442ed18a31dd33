"""Evaluating and calibrating a trained checkpoint: metrics reports and streaming temperature scaling.

``evaluate`` writes ``metrics.json``, ``report.md`` and ``reliability.png`` (the report of ``softlabels score``) for
one split of the checkpoint's data, or of other data given as an override. ``calibrate`` fits one temperature on the
validation split by NLL (``TemperatureScaler``, streaming) and writes a copy of the checkpoint that carries it, so
``evaluate`` and ``predict`` of that copy use ``softmax(z / T)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from softlabels._io import atomic_write_bytes, check_output_file
from softlabels._memory import bounded_heap
from softlabels._options import look_up_option
from softlabels.calibration import TemperatureScaler
from softlabels.evaluation.case_names import CaseNames
from softlabels.evaluation.evaluator import Evaluator
from softlabels.evaluation.fitting import ObservedLogits, fit_scaler
from softlabels.evaluation.references import ReferenceRule, batch_references
from softlabels.evaluation.report_files import check_report_folder, write_report
from softlabels.evaluation.scoring import ScoreResult, Scoring
from softlabels.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from softlabels.training.run import load_run
from softlabels.training.task import SoftLabelTask

__all__ = ["calibrate", "evaluate", "reference_rule", "score_split", "split_loader", "validation_logits"]

SPLIT_NAMES = ("train", "val", "test")


def split_loader(dm: Any, split: str) -> Any:
    """The evaluation-order loader of ``split`` (``train`` without shuffling).

    Example:
        >>> from softlabels.training.config import config_from_dict
        >>> from softlabels.training.run import build_run
        >>> config = config_from_dict({"task": "classification", "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}}})
        >>> dm, _ = build_run(config)
        >>> len(split_loader(dm, "train").dataset), len(split_loader(dm, "test").dataset)
        (16, 8)
    """
    split = look_up_option("split", split, SPLIT_NAMES, where="evaluate")
    if split == "val":
        return dm.val_dataloader()
    if split == "test":
        return dm.test_dataloader()
    from torch.utils.data import DataLoader

    return DataLoader(dm.train_set, batch_size=dm.eval_batch_size, shuffle=False, num_workers=dm.num_workers)


def reference_rule(value: str) -> ReferenceRule:
    """The reference rule of a run config's ``evaluation.reference`` (``auto`` is the former name of ``observed``).

    Example:
        >>> reference_rule("auto"), reference_rule("label")
        ('observed', 'label')
    """
    return "observed" if value == "auto" else value  # type: ignore[return-value]


def score_split(
    task: SoftLabelTask, loader: Any, *, reference: ReferenceRule, n_bins: int, boundary_width: float
) -> ScoreResult:
    """Score a model on a loader through the evaluation layer: one batch at a time, per-case rows (segmentation).

    Example:
        >>> from softlabels.training.config import config_from_dict
        >>> from softlabels.training.run import build_run
        >>> config = config_from_dict({"task": "classification", "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}}})
        >>> dm, task = build_run(config)
        >>> result = score_split(task, dm.test_dataloader(), reference="observed", n_bins=15, boundary_width=2.0)
        >>> 0 <= result.summary["top1"] <= 1, result.settings["reference"]
        (True, 'observed')
    """
    segmentation = task.spatial_dims > 0
    num_features = None if segmentation else getattr(task.model, "num_features", None)
    evaluator = Evaluator(
        task.task, task.num_classes, spatial_dims=task.spatial_dims, n_bins=n_bins, boundary_width=boundary_width,
        num_features=num_features,
    )  # fmt: skip
    scoring = Scoring(evaluator, keep_rows=segmentation)
    case_names = CaseNames()
    with torch.no_grad(), bounded_heap():  # else glibc's heap grows with the number of cases (softlabels._memory)
        for batch in loader:
            features, logits = task.features_and_logits(batch["image"])
            probs = torch.softmax(logits.float(), dim=1)
            refs = batch_references(batch, task.num_classes, task.spatial_dims, reference=reference)
            scoring.add(case_names(batch, len(probs)), probs, refs, features=features)
    if not scoring.evaluator.update_count:
        raise ValueError("the split to evaluate is empty.")
    return scoring.result({"reference": reference})


def evaluate(
    checkpoint: str | Path,
    output: str | Path,
    *,
    split: str = "test",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the metrics report of ``checkpoint`` on ``split`` into ``output``; return the files written.

    The metrics of the evaluation layer (docs/metrics.md), per case and pooled for segmentation, pooled for
    classification; the reference follows ``evaluation.reference`` of the run config (the reference rule of
    :mod:`softlabels.evaluation.references`).

    Example:
        >>> import tempfile
        >>> from softlabels.training.config import config_from_dict
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"task": "classification", "output_dir": tmp.name, "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}},
        ...     "trainer": {"max_epochs": 1, "enable_progress_bar": False}})
        >>> from softlabels.training.run import train
        >>> _ = train(config)
        >>> checkpoint = f"{tmp.name}/checkpoints/last.ckpt"
        >>> paths = evaluate(checkpoint, f"{tmp.name}/report", split="test")
        >>> sorted(paths), all(p.is_file() for p in paths.values())
        (['json', 'markdown', 'png'], True)
        >>> tmp.cleanup()
    """
    check_report_folder(output, what="--output")
    config, dm, task = load_run(checkpoint, overrides)
    loader = split_loader(dm, split)
    result = score_split(
        task, loader, reference=reference_rule(config.evaluation.reference), n_bins=config.evaluation.n_bins,
        boundary_width=config.evaluation.boundary_width,
    )  # fmt: skip
    sources: dict[str, Any] = {"checkpoint": str(checkpoint), "split": split, "data": config.data.source}
    sources["method"] = config.method.name
    sources["temperature"] = task.scaler.temperature_
    return write_report(result, output, sources=sources)


def validation_logits(task: SoftLabelTask, dm: Any, *, reference: ReferenceRule = "observed") -> ObservedLogits:
    """The validation split's re-iterable ``(uncalibrated logits, observed reference)`` stream.

    Every temperature is fitted on it: ``calibrate`` and the benchmark's temperature-scaled rows.

    Example:
        >>> from softlabels.training.config import config_from_dict
        >>> from softlabels.training.run import build_run
        >>> config = config_from_dict({"task": "classification", "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}}})
        >>> dm, task = build_run(config)
        >>> sum(len(target) for _, target in validation_logits(task, dm))
        8
    """
    return ObservedLogits(
        lambda image: task.predict_logits(image, calibrated=False), dm.val_dataloader(),
        num_classes=task.num_classes, spatial_dims=task.spatial_dims, reference=reference,
    )  # fmt: skip


def calibrate(checkpoint: str | Path, output: str | Path | None = None) -> dict[str, Any]:
    """Fit temperature scaling on the validation split and write a calibrated copy of the checkpoint.

    The temperature is fitted by the evaluation layer's one fitting path (:func:`~softlabels.evaluation.fitting.
    fit_scaler`) against the observed reference (soft label or rater mean, else the label): the same ``T`` whether
    or not the data carries the synthetic ``true_probs``.

    Args:
        checkpoint: a checkpoint of :func:`~softlabels.training.run.train`.
        output: the calibrated checkpoint (default: ``calibrated.ckpt`` beside the input).

    Returns:
        ``{"temperature", "nll_before", "nll_after", "passes", "converged", "checkpoint"}`` (also written as JSON
        beside the output checkpoint).

    Example:
        >>> import tempfile
        >>> from softlabels.training.config import config_from_dict
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"task": "classification", "output_dir": tmp.name, "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}},
        ...     "trainer": {"max_epochs": 1, "enable_progress_bar": False}})
        >>> from softlabels.training.run import train
        >>> _ = train(config)
        >>> checkpoint = f"{tmp.name}/checkpoints/last.ckpt"
        >>> summary = calibrate(checkpoint)
        >>> summary["temperature"] > 0 and summary["nll_after"] <= summary["nll_before"] + 1e-9
        True
        >>> Path(summary["checkpoint"]).name
        'calibrated.ckpt'
        >>> tmp.cleanup()
    """
    target = Path(output) if output is not None else Path(checkpoint).with_name("calibrated.ckpt")
    check_output_file(target, what="--output")
    if target.exists() and Path(checkpoint).exists() and target.samefile(checkpoint):
        raise ValueError(f"--output {str(target)!r} is the input checkpoint; write the calibrated copy elsewhere.")
    config, dm, task = load_run(checkpoint)
    stream = validation_logits(task, dm, reference=reference_rule(config.evaluation.reference))
    before = _mean_nll(stream)
    scaler = fit_scaler(TemperatureScaler(), stream)
    state = load_checkpoint(checkpoint)
    state["state_dict"]["scaler.log_temperature"] = scaler.log_temperature.detach().clone()
    AtomicCheckpointIO().save_checkpoint(state, target)
    summary = {
        "temperature": scaler.temperature_, "nll_before": before, "nll_after": scaler.nll_, "passes": scaler.n_passes_,
        "converged": scaler.converged_, "checkpoint": str(target), "split": "val",
    }  # fmt: skip
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write_bytes(target.with_suffix(".json"), text.encode())
    return summary


def _mean_nll(stream: ObservedLogits) -> float:
    total, count = 0.0, 0
    for logits, target in stream:
        log_probs = torch.log_softmax(logits.double(), dim=1)
        if target.is_floating_point():
            total += float(-(target.double() * log_probs).sum())
        else:
            total += float(-log_probs.gather(1, target.unsqueeze(1)).sum())
        count += target.numel() // (target.shape[1] if target.is_floating_point() else 1)
    return total / count if count else math.nan
