"""Callbacks: the method's per-batch and per-epoch hooks (OLS) run by Lightning."""

from __future__ import annotations

from typing import Any

import lightning as L

__all__ = ["MethodHooks"]


class MethodHooks(L.Callback):
    """Run ``pl_module.method``'s hooks: ``on_train_batch_end`` after each optimiser step, ``on_train_epoch_end``.

    For OLS these accumulate the correct predictions of the step and update the class soft-label matrix at the end
    of the epoch; the update all-reduces the accumulators under DDP, so every process holds the same matrix. The
    task's ``training_step`` leaves the logits and the target in ``pl_module.pending_batch_hook`` when the method has
    a batch hook (a module of your own may return them as ``{"loss", "logits", "target"}`` instead).

    Example:
        >>> MethodHooks().state_key
        'MethodHooks'
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Hand the step's logits and target to the method (the task's ``pending_batch_hook``, or ``outputs``)."""
        module: Any = pl_module
        method = module.method
        pending = getattr(module, "pending_batch_hook", None)
        if pending is not None:
            module.pending_batch_hook = None
            method.on_train_batch_end(*pending)
        elif isinstance(outputs, dict) and "logits" in outputs and "target" in outputs:
            method.on_train_batch_end(outputs["logits"], outputs["target"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """End-of-epoch update of the method (OLS: the soft-label matrix from this epoch's accumulators)."""
        method: Any = pl_module.method
        method.on_train_epoch_end()
