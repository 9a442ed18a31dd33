"""Configured runs: build data, model, method and task from a :class:`RunConfig`, and train with Lightning.

``train`` writes into ``output_dir``: ``config.yaml`` (the resolved configuration), ``checkpoints/epoch=NNN.ckpt``
after every epoch and ``checkpoints/last.ckpt`` (all written atomically), ``logs/version_K/metrics.csv`` (Lightning's
CSV logger) and ``final_metrics.json`` (the validation metrics of the final model). ``resume=True`` continues from
the newest complete checkpoint (``last.ckpt``, or an epoch file written after it by a run killed mid-save): with a
fixed seed, epoch-seeded shuffling and deterministic algorithms it ends where an uninterrupted run ends.

Nothing in ``output_dir`` changes before the whole run has been checked (:func:`check_run`: data, model, method
options and the keys they need, optimiser, scheduler, trainer options and, with ``resume``, that the checkpoint's
weights and optimiser state fit the config), so a run refused for a bad config leaves an earlier run intact.
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

from softlabels._io import atomic_write_bytes, check_output_folder, remove_orphan_temporaries
from softlabels.data.datamodule import SoftLabelDataModule
from softlabels.data.input_pipeline import InputPipeline
from softlabels.methods import RunContext, create_method
from softlabels.training.checkpoint_io import (
    AtomicCheckpointIO,
    load_checkpoint,
    load_state_checked,
    newest_checkpoint,
)
from softlabels.training.config import RunConfig, config_from_dict, config_to_dict
from softlabels.training.data_sources import build_datamodule
from softlabels.training.optim import build_optimizer
from softlabels.training.task import ClassificationTask, SegmentationTask, SoftLabelTask

__all__ = ["build_run", "build_task", "check_run", "load_model", "load_run", "make_trainer", "run_context", "train"]

RUN_FILES = ("config.yaml", "input_pipeline.json", "final_metrics.json")  # besides checkpoints/ and logs/


def _data_shape(dm: SoftLabelDataModule) -> tuple[int, int, int]:
    """``(num_classes, spatial_dims, in_channels)`` from the data's info and its first sample (of any split)."""
    info = dm.info
    if "num_classes" not in info:
        raise ValueError("the data source gives no `num_classes` in its info; set it in data.options.")
    splits = [s for s in (dm.train_set, dm.val_set, dm.test_set) if s is not None and len(s) > 0]  # type: ignore[arg-type]
    if not splits:
        raise ValueError("the data has no sample in any split (train, val, test).")
    image = splits[0][0]["image"]  # type: ignore[index]
    dims = int(info.get("spatial_dims", image.ndim - 1))
    return int(info["num_classes"]), dims, int(image.shape[0])


def _network_from_checkpoint(config: RunConfig, shape: tuple[int, int, int], path: str, what: str) -> nn.Module:
    """The run's architecture with the weights of ``path``, a checkpoint of ``softlabels train`` (e.g. a teacher)."""
    from softlabels.models import create_model

    num_classes, dims, channels = shape
    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint)
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")} or state
    network = create_model(
        config.model.name, in_channels=channels, num_classes=num_classes, spatial_dims=max(dims, 2),
        **config.model.options,
    )  # fmt: skip
    load_state_checked(network, weights, source=f"{what} {path!r}")
    return network.eval()


def run_context(config: RunConfig, dm: SoftLabelDataModule | None, shape: tuple[int, int, int]) -> RunContext:
    """What the method's run hooks get: the data, its shape, the config values, checkpoint readers.

    Args:
        config: the run.
        dm: its DataModule.
        shape: ``(num_classes, spatial_dims, in_channels)`` of the data (``task.data_shape`` of :func:`build_run`).

    Example:
        >>> cfg = config_from_dict({"task": "classification", "model": {"name": "small_cnn"}, "seed": 3,
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [8, 4, 4]}}})
        >>> dm, task = build_run(cfg)
        >>> context = run_context(cfg, dm, (8, 0, 3))
        >>> context.seed, context.shape, context.data["source"], context.teacher_checkpoint
        (3, (8, 0, 3), 'synthetic_classification', None)
    """
    return RunContext(
        dm, num_classes=shape[0], spatial_dims=shape[1], in_channels=shape[2], seed=config.seed,
        output_dir=Path(config.output_dir), load_checkpoint=load_checkpoint,
        load_network=lambda path, what: _network_from_checkpoint(config, shape, path, what),
        teacher_checkpoint=config.method.teacher_checkpoint, data=dict(vars(config.data)),
        trainer=dict(vars(config.trainer)),
    )  # fmt: skip


