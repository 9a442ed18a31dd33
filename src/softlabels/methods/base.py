"""The :class:`Method` every registry entry returns, and the :class:`RunContext` its run hooks receive.

A method is a target construction, a loss, epoch hooks (OLS) and two run hooks that a configured run
(``softlabels train``) calls for every method, whatever its name:

- :meth:`Method.setup_run` when the run is built (training, evaluation, prediction): load what the config names,
  write nothing (``tfkd_self`` loads its teacher from ``method.teacher_checkpoint``);
- :meth:`Method.prepare_run` once the run has been checked and its folder written, right before fitting: train or
  load what must exist before the first step, and add batch keys to the training data (``vls`` trains its generator
  and caches its soft labels).

Before anything is written the run asks :meth:`Method.missing_keys` (the batch keys the data lacks) and
:meth:`Method.missing_before_training` (what no hook will supply), so a method that cannot train is refused with
its own message. This module imports nothing of ``softlabels.training``: the run hands the method what it needs
through the :class:`RunContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from softlabels.methods.targets import TrainingTarget

__all__ = ["Method", "RunContext"]

Task = Literal["classification", "segmentation"]
TargetBuilder = Callable[[Mapping[str, Any]], TrainingTarget]
BOTH: tuple[Task, ...] = ("classification", "segmentation")
SEGMENTATION: tuple[Task, ...] = ("segmentation",)


@dataclass(frozen=True)
class RunContext:
    """What a configured run offers the run hooks of its method (built by ``softlabels.training.run``).

    Args:
        datamodule: the run's DataModule (``train_set``, ``train_dataloader()``, ``eval_batch_size``); a hook may
            replace its ``train_set`` (VLS overlays its cached soft labels).
        num_classes: classes ``C`` of the data.
        spatial_dims: spatial axes of the data (0 for classification).
        in_channels: image channels.
        seed: the run's seed.
        output_dir: the run folder; a :meth:`Method.prepare_run` hook may write below it.
        load_checkpoint: ``path → dict``, reads a checkpoint (weights only, CRC-checked) or raises naming it.
        load_network: ``(path, what) → nn.Module``: the run's architecture with the weights of a checkpoint of
            ``softlabels train``, in eval mode; ``what`` names the option in errors (``"method.teacher_checkpoint"``).
        teacher_checkpoint: ``method.teacher_checkpoint`` of the config, or ``None``.
        data: the data section of the config (``source``, ``options``, ``train_transforms``, ...), as plain data.
        trainer: the trainer section of the config (``accelerator``, ``deterministic``, ...), as plain data.

    Example:
        >>> context = RunContext(None, num_classes=2, spatial_dims=2, in_channels=1, seed=0, output_dir=Path("run"),
        ...                      load_checkpoint=dict, load_network=lambda path, what: nn.Identity())
        >>> context.teacher_checkpoint is None, context.shape
        (True, (2, 2, 1))
    """

    datamodule: Any
    num_classes: int
    spatial_dims: int
    in_channels: int
    seed: int
    output_dir: Path
    load_checkpoint: Callable[[str], Mapping[str, Any]]
    load_network: Callable[[str, str], nn.Module]
    teacher_checkpoint: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    trainer: Mapping[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(num_classes, spatial_dims, in_channels)`` of the data."""
        return self.num_classes, self.spatial_dims, self.in_channels


