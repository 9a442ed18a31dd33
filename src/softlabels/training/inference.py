"""Evaluating and calibrating a trained checkpoint: metrics reports and streaming temperature scaling.

``evaluate`` writes ``metrics.json``, ``report.md`` and ``reliability.png`` (the report of ``softlabels score``) for
one split of the checkpoint's data, or of other data given as an override. ``calibrate`` fits one temperature on the
validation split by NLL (``TemperatureScaler``, streaming) and writes a copy of the checkpoint that carries it, so
``evaluate`` and ``predict`` of that copy use ``softmax(z / T)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from softlabels._io import atomic_write_bytes, check_output_file
from softlabels._options import look_up_option
from softlabels.calibration import TemperatureScaler
from softlabels.data.prediction_files import Case
from softlabels.evaluation.report_files import check_report_folder, write_report
from softlabels.evaluation.scoring import ScoreResult, score_predictions
from softlabels.metrics import CalibrationError
from softlabels.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from softlabels.training.evaluation import CaseNames, MetricSuite, batch_references
from softlabels.training.run import load_run
from softlabels.training.task import SoftLabelTask

__all__ = ["calibrate", "evaluate", "split_loader"]

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


def _cases(task: SoftLabelTask, loader: Any, soft_wanted: bool) -> Iterator[Case]:
    """One :class:`Case` per sample: the calibrated prediction and its reference (soft when asked and present)."""
    case_names = CaseNames()
    with torch.no_grad():
        for batch in loader:
            probs = torch.softmax(task.predict_logits(batch["image"]).float(), dim=1)
            hard, soft = batch_references(batch, task.num_classes, task.spatial_dims)
            target = soft if (soft_wanted and soft is not None) else hard
            for i, name in enumerate(case_names(batch, len(probs))):
                yield Case(name, probs[i : i + 1], target[i : i + 1], None)


def _classification_result(task: SoftLabelTask, loader: Any, n_bins: int, soft_wanted: bool) -> ScoreResult:
    suite = MetricSuite(
        "classification", task.num_classes, n_bins=n_bins, reference="auto" if soft_wanted else "label",
        num_features=getattr(task.model, "num_features", None),
    )  # fmt: skip
    diagrams = {m: CalibrationError(task.num_classes, n_bins=n_bins, mode=m) for m in ("top_label", "classwise")}
    with torch.no_grad():
        for batch in loader:
            features, logits = task.features_and_logits(batch["image"])
            probs = torch.softmax(logits.float(), dim=1)
            suite.update(probs, batch, features)
            hard, soft = batch_references(batch, task.num_classes, 0)
            for metric in diagrams.values():
                metric.update(probs, soft if (soft_wanted and soft is not None) else hard)
    settings = {"num_classes": task.num_classes, "n_bins": n_bins, "classes": [str(c) for c in range(task.num_classes)]}
    summary: dict[str, Any] = suite.compute()
    return ScoreResult(summary, [], {m: d.reliability_diagram() for m, d in diagrams.items()}, settings)


def evaluate(
    checkpoint: str | Path,
    output: str | Path,
    *,
    split: str = "test",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the metrics report of ``checkpoint`` on ``split`` into ``output``; return the files written.

    Segmentation: per case and pooled (ECE top-label/classwise/foreground/boundary, MCE, Brier, NLL, Dice, HD95 and,
    with a soft reference, the QUBIQ thresholded Dice). Classification: Top-1/Top-5, ECE, classwise ECE, Brier,
    NLL, embedding compactness. The reference follows ``evaluation.reference`` of the run config.

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
    soft_wanted = config.evaluation.reference == "auto"
    if config.task == "segmentation":
        result = score_predictions(
            _cases(task, loader, soft_wanted), soft=soft_wanted and _has_soft(dm),
            n_bins=config.evaluation.n_bins, boundary_width=config.evaluation.boundary_width,
        )  # fmt: skip
    else:
        result = _classification_result(task, loader, config.evaluation.n_bins, soft_wanted)
    sources: dict[str, Any] = {"checkpoint": str(checkpoint), "split": split, "data": config.data.source}
    sources["method"] = config.method.name
    sources["temperature"] = task.scaler.temperature_
    return write_report(result, output, sources=sources)


def _has_soft(dm: Any) -> bool:
    sample = dm.train_set[0]
    return any(key in sample for key in ("true_probs", "soft_label", "raters"))


class _ValidationLogits:
    """A re-iterable stream of ``(logits, target)`` over the validation split; each pass runs the network."""

    def __init__(self, task: SoftLabelTask, loader: Any, soft_wanted: bool) -> None:
        self.task, self.loader, self.soft_wanted = task, loader, soft_wanted

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        with torch.no_grad():
            for batch in self.loader:
                logits = self.task.model(batch["image"]) if self.task.inference.get("roi_size") is None else (
                    self.task.predict_logits(batch["image"]) * self.task.scaler.temperature_
                )  # fmt: skip
                hard, soft = batch_references(batch, self.task.num_classes, self.task.spatial_dims)
                yield logits.float(), (soft if (self.soft_wanted and soft is not None) else hard)


def calibrate(checkpoint: str | Path, output: str | Path | None = None) -> dict[str, Any]:
    """Fit temperature scaling on the validation split and write a calibrated copy of the checkpoint.

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
    stream = _ValidationLogits(task, dm.val_dataloader(), config.evaluation.reference == "auto")
    scaler = TemperatureScaler()
    before = _mean_nll(stream)
    scaler.fit(stream)
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


def _mean_nll(stream: _ValidationLogits) -> float:
    total, count = 0.0, 0
    for logits, target in stream:
        log_probs = torch.log_softmax(logits.double(), dim=1)
        if target.is_floating_point():
            total += float(-(target.double() * log_probs).sum())
        else:
            total += float(-log_probs.gather(1, target.unsqueeze(1)).sum())
        count += target.numel() // (target.shape[1] if target.is_floating_point() else 1)
    return total / count if count else math.nan