def build_run(config: RunConfig) -> tuple[SoftLabelDataModule, SoftLabelTask]:
    """The DataModule and the task of a run (seeded with ``config.seed`` first).

    Example:
        >>> cfg = config_from_dict({"task": "classification", "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [8, 4, 4]}}})
        >>> dm, task = build_run(cfg)
        >>> type(task).__name__, task.num_classes
        ('ClassificationTask', 8)
    """
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = config.data
    dm = build_datamodule(
        data.source, data.options, task=config.task, seed=config.seed, batch_size=data.batch_size,
        eval_batch_size=data.eval_batch_size, num_workers=data.num_workers, train_transforms=data.train_transforms,
        transforms=data.transforms,
    )  # fmt: skip
    shape = _data_shape(dm)
    task = build_task(config, shape, dm)
    info = dm.info
    pipeline = info.get("input_pipeline") or (InputPipeline(shape[1]).to_dict() if shape[1] in (2, 3) else {})
    task.input_pipeline = dict(pipeline)
    task.class_names = [str(c) for c in info.get("class_names") or []]
    return dm, task


def build_task(config: RunConfig, shape: tuple[int, int, int], dm: SoftLabelDataModule | None) -> SoftLabelTask:
    """The task (model, method, metrics) of a run for data of ``shape`` ``(num_classes, spatial_dims, in_channels)``.

    ``dm`` goes to the method's ``setup_run`` hook; ``None`` when a trained model is loaded without its data.

    Example:
        >>> cfg = config_from_dict({"task": "classification", "model": {"name": "small_cnn"}})
        >>> build_task(cfg, (4, 0, 3), None).num_classes
        4
    """
    from softlabels.models import create_model

    num_classes, dims, channels = shape
    model = create_model(
        config.model.name, in_channels=channels, num_classes=num_classes, spatial_dims=max(dims, 2),
        weights=config.model.weights, **config.model.options,
    )  # fmt: skip
    method = create_method(config.method.name, num_classes, task=config.task, **config.method.options)
    method.setup_run(run_context(config, dm, shape))  # loads what the config names (a teacher)
    evaluation = config.evaluation
    task_class = SegmentationTask if config.task == "segmentation" else ClassificationTask
    options: dict[str, Any] = {
        "num_classes": num_classes, "optimizer": config.optimizer, "scheduler": config.scheduler,
        "metrics": evaluation.metrics, "n_bins": evaluation.n_bins, "boundary_width": evaluation.boundary_width,
        "reference": evaluation.reference, "config": config_to_dict(config),
    }  # fmt: skip
    if config.task == "segmentation":
        options |= {"spatial_dims": dims, "inference": vars(config.inference)}
    task = task_class(model, method, **options)
    task.data_shape = {"num_classes": num_classes, "spatial_dims": dims, "in_channels": channels}
    return task


def load_model(checkpoint: str | Path) -> tuple[RunConfig, SoftLabelTask]:
    """A trained model from its checkpoint alone, without building the run's data; in eval mode.

    The task carries what the run stored: ``input_pipeline`` (the data's preprocessing, applied to new images by
    ``evaluate`` and ``predict``), ``class_names`` and ``data_shape``.

    Raises:
        FileNotFoundError / ValueError: missing, corrupt or foreign checkpoint.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"output_dir": tmp.name, "model": {"name": "unet", "options": {"channels": [4, 8],
        ...     "strides": [2]}}, "data": {"options": {"shape": [16, 16], "num_cases": [4, 2, 2]}},
        ...     "trainer": {"max_epochs": 1, "enable_progress_bar": False}})
        >>> _ = train(config)
        >>> stored, task = load_model(f"{tmp.name}/checkpoints/last.ckpt")
        >>> stored.task, task.input_pipeline["spatial_dims"], task.training
        ('segmentation', 2, False)
        >>> tmp.cleanup()
    """
    state = load_checkpoint(checkpoint)
    stored = state.get("softlabels_config")
    if not isinstance(stored, dict) or "state_dict" not in state:
        raise ValueError(f"checkpoint {str(checkpoint)!r} was not written by `softlabels train` (no stored config).")
    shape = state.get("softlabels_data_shape")
    config = config_from_dict(stored)
    if not isinstance(shape, dict):  # a checkpoint of an older version: the data gives the shape
        _, _, task = load_run(checkpoint)
        return config, task
    L.seed_everything(config.seed, workers=True, verbose=False)
    task = build_task(config, (shape["num_classes"], shape["spatial_dims"], shape["in_channels"]), None)
    load_state_checked(task, state["state_dict"], source=f"checkpoint {str(checkpoint)!r}")
    pipeline = state.get("softlabels_input_pipeline")
    task.input_pipeline = dict(pipeline) if isinstance(pipeline, dict) else {}
    if not task.input_pipeline and shape["spatial_dims"] in (2, 3):
        task.input_pipeline = InputPipeline(shape["spatial_dims"]).to_dict()
    task.class_names = [str(c) for c in state.get("softlabels_class_names") or []]
    return config, task.eval()


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
    trained = state.get("softlabels_data_shape")
    if isinstance(trained, dict) and trained != task.data_shape:
        differs = ", ".join(f"{k} {task.data_shape[k]} (trained on {trained.get(k)})" for k in task.data_shape
                            if task.data_shape[k] != trained.get(k))  # fmt: skip
        raise ValueError(
            f"the data ({config.data.source!r}) does not fit the model of checkpoint {str(checkpoint)!r}: {differs}."
        )
    load_state_checked(task, state["state_dict"], source=f"checkpoint {str(checkpoint)!r}")
    return config, dm, task.eval()


