"""Configured runs: build data, model, method and task from a :class:`RunConfig`, and train with Lightning.

``train`` writes into ``output_dir``: ``config.yaml`` (the resolved configuration), ``checkpoints/epoch=NNN.ckpt``
after every epoch and ``checkpoints/last.ckpt`` (all written atomically), ``logs/version_K/metrics.csv`` (Lightning's
CSV logger) and ``final_metrics.json`` (the validation metrics of the final model). ``resume=True`` continues from
``last.ckpt``: with a fixed seed, epoch-seeded shuffling and deterministic algorithms it ends where an uninterrupted
run ends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch import nn

from softlabels.bench.report import atomic_write
from softlabels.data.datamodule import SoftLabelDataModule
from softlabels.methods import create_method
from softlabels.training.checkpoint_io import AtomicCheckpointIO, load_checkpoint
from softlabels.training.config import RunConfig, config_from_dict, config_to_dict
from softlabels.training.data_sources import build_datamodule
from softlabels.training.task import ClassificationTask, SegmentationTask, SoftLabelTask

__all__ = ["build_run", "load_run", "make_trainer", "train"]


def _data_shape(dm: SoftLabelDataModule) -> tuple[int, int, int]:
    """``(num_classes, spatial_dims, in_channels)`` from the data's info and its first training sample."""
    info = dm.info
    if "num_classes" not in info:
        raise ValueError("the data source gives no `num_classes` in its info; set it in data.options.")
    image = dm.train_set[0]["image"]  # type: ignore[index]
    dims = int(info.get("spatial_dims", image.ndim - 1))
    return int(info["num_classes"]), dims, int(image.shape[0])


def _teacher(config: RunConfig, num_classes: int, dims: int, channels: int) -> nn.Module:
    """The trained teacher of ``tfkd_self``: the run's architecture with the weights of ``teacher_checkpoint``."""
    from softlabels.models import create_model

    checkpoint = load_checkpoint(str(config.method.teacher_checkpoint))
    state = checkpoint.get("state_dict", checkpoint)
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")} or state
    teacher = create_model(
        config.model.name, in_channels=channels, num_classes=num_classes, spatial_dims=dims, **config.model.options
    )
    teacher.load_state_dict(weights)
    return teacher.eval()


def build_run(config: RunConfig) -> tuple[SoftLabelDataModule, SoftLabelTask]:
    """The DataModule and the task of a run (seeded with ``config.seed`` first).

    Example:
        >>> cfg = config_from_dict({"task": "classification", "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [8, 4, 4]}}})
        >>> dm, task = build_run(cfg)
        >>> type(task).__name__, task.num_classes
        ('ClassificationTask', 8)
    """
    from softlabels.models import create_model

    L.seed_everything(config.seed, workers=True, verbose=False)
    data = config.data
    dm = build_datamodule(
        data.source, data.options, task=config.task, seed=config.seed, batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size, num_workers=data.num_workers, train_transforms=data.train_transforms,
    )  # fmt: skip
    num_classes, dims, channels = _data_shape(dm)
    model = create_model(
        config.model.name, in_channels=channels, num_classes=num_classes, spatial_dims=max(dims, 2),
        weights=config.model.weights, **config.model.options,
    )  # fmt: skip
    method = create_method(config.method.name, num_classes, task=config.task, **config.method.options)
    if config.method.teacher_checkpoint:
        method.prepare(teacher=_teacher(config, num_classes, max(dims, 2), channels))
    evaluation = config.evaluation
    task_class = SegmentationTask if config.task == "segmentation" else ClassificationTask
    options: dict[str, Any] = {
        "num_classes": num_classes, "optimizer": config.optimizer, "scheduler": config.scheduler,
        "metrics": evaluation.metrics, "n_bins": evaluation.n_bins, "boundary_width": evaluation.boundary_width,
        "reference": evaluation.reference, "config": config_to_dict(config),
    }  # fmt: skip
    if config.task == "segmentation":
        options |= {"spatial_dims": dims, "inference": vars(config.inference)}
    return dm, task_class(model, method, **options)


