"""Optimisers and learning-rate schedulers by name (the seeds' recipes: SGD with momentum, Adam(W), step decay)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from softlabels._options import look_up_option

__all__ = ["build_optimizer"]

_OPTIMIZER_KEYS = {
    "sgd": {"lr", "momentum", "weight_decay", "nesterov"},
    "adam": {"lr", "weight_decay", "betas", "eps"},
    "adamw": {"lr", "weight_decay", "betas", "eps"},
}
_SCHEDULER_KEYS = {
    "none": set(),
    "cosine": {"eta_min"},
    "multistep": {"milestones", "gamma"},
    "step": {"step_size", "gamma"},
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value: Any) -> bool:
    return _number(value) and 0 <= value < 1


# what each numeric option must be: (check, description)
_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "momentum": (_fraction, "a number in [0, 1)"),
    "nesterov": (lambda v: isinstance(v, bool), "true or false"),
    "betas": (
        lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_fraction(b) for b in v),
        "two numbers in [0, 1)",
    ),
    "eps": (lambda v: _number(v) and v > 0, "a number > 0"),
    "eta_min": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "gamma": (lambda v: _number(v) and v > 0, "a number > 0"),
    "step_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "milestones": (
        lambda v: (
            isinstance(v, list | tuple)
            and all(isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in v)
            and list(v) == sorted(set(v))
        ),
        "increasing integers >= 0, e.g. [45, 80]",
    ),
}


def _options(config: Mapping[str, Any], allowed: dict[str, set[str]], kind: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(config, Mapping):
        raise ValueError(f"`{kind}` of the run config must be a mapping with a `name`; got {config!r}.")
    options = dict(config)
    name = look_up_option(
        f"{kind}.name", options.pop("name", "none" if kind == "scheduler" else "adamw"), allowed, where=kind
    )
    unknown = sorted(set(options) - allowed[name])
    if unknown:
        raise ValueError(f"unknown {kind} option(s) {unknown} for {name!r}; valid: {sorted(allowed[name])}.")
    for key, value in options.items():
        check, wanted = _VALUES[key]
        if not check(value):
            raise ValueError(f"`{kind}.{key}` of the run config must be {wanted}; got {value!r}.")
    return name, options


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter],
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any] | None = None,
    max_epochs: int | None = None,
) -> Any:
    """Build the optimiser (and scheduler) in Lightning's ``configure_optimizers`` format.

    ``optimizer``: ``{"name": "sgd" | "adam" | "adamw", "lr": …, …}`` (SGD: ``momentum``, ``nesterov``,
    ``weight_decay``). ``scheduler``: ``{"name": "none"}``, ``{"name": "cosine", "eta_min": …}`` (over
    ``max_epochs``), ``{"name": "multistep", "milestones": [...], "gamma": 0.1}`` or ``{"name": "step",
    "step_size": …, "gamma": …}``; stepped once per epoch.

    Raises:
        ValueError: an unknown name or option (the valid ones are listed), an option of the wrong kind (``lr`` not a
            positive number, ...), or ``cosine`` without ``max_epochs``.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> out = build_optimizer(net.parameters(), {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        ...                       {"name": "multistep", "milestones": [2], "gamma": 0.1})
        >>> type(out["optimizer"]).__name__, type(out["lr_scheduler"]["scheduler"]).__name__
        ('SGD', 'MultiStepLR')
    """
    name, options = _options(optimizer, _OPTIMIZER_KEYS, "optimizer")
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    opt = classes[name](parameters, **options)
    sched_name, sched_options = _options(scheduler or {"name": "none"}, _SCHEDULER_KEYS, "scheduler")
    if sched_name == "none":
        return {"optimizer": opt}
    if sched_name == "cosine":
        if not max_epochs or max_epochs < 1:
            raise ValueError("scheduler 'cosine' needs trainer.max_epochs >= 1.")
        sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs, **sched_options)
    elif sched_name == "multistep":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, **sched_options)
    else:
        sched = torch.optim.lr_scheduler.StepLR(opt, **sched_options)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