def make_trainer(config: RunConfig, *, callbacks: Sequence[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """The Lightning ``Trainer`` of a run: per-epoch atomic checkpoints, CSV logs, the config's trainer options.

    The progress bar (``trainer.enable_progress_bar``; ``None``: on only when stdout is a terminal) and the model
    summary are Lightning's plain-text ``TQDMProgressBar`` and ``ModelSummary``, passed explicitly; Lightning's
    notices that are noise for a run are silenced (``softlabels.training._console`` lists them and why).

    Example:
        >>> trainer = make_trainer(RunConfig(output_dir="/tmp/softlabels-doctest"), enable_progress_bar=False)
        >>> type(trainer.strategy.checkpoint_io).__name__, trainer.progress_bar_callback
        ('AtomicCheckpointIO', None)
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from softlabels.training._console import display_callbacks, quiet_lightning

    quiet_lightning()  # before Lightning runs: every command and the benchmark's runs build their trainer here
    out = Path(config.output_dir)
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="epoch={epoch:03d}", auto_insert_metric_name=False, save_top_k=-1,
        every_n_epochs=1, save_last=True,
    )  # fmt: skip
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    options = {k: v for k, v in vars(config.trainer).items() if v is not None}
    options |= overrides
    shown = display_callbacks(options, callbacks)  # resolves enable_progress_bar=None: a terminal only
    try:
        return L.Trainer(
            default_root_dir=out, callbacks=[checkpoints, *callbacks, *shown],
            logger=CSVLogger(save_dir=out, name="logs"), plugins=[AtomicCheckpointIO()], **options,
        )  # fmt: skip
    except (MisconfigurationException, ImportError, ValueError, TypeError) as err:  # devices=0, precision=17, ...
        raise ValueError(f"trainer options: {err}") from err


def _write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_run(config: RunConfig, dm: SoftLabelDataModule, task: SoftLabelTask) -> None:
    """Check what only the first training step would find: the method's data keys and readiness, the optimiser.

    Run before anything is written, so a config error never leaves a run folder behind.

    Raises:
        ValueError: a key the method reads is neither in the data's samples nor added by its ``prepare_run`` hook,
            the method lacks something no run hook supplies (a teacher without ``method.teacher_checkpoint``),
            or the optimiser / scheduler options are invalid (the option is named).

    Example:
        >>> cfg = config_from_dict({"task": "classification", "model": {"name": "small_cnn"},
        ...     "optimizer": {"name": "sgd", "lr": -1},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [8, 4, 4]}}})
        >>> dm, task = build_run(cfg)
        >>> check_run(cfg, dm, task)
        Traceback (most recent call last):
            ...
        ValueError: `optimizer.lr` of the run config must be a number > 0; got -1.
    """
    if dm.train_set is None or len(dm.train_set) == 0:  # type: ignore[arg-type]
        raise ValueError("the data's training split is empty; a run needs at least one training sample (check the "
                         "split fractions or split file of data.options).")  # fmt: skip
    sample = dm.train_set[0]  # type: ignore[index]
    method = task.method
    missing = method.missing_keys(sample)  # what neither the data nor the method's prepare_run hook supplies
    if missing:
        raise ValueError(
            f"method {method.name!r} needs the data key(s) {missing}; data source {config.data.source!r} "
            f"gives {sorted(map(str, sample))}."
        )
    lacking = method.missing_before_training()
    if lacking:
        raise ValueError(f"method {method.name!r} {lacking}")
    build_optimizer(task.model.parameters(), config.optimizer, config.scheduler, config.trainer.max_epochs)


def _check_resume(config: RunConfig, task: SoftLabelTask, path: Path, state: dict[str, Any]) -> None:
    """Refuse a resume whose checkpoint does not fit the config (weights, method state, optimiser state)."""
    if "state_dict" not in state or not isinstance(state.get("softlabels_config"), dict):
        raise ValueError(f"--resume: checkpoint {str(path)!r} was not written by `softlabels train`.")
    load_state_checked(task, state["state_dict"], source=f"--resume: checkpoint {str(path)!r}")
    optimizers = state.get("optimizer_states") or []
    if optimizers:
        built = build_optimizer(task.model.parameters(), config.optimizer, config.scheduler, config.trainer.max_epochs)
        try:
            built["optimizer"].load_state_dict(optimizers[0])
        except (ValueError, KeyError, RuntimeError) as err:
            raise ValueError(
                f"--resume: the optimiser state of checkpoint {str(path)!r} does not fit optimizer "
                f"{config.optimizer!r}: {' '.join(str(err).split())}"
            ) from err


def _earlier_run(out: Path) -> list[Path]:
    """The files of an earlier run in ``out``: its checkpoints and its final metrics."""
    found = sorted((out / "checkpoints").glob("*.ckpt")) if (out / "checkpoints").is_dir() else []
    return found + [out / "final_metrics.json"] * (out / "final_metrics.json").is_file()


def _start_point(out: Path, resume: bool, overwrite: bool) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from (``resume``), after refusing what cannot go on."""
    if resume and overwrite:
        raise ValueError("--resume continues the run in output_dir and --overwrite replaces it; pass only one.")
    if resume:
        start = newest_checkpoint(out / "checkpoints")
        if start is None:
            raise FileNotFoundError(
                f"nothing to resume: no complete checkpoint in {str(out / 'checkpoints')!r} (train without --resume "
                "to start the run anew)."
            )
        return start
    earlier = _earlier_run(out)
    if earlier and not overwrite:
        raise ValueError(
            f"output_dir {str(out)!r} holds an earlier run ({earlier[0].name}, ...); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --output_dir."
        )
    return None