def load_run(
    checkpoint: str | Path, overrides: Mapping[str, Any] | None = None
) -> tuple[RunConfig, SoftLabelDataModule, SoftLabelTask]:
    """Rebuild a run from a checkpoint alone (its stored config, optionally updated) and load its weights.

    Args:
        checkpoint: a checkpoint written by :func:`train` (read with ``weights_only=True``).
        overrides: top-level config sections to replace (e.g. ``{"data": {...}}`` to evaluate on other data).

    Raises:
        FileNotFoundError / ValueError: missing, corrupt or foreign checkpoint.

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
        >>> stored, dm, task = load_run(checkpoint)
        >>> stored.model.name, type(task).__name__, task.training
        ('small_cnn', 'ClassificationTask', False)
        >>> tmp.cleanup()
    """
    state = load_checkpoint(checkpoint)
    stored = state.get("softlabels_config")
    if not isinstance(stored, dict) or "state_dict" not in state:
        raise ValueError(f"checkpoint {str(checkpoint)!r} was not written by `softlabels train` (no stored config).")
    config = config_from_dict({**stored, **dict(overrides or {})})
    dm, task = build_run(config)
    task.load_state_dict(state["state_dict"])
    return config, dm, task.eval()


def make_trainer(config: RunConfig, *, callbacks: Sequence[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """The Lightning ``Trainer`` of a run: per-epoch atomic checkpoints, CSV logs, the config's trainer options.

    Example:
        >>> trainer = make_trainer(RunConfig(output_dir="/tmp/softlabels-doctest"), enable_progress_bar=False)
        >>> type(trainer.strategy.checkpoint_io).__name__
        'AtomicCheckpointIO'
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    out = Path(config.output_dir)
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="epoch={epoch:03d}", auto_insert_metric_name=False, save_top_k=-1,
        every_n_epochs=1, save_last=True,
    )  # fmt: skip
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    options = {k: v for k, v in vars(config.trainer).items() if v is not None}
    options |= overrides
    try:
        return L.Trainer(
            default_root_dir=out, callbacks=[checkpoints, *callbacks], logger=CSVLogger(save_dir=out, name="logs"),
            plugins=[AtomicCheckpointIO()], **options,
        )  # fmt: skip
    except (MisconfigurationException, ImportError) as err:  # e.g. devices=0, accelerator="tpu" without torch_xla
        raise ValueError(f"trainer options: {err}") from err


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def train(
    config: RunConfig, *, resume: bool = False, overwrite: bool = False, callbacks: Sequence[L.Callback] = ()
) -> dict[str, float]:
    """Train a configured run; return (and write to ``final_metrics.json``) the final validation metrics.

    Args:
        config: the run.
        resume: continue from ``output_dir/checkpoints/last.ckpt``.
        overwrite: train anew although ``output_dir/checkpoints`` holds an earlier run's checkpoints (they are
            deleted first, so no stale epoch is mistaken for this run's).
        callbacks: extra Lightning callbacks.

    Raises:
        FileNotFoundError: ``resume`` without a ``last.ckpt``.
        ValueError: checkpoints of an earlier run in ``output_dir`` without ``resume`` or ``overwrite``.

    Example:
        >>> import tempfile
        >>> from softlabels.training.config import config_from_dict
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"task": "classification", "output_dir": tmp.name, "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}},
        ...     "trainer": {"max_epochs": 1, "enable_progress_bar": False}})
        >>> metrics = train(config)
        >>> sorted(p.name for p in (Path(tmp.name) / "checkpoints").iterdir())
        ['epoch=000.ckpt', 'last.ckpt']
        >>> 0 <= metrics["val/top1"] <= metrics["val/top5"] <= 1
        True
        >>> tmp.cleanup()
    """
    out = Path(config.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"nothing to resume: {str(last)!r} does not exist (train once without --resume).")
    earlier = sorted((out / "checkpoints").glob("*.ckpt")) if not resume else []
    if earlier and not overwrite:
        raise ValueError(
            f"output_dir {str(out)!r} holds checkpoints of an earlier run ({earlier[0].name}, ...); pass --resume to "
            "continue it, --overwrite to replace it, or choose another --output_dir."
        )
    dm, task = build_run(config)
    if config.method.name == "vls":  # stage 1 and the cached soft labels before stage 2 (docs/methods.md, VLS)
        from softlabels.training.vls import prepare_vls

        prepare_vls(config, dm, task.method, _data_shape(dm))
    trainer = make_trainer(config, callbacks=callbacks)
    if trainer.is_global_zero:
        for stale in earlier:
            stale.unlink()
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    trainer.fit(task, datamodule=dm, ckpt_path=str(last) if resume else None)
    results = trainer.validate(task, datamodule=dm, verbose=False)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        _write_text(out / "final_metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # the files exist before any process returns
    return metrics