class Method(nn.Module):
    """A training recipe: target construction, loss, epoch hooks, run hooks, and the resolved parameters.

    Calling the method with ``(logits, training_target)`` returns the loss. The loss is a submodule, so any state it
    holds (the OLS soft-label matrix) is part of ``state_dict`` of a module that holds the method. A method that needs
    something before it can train (a teacher, a generator) subclasses this class and overrides :meth:`prepare` (the
    resources given directly), :attr:`is_ready`, and the run hooks :meth:`setup_run` / :meth:`prepare_run`.

    Args:
        name: the registry name.
        loss: the loss module; called as ``loss(logits, target, weight=..., keep_mask=...)`` (plus ``teacher=``
            when the target carries one).
        build_target: ``batch → TrainingTarget``.
        params: the resolved parameters (for provenance and config hashes).
        requires: the batch keys the target construction reads.
        tasks: the tasks the method is defined for.

    Example:
        >>> from softlabels.methods import create_method
        >>> method = create_method("svls", num_classes=2)
        >>> target = method.make_target({"label": torch.tensor([[[0, 0, 1, 1]]])})
        >>> target.target[0, 1].round(decimals=4)
        tensor([[0.0000, 0.1722, 0.8278, 1.0000]])
        >>> round(float(method(torch.zeros(1, 2, 1, 4), target)), 4)  # log 2: uniform predictions
        0.6931
        >>> method.is_ready, method.missing_keys({"image"})
        (True, ['label'])
    """

    provides: tuple[str, ...] = ()
    """Batch keys that :meth:`prepare_run` adds to the training data (so the data need not have them)."""

    def __init__(
        self,
        name: str,
        loss: nn.Module,
        build_target: TargetBuilder,
        *,
        params: Mapping[str, Any] | None = None,
        requires: tuple[str, ...] = ("label",),
        tasks: tuple[Task, ...] = BOTH,
    ) -> None:
        super().__init__()
        self.name = name
        self.loss = loss
        self.build_target = build_target
        self.params = dict(params or {})
        self.requires = requires
        self.tasks = tasks
        self.num_classes: int | None = None  # set by create_method
        self.description = ""  # the registry entry's one-line summary, set by create_method

    def make_target(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """Build the training target of ``batch`` (a dict holding at least the keys in ``requires``)."""
        if not isinstance(batch, Mapping):
            raise TypeError(f"`batch` of method {self.name!r} must be a dict of tensors; got {type(batch).__name__}.")
        missing = [key for key in self.requires if key not in batch]
        if missing:
            raise KeyError(
                f"method {self.name!r} needs the batch key(s) {missing}; the batch has {sorted(map(str, batch))}."
            )
        return self.build_target(batch)

    def forward(self, logits: Tensor, target: TrainingTarget) -> Tensor:
        """The loss of ``logits (N, C, *spatial)`` against a :class:`TrainingTarget`.

        The targets are checked where they are built (:meth:`make_target`); here the logits' class count is
        checked, and a loss that is not finite raises an error that says why (NaN/inf logits), never passes on.
        """
        if not isinstance(logits, Tensor) or logits.ndim < 2:
            raise TypeError(f"`logits` of method {self.name!r} must be a tensor (N, C, *spatial); got {logits!r}.")
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"`logits` of method {self.name!r} must have C={self.num_classes} channels; got shape "
                f"{tuple(logits.shape)}."
            )
        extra = {} if target.teacher is None else {"teacher": target.teacher}
        loss = self.loss(logits, target.target, weight=target.weight, keep_mask=target.keep_mask, **extra)
        if not bool(torch.isfinite(loss).all()):
            bad = int((~torch.isfinite(logits.detach())).sum())
            reason = f"{bad} NaN/inf logit(s)" if bad else "finite logits (please report this)"
            raise ValueError(f"the loss of method {self.name!r} is not finite; got {reason}.")
        return loss

    @property
    def has_batch_hook(self) -> bool:
        """Whether :meth:`on_train_batch_end` does anything (OLS), so a loop can skip handing it the logits."""
        return hasattr(self.loss, "on_train_batch_end")

    def on_train_batch_end(self, logits: Tensor, target: TrainingTarget) -> None:
        """Per-step hook after the optimiser step (OLS accumulates its correct predictions here)."""
        hook = getattr(self.loss, "on_train_batch_end", None)
        if hook is not None:
            hook(logits, target.target)

    def on_train_epoch_end(self) -> None:
        """End-of-epoch hook (OLS updates its soft-label matrix here, summed over DDP processes)."""
        hook = getattr(self.loss, "on_train_epoch_end", None)
        if hook is not None:
            hook()

    # --- preparation: what a method needs before it can train ---------------------------------------------------
    def prepare(self, **resources: Any) -> None:
        """Give the method what it needs before training, e.g. ``teacher=`` for ``tfkd_self``.

        Raises:
            ValueError: the method needs no preparation (this base class), or not these resources.
        """
        raise ValueError(f"method {self.name!r} needs no preparation; got resources {sorted(resources)}.")

    @property
    def is_ready(self) -> bool:
        """Whether the method can train: it needs no preparation, or it has been prepared."""
        return True

    def setup_run(self, context: RunContext) -> None:
        """Run hook, when a configured run is built: load what the config names; write nothing.

        The base method takes nothing, so a ``method.teacher_checkpoint`` in the config is refused rather than
        silently ignored.
        """
        if context.teacher_checkpoint:
            raise ValueError(
                f"method {self.name!r} needs no preparation; got `method.teacher_checkpoint` "
                f"{context.teacher_checkpoint!r} (only a method that distils from a trained network uses it)."
            )

    def prepare_run(self, context: RunContext) -> None:
        """Run hook, right before fitting (the run is checked and its folder written): nothing for this method.

        A method that must train or load something first, or add batch keys (:attr:`provides`) to
        ``context.datamodule``'s training data, does it here; it may write below ``context.output_dir``.
        """

    def missing_keys(self, keys: Collection[str]) -> list[str]:
        """The batch keys this method reads that samples with ``keys`` lack and :meth:`prepare_run` does not add."""
        return [key for key in self.requires if key not in keys and key not in self.provides]

    def missing_before_training(self) -> str | None:
        """What the method still lacks once its run hooks have run (a sentence after its name), or ``None``."""
        return None if self.is_ready else "is not ready: it needs `method.prepare(...)` first."

    def extra_repr(self) -> str:
        """Show the name and parameters in ``repr``."""
        return f"name={self.name!r}, params={self.params!r}"
