"""The run configuration: typed dataclasses read from YAML with command-line overrides (jsonargparse).

A config file mirrors :class:`RunConfig`::

    task: segmentation
    seed: 0
    output_dir: outputs/svls-synthetic
    data: {source: synthetic_segmentation, options: {shape: [64, 64], num_cases: [40, 10, 10]}, batch_size: 8}
    model: {name: unet, options: {channels: [16, 32, 64, 128]}}
    method: {name: svls, options: {sigma: 1.0}}
    optimizer: {name: adamw, lr: 0.001, weight_decay: 0.0001}
    scheduler: {name: none}
    trainer: {max_epochs: 10, accelerator: cpu, devices: 1}
    evaluation: {n_bins: 15, boundary_width: 2.0, reference: observed}

Every key can be overridden on the command line (``--trainer.max_epochs 3``, ``--method.name ls``). Types and
choices are checked by jsonargparse with the key in the message; names (source, model, method, optimizer) and their
options are checked by their own factories, which list the valid values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["RunConfig", "config_from_dict", "config_parser", "config_to_dict", "read_config_file"]


@dataclass
class DataConfig:
    """Where the data comes from (a source of ``training.data_sources``), its transforms and how it is batched.

    ``transforms`` (MONAI dictionary transforms by name) apply to every split — and to the data of ``evaluate
    --data-config`` — ``train_transforms`` replace them for the training split.
    """

    source: str = "synthetic_segmentation"
    options: dict[str, Any] = field(default_factory=dict)
    train_transforms: list[dict[str, Any]] | None = None
    transforms: list[dict[str, Any]] | None = None
    batch_size: int = 8
    eval_batch_size: int | None = None
    num_workers: int = 0


@dataclass
class ModelConfig:
    """The network: a name of ``softlabels.models.list_models()``, its options and optional local weights."""

    name: str = "unet"
    options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None


@dataclass
class MethodConfig:
    """The method: a name of ``softlabels.methods.list_methods()`` and its parameters."""

    name: str = "hard"
    options: dict[str, Any] = field(default_factory=dict)
    teacher_checkpoint: str | None = None


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` options (a subset; the rest keep Lightning's defaults)."""

    max_epochs: int = 10
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    precision: str = "32-true"
    deterministic: bool | Literal["warn"] = False  # "warn": PyTorch warns instead of raising (CUDA ops)
    log_every_n_steps: int = 10
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    check_val_every_n_epoch: int = 1
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool | None = None  # None: on only when stdout is a terminal (a log file gets no bar lines)


@dataclass
class EvaluationConfig:
    """The metrics reported on validation, test and ``evaluate``, and their options.

    ``reference`` is the reference rule of :mod:`softlabels.evaluation.references`: ``observed`` (the data's soft
    label or rater mean when it has one, else the label — never the synthetic ``true_probs``), ``label``, or
    ``true_probs`` (the synthetic p*, only when named); ``auto`` is read as ``observed`` (its former name).
    """

    metrics: list[str] | None = None
    n_bins: int = 15
    boundary_width: float = 2.0
    reference: Literal["observed", "label", "true_probs", "auto"] = "observed"


@dataclass
class InferenceConfig:
    """Sliding-window inference for volumes larger than ``roi_size`` (segmentation)."""

    roi_size: list[int] | None = None
    sw_batch_size: int = 4
    overlap: float = 0.25


@dataclass
class RunConfig:
    """One run: task, data, model, method, optimisation, trainer, evaluation, inference, output folder.

    The sections are the keys of a ``softlabels train`` YAML config (docs/training.md); every field has a default.

    Example:
        >>> config = RunConfig(task="classification", output_dir="outputs/ols")
        >>> config.method.name, config.trainer.max_epochs, config.optimizer["name"]
        ('hard', 10, 'adamw')
    """

    task: Literal["segmentation", "classification"] = "segmentation"
    seed: int = 0
    output_dir: str = "outputs/run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4})
    scheduler: dict[str, Any] = field(default_factory=lambda: {"name": "none"})
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)


def config_parser(prog: str, description: str) -> Any:
    """A jsonargparse parser with ``--config FILE`` and every :class:`RunConfig` key as ``--a.b`` options.

    Example:
        >>> parser = config_parser("softlabels train", "train")
        >>> cfg = parser.parse_args(["--method.name", "svls", "--trainer.max_epochs", "2"])
        >>> cfg.method.name, cfg.trainer.max_epochs
        ('svls', 2)
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False, allow_abbrev=False)
    parser.add_argument(
        "--config", action=ActionConfigFile, help="a YAML run configuration (later options override it)"
    )
    for item in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(item.type) or (isinstance(item.type, str) and item.type.endswith("Config")):
            parser.add_class_arguments(
                globals()[str(item.type)] if isinstance(item.type, str) else item.type, item.name
            )
        else:
            default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
            annotation = {"task": Literal["segmentation", "classification"], "seed": int, "output_dir": str}
            parser.add_argument(f"--{item.name}", type=annotation.get(item.name, dict[str, Any]), default=default)
    return parser


def read_config_file(path: str | Path, *, what: str = "--config") -> dict[str, Any]:
    r"""Read a YAML config file strictly: a mapping of sections, no key twice, not empty.

    ``softlabels train`` reads every ``--config`` file with this before jsonargparse parses it, so a duplicated
    section (which YAML would silently reduce to its last block) or an empty file is one clear error.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, unreadable, a YAML error, a duplicated key, empty, or not a mapping (the file named).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "run.yaml").write_text("task: classification\nseed: 1\n")
        ...     read_config_file(Path(tmp) / "run.yaml")
        {'task': 'classification', 'seed': 1}
    """
    from softlabels._yaml import load_yaml

    content = load_yaml(path, what=what)
    if content is None:
        raise ValueError(
            f"{what} {str(path)!r} is empty; it must hold the run's sections (task, data, model, method, ...; "
            "configs/cpu/ holds examples)."
        )
    if not isinstance(content, dict):
        raise ValueError(f"{what} {str(path)!r} must hold a mapping of sections; got a {type(content).__name__}.")
    return content


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    """Build a :class:`RunConfig` from plain data (a parsed namespace's ``as_dict()`` or a stored config).

    Raises:
        ValueError: an unknown key, naming it and the valid ones.

    Example:
        >>> config_from_dict({"task": "classification", "method": {"name": "ls"}}).method.name
        'ls'
    """
    return _build(RunConfig, {k: v for k, v in values.items() if k not in ("config", "__path__")}, "config")


def _build(cls: Any, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid: {sorted(fields)}.")
    kwargs = {}
    for name, value in values.items():
        nested = globals().get(str(fields[name].type))
        if nested is not None and dataclasses.is_dataclass(nested) and isinstance(value, dict):
            value = _build(nested, value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as plain data (YAML/JSON-able; stored in checkpoints and next to them).

    Example:
        >>> config_to_dict(RunConfig())["trainer"]["max_epochs"]
        10
    """
    data = dataclasses.asdict(config)
    data["output_dir"] = str(Path(config.output_dir))
    return data
