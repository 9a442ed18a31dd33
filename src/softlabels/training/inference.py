"""Evaluating and calibrating a trained checkpoint: metrics reports and streaming temperature scaling.

``evaluate`` writes ``metrics.json``, ``report.md`` and ``reliability.png`` (the report of ``softlabels score``) for
one split of the checkpoint's data, or of other data given as an override. ``calibrate`` fits one temperature on the
validation split by NLL (``TemperatureScaler``, streaming) and writes a copy of the checkpoint that carries it, so
``evaluate`` and ``predict`` of that copy use ``softmax(z / T)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
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
from softlabels.training.image_inference import FOLDER_SOURCES
from softlabels.training.run import load_run
from softlabels.training.task import SoftLabelTask

__all__ = ["calibrate", "evaluate", "reference_rule", "score_split", "split_loader", "validation_logits"]

SPLIT_NAMES = ("train", "val", "test")
LOADER_SPLITS = (*SPLIT_NAMES, "all")


def split_loader(dm: Any, split: str) -> Any:
    """The evaluation-order loader of ``split`` (``train`` without shuffling; ``all``: train, val and test in turn).

    Example:
        >>> from softlabels.training.config import config_from_dict
        >>> from softlabels.training.run import build_run
        >>> config = config_from_dict({"task": "classification", "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}}})
        >>> dm, _ = build_run(config)
        >>> len(split_loader(dm, "train").dataset), len(split_loader(dm, "test").dataset)
        (16, 8)
    """
    split = look_up_option("split", split, LOADER_SPLITS, where="evaluate")
    if split == "val":
        return dm.val_dataloader()
    if split == "test":
        return dm.test_dataloader()
    from torch.utils.data import ConcatDataset, DataLoader

    sets = [dm.train_set] if split == "train" else [dm.train_set, dm.val_set, dm.test_set]
    dataset: Any = ConcatDataset([s for s in sets if s is not None and len(s) > 0])
    return DataLoader(dataset, batch_size=dm.eval_batch_size, shuffle=False, num_workers=dm.num_workers)


def reference_rule(value: str) -> ReferenceRule:
    """The reference rule of a run config's ``evaluation.reference`` (``auto`` is the former name of ``observed``).

    Example:
        >>> reference_rule("auto"), reference_rule("label")
        ('observed', 'label')
    """
    return "observed" if value == "auto" else value  # type: ignore[return-value]


def score_split(
    task: SoftLabelTask,
    loader: Any,
    *,
    reference: ReferenceRule,
    n_bins: int,
    boundary_width: float,
    spacing: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
) -> ScoreResult:
    """Score a model on a loader through the evaluation layer: one batch at a time, per-case rows (segmentation).

    HD95 is in the units of each sample's ``"spacing"`` (NIfTI folders: mm), else of ``spacing`` (the data's voxel
    size, e.g. MNI152's), else in voxels.

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
    scoring = Scoring(evaluator, keep_rows=segmentation, class_names=class_names)
    case_names = CaseNames()
    with torch.no_grad(), bounded_heap():  # else glibc's heap grows with the number of cases (softlabels._memory)
        for batch in loader:
            features, logits = task.features_and_logits(batch["image"])
            probs = torch.softmax(logits.float(), dim=1)
            refs = batch_references(batch, task.num_classes, task.spatial_dims, reference=reference)
            names = case_names(batch, len(probs))
            sizes = batch.get("spacing")
            if segmentation and isinstance(sizes, torch.Tensor):  # per case: the batch may mix voxel sizes
                for i, name in enumerate(names):
                    feats = None if features is None else features[i : i + 1]
                    scoring.add([name], probs[i : i + 1], refs.case(i), spacing=sizes[i].tolist(), features=feats)
            else:
                scoring.add(names, probs, refs, spacing=spacing if segmentation else None, features=features)
    if not scoring.evaluator.update_count:
        raise ValueError("the split to evaluate is empty.")
    return scoring.result({"reference": reference})


def evaluate(
    checkpoint: str | Path,
    output: str | Path,
    *,
    split: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the metrics report of ``checkpoint`` on its data or other data into ``output``; return the files written.

    The metrics of the evaluation layer (docs/metrics.md), per case and pooled for segmentation, pooled for
    classification; the reference follows ``evaluation.reference`` of the run config (the reference rule of
    :mod:`softlabels.evaluation.references`); HD95 in mm when the data knows its voxel size.

    Args:
        checkpoint: a checkpoint of ``softlabels train`` (or ``calibrate``).
        output: the report folder.
        split: ``train``, ``val`` or ``test``; ``None``: the run's test split, or — with other data — all of it.
        overrides: config sections to replace; ``{"data": ...}`` evaluates other data. A folder source
            (``folder``, ``qubiq``) is read as raw images: the run's stored input pipeline prepares each image and
            the probabilities are scored on the image's own grid (:mod:`softlabels.training.image_inference`).

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
    if split is not None:
        split = look_up_option("split", split, SPLIT_NAMES, where="evaluate")
    check_report_folder(output, what="--output")
    data = dict((overrides or {}).get("data") or {})
    if data.get("source") in FOLDER_SOURCES:
        return _evaluate_folder(checkpoint, output, data, split, overrides)
    config, dm, task = load_run(checkpoint, overrides)
    other_data = "data" in (overrides or {})
    loader = split_loader(dm, split or ("all" if other_data else "test"))
    result = score_split(
        task, loader, reference=reference_rule(config.evaluation.reference), n_bins=config.evaluation.n_bins,
        boundary_width=config.evaluation.boundary_width, spacing=dm.info.get("spacing"),
        class_names=dm.info.get("class_names") or task.class_names or None,
    )  # fmt: skip
    sources: dict[str, Any] = {"checkpoint": str(checkpoint), "split": split or ("all" if other_data else "test")}
    sources |= {"data": config.data.source, "method": config.method.name, "temperature": task.scaler.temperature_}
    return write_report(result, output, sources=sources)


def _evaluate_folder(
    checkpoint: str | Path, output: str | Path, data: dict[str, Any], split: str | None, overrides: Any
) -> dict[str, Path]:
    """``evaluate`` on a folder of raw images: the stored pipeline, scored on every image's own grid."""
    from softlabels.training.image_inference import open_folder, predict_image
    from softlabels.training.run import load_model

    extra = sorted(set(overrides or {}) - {"data"})
    if extra:
        raise ValueError(f"evaluate on a folder takes a `data:` section only; got also {extra}.")
    config, task = load_model(checkpoint)
    if config.task != "segmentation":
        raise ValueError("evaluate on a folder source is for segmentation runs; this checkpoint is classification.")
    dataset, _ = open_folder(data, num_classes=task.num_classes, split=split)
    evaluator = Evaluator(
        "segmentation", task.num_classes, spatial_dims=dataset.info["spatial_dims"],
        n_bins=config.evaluation.n_bins, boundary_width=config.evaluation.boundary_width,
    )  # fmt: skip
    names = dataset.info.get("class_names") or task.class_names or None
    scoring = Scoring(evaluator, keep_rows=True, class_names=names)
    reference = reference_rule(config.evaluation.reference)
    from torch.utils.data import default_collate

    with torch.no_grad(), bounded_heap():
        for index in range(len(dataset)):
            sample = dataset[index]
            probs = predict_image(task, sample["image"], sample.get("affine"), batch_size=config.data.batch_size)
            batch = default_collate([{k: v for k, v in sample.items() if isinstance(v, torch.Tensor)}])
            refs = batch_references(batch, task.num_classes, probs.ndim - 1, reference=reference)
            spacing = sample.get("spacing")
            scoring.add([str(sample["case"])], probs[None], refs, spacing=None if spacing is None else spacing.tolist())
    if not scoring.evaluator.update_count:
        raise ValueError("the folder to evaluate has no case in the chosen split.")
    result = scoring.result({"reference": reference})
    sources: dict[str, Any] = {"checkpoint": str(checkpoint), "split": split or "all", "data": data.get("source")}
    sources |= {"root": str(dataset.info.get("root")), "method": config.method.name}
    sources |= {"temperature": task.scaler.temperature_, "input_pipeline": task.input_pipeline}
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