def _replace_earlier_run(out: Path) -> None:
    """Remove what an earlier run wrote (checkpoints, logs, config, final metrics) before a new run starts."""
    import shutil

    for path in _earlier_run(out) + [out / name for name in RUN_FILES]:
        path.unlink(missing_ok=True)
    if (out / "logs").is_dir():
        shutil.rmtree(out / "logs")


def train(
    config: RunConfig, *, resume: bool = False, overwrite: bool = False, callbacks: Sequence[L.Callback] = ()
) -> dict[str, float]:
    """Train a configured run; return (and write to ``final_metrics.json``) the final validation metrics.

    Everything is checked before ``output_dir`` changes (see the module docstring); orphan temporary files of a
    killed earlier process are removed when the run starts.

    Args:
        config: the run.
        resume: continue from the newest complete checkpoint in ``output_dir/checkpoints``.
        overwrite: train anew although ``output_dir`` holds an earlier run: its checkpoints, logs, config and final
            metrics are deleted once the new run has been checked, so no stale file is mistaken for this run's.
        callbacks: extra Lightning callbacks.

    Raises:
        FileNotFoundError: ``resume`` without a complete checkpoint.
        ValueError: an earlier run in ``output_dir`` without ``resume`` or ``overwrite``; a bad config (the key is
            named); with ``resume``, a checkpoint that does not fit the config.

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
    out = check_output_folder(config.output_dir, what="output_dir")
    start = _start_point(out, resume, overwrite)
    dm, task = build_run(config)
    check_run(config, dm, task)
    trainer = make_trainer(config, callbacks=callbacks)
    if start is not None:
        _check_resume(config, task, *start)
    # --- checked: from here on the run folder changes ---
    if trainer.is_global_zero:
        for folder in (out, out / "checkpoints"):
            remove_orphan_temporaries(folder)
        if overwrite:
            _replace_earlier_run(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
        stored = {"input_pipeline": task.input_pipeline, "class_names": task.class_names}
        _write_text(out / "input_pipeline.json", json.dumps(stored, indent=2) + "\n")
    shape = (task.data_shape["num_classes"], task.data_shape["spatial_dims"], task.data_shape["in_channels"])
    task.method.prepare_run(run_context(config, dm, shape))  # trains or loads what must exist first (a generator)
    trainer.fit(task, datamodule=dm, ckpt_path=str(start[0]) if start is not None else None)
    results = trainer.validate(task, datamodule=dm, verbose=False)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        _write_text(out / "final_metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # the files exist before any process returns
    return metrics
