"""Lightning tasks: one network trained with one registered method, with the foundation's metrics every epoch.

``SegmentationTask`` and ``ClassificationTask`` differ only in their metrics and in sliding-window inference; the
method (``softlabels.methods``) supplies the targets, the loss and the epoch hooks (OLS), run by the
:class:`~softlabels.training.callbacks.MethodHooks` callback every task installs. Lightning owns the loop,
checkpoints, logging, progress bars and DDP; metric values are logged with ``sync_dist=True`` after torchmetrics
has synced their (summable) states across processes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn

from softlabels._options import look_up_option
from softlabels.calibration import TemperatureScaler
from softlabels.evaluation.evaluator import Evaluator
from softlabels.evaluation.references import REFERENCE_RULES, batch_references
from softlabels.methods import Method
from softlabels.training.callbacks import MethodHooks
from softlabels.training.optim import build_optimizer

__all__ = ["ClassificationTask", "SegmentationTask", "SoftLabelTask"]

Task = Literal["segmentation", "classification"]


class SoftLabelTask(L.LightningModule):
    """A network, a method and the metrics of a task; see :class:`SegmentationTask` / :class:`ClassificationTask`.

    Args:
        model: the network (logits out; classification models may have ``forward_features``/``forward_head``).
        method: a :class:`~softlabels.methods.Method` from ``create_method``.
        task: ``"segmentation"`` or ``"classification"``.
        num_classes: classes ``C``.
        spatial_dims: 2 or 3 (segmentation; ignored for classification).
        optimizer: ``{"name": "adamw" | "adam" | "sgd", "lr": …, "weight_decay": …, "momentum": …}``.
        scheduler: ``{"name": "none" | "cosine" | "multistep" | "step", …}`` (see ``training.optim``).
        metrics: names to report on validation and test (``None``: all of the task).
        n_bins: calibration bins.
        boundary_width: boundary band half-width for ``ece_boundary``.
        reference: the reference rule (:mod:`softlabels.evaluation.references`): ``"observed"`` (the soft label or
            rater mean when the batch has one, never the synthetic ``true_probs``), ``"label"``, or ``"true_probs"``
            (named explicitly); ``"auto"`` is the former name of ``"observed"``.
        inference: ``{"roi_size": [...], "sw_batch_size": 4, "overlap": 0.25}`` for sliding-window inference of
            volumes larger than ``roi_size`` (segmentation), or ``None``.
        config: the resolved run configuration, stored in every checkpoint (plain data).

    Example:
        >>> from softlabels.methods import create_method
        >>> net = torch.nn.Conv2d(1, 2, 1)
        >>> task = SegmentationTask(net, create_method("svls", 2), num_classes=2, metrics=("dice", "ece"))
        >>> task(torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        method: Method,
        *,
        task: Task,
        num_classes: int,
        spatial_dims: int = 2,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        metrics: Sequence[str] | None = None,
        n_bins: int = 15,
        boundary_width: float = 2.0,
        reference: Literal["observed", "label", "true_probs", "auto"] = "observed",
        inference: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` of {type(self).__name__} must be an nn.Module; got {type(model).__name__}.")
        if not isinstance(method, Method):
            raise TypeError(
                f"`method` of {type(self).__name__} must be a softlabels Method; got {type(method).__name__}."
            )
        self.task = look_up_option("task", task, ("segmentation", "classification"), where=type(self).__name__)
        if method.tasks and self.task not in method.tasks:
            raise ValueError(f"method {method.name!r} is defined for {list(method.tasks)}; got task {self.task!r}.")
        self.model, self.method = model, method
        self.num_classes, self.spatial_dims = num_classes, spatial_dims if task == "segmentation" else 0
        self.optimizer_config = dict(optimizer or {"name": "adamw", "lr": 1e-3})
        self.scheduler_config = dict(scheduler or {"name": "none"})
        self.inference = dict(inference or {})
        self.config = dict(config or {})
        self.data_shape: dict[str, int] = {}  # num_classes, spatial_dims, in_channels of the data (set by build_run)
        self.input_pipeline: dict[str, Any] = {}  # the data's preprocessing (softlabels.data.input_pipeline)
        self.class_names: list[str] = []  # the data's class names, index 0 = background (when it names them)
        self.scaler = TemperatureScaler()  # T = 1 until `softlabels calibrate` fits it; never trained with the net
        self.scaler.log_temperature.requires_grad_(False)
        num_features = getattr(model, "num_features", None)
        reference = "observed" if reference == "auto" else reference
        self.reference = look_up_option("reference", reference, REFERENCE_RULES, where=type(self).__name__)
        suite: dict[str, Any] = {"num_classes": num_classes, "metrics": metrics, "spatial_dims": self.spatial_dims}
        suite |= {"n_bins": n_bins, "boundary_width": boundary_width, "num_features": num_features}
        self.val_metrics = Evaluator(self.task, **suite)
        self.test_metrics = Evaluator(self.task, **suite)
        self._train_loss: Tensor | None = None  # Σ loss·n, Σ n of the current training epoch
        self._train_losses: list[tuple[Tensor, int]] = []  # its terms not yet added
        self.pending_batch_hook: tuple[Tensor, Any] | None = None  # the last step's logits and target (OLS)

    # --- inference ----------------------------------------------------------------------------------------------
    def forward(self, image: Tensor) -> Tensor:
        """Logits of the network for ``image`` (no temperature)."""
        return self.model(image)

    def predict_logits(self, image: Tensor, *, calibrated: bool = True) -> Tensor:
        """Calibrated logits ``model(image) / T`` (``calibrated=False``: the network's own logits).

        Sliding windows are used when the volume exceeds ``roi_size``.
        """
        roi = self.inference.get("roi_size")
        if (
            roi is not None
            and self.task == "segmentation"
            and any(s > r for s, r in zip(image.shape[2:], roi, strict=True))
        ):
            from monai.inferers import sliding_window_inference

            logits = sliding_window_inference(
                image, tuple(roi), int(self.inference.get("sw_batch_size", 4)), self.model,
                overlap=float(self.inference.get("overlap", 0.25)), mode="gaussian",
            )  # fmt: skip
        else:
            logits = self.model(image)
        return self.scaler(logits) if calibrated else logits  # type: ignore[no-any-return,return-value]

    def features_and_logits(self, image: Tensor) -> tuple[Tensor | None, Tensor]:
        """Embeddings ``(N, F)`` (when compactness is reported and the model has them) and calibrated logits."""
        wants_features = self.task == "classification" and "compactness" in self.val_metrics.names
        model: Any = self.model
        if wants_features and hasattr(model, "forward_features") and hasattr(model, "forward_head"):
            features = model.forward_features(image)
            return _embedding(model, features), self.scaler(model.forward_head(features))
        return None, self.predict_logits(image)

    # --- training -----------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Refuse to train a method that still needs its preparation (a teacher, a generator)."""
        if not self.method.is_ready:
            raise ValueError(
                f"method {self.method.name!r} is not ready: it needs `method.prepare(...)` first "
                "(e.g. `method.teacher_checkpoint` in the config for tfkd_self)."
            )

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Method target, method loss; the logits and target wait for the method's batch hook (OLS) if it has one."""
        logits = self.model(batch["image"])
        target = self.method.make_target(batch)
        loss = self.method(logits, target)
        self._log_train_loss(loss, len(logits))
        if self.method.has_batch_hook:
            self.pending_batch_hook = (logits.detach(), target)  # MethodHooks runs it after the optimiser step
        return loss

    def _log_train_loss(self, loss: Tensor, batch_size: int) -> None:
        """``train/loss_step`` when the logger writes (every ``log_every_n_steps``); the epoch mean's terms.

        ``self.log`` costs ~0.2 ms per call (Lightning moves its result state at every call) and even a few tensor
        ops cost tens of µs, several per cent of a small CPU step. So the step value is logged only on the steps the
        logger records (and shown in the progress bar; this process's value, no per-step all-reduce), and the epoch
        mean keeps the detached losses in a list, summed every 256 steps and synced once per epoch.
        """
        self._train_losses.append((loss.detach(), batch_size))
        if len(self._train_losses) >= 256:
            self._collapse_train_losses()
        every = getattr(self._trainer, "log_every_n_steps", 1)  # set by Lightning's logger connector; 0: never
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss.detach(), on_epoch=False, prog_bar=True, batch_size=batch_size)

    def _collapse_train_losses(self) -> Tensor:
        """Add the pending ``(loss, n)`` terms to the epoch's sums ``[Σ loss·n, Σ n]`` and return them."""
        dtype = torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no float64
        if self._train_loss is None:
            self._train_loss = torch.zeros(2, dtype=dtype, device=self.device)
        if self._train_losses:
            losses = torch.stack([v for v, _ in self._train_losses]).to(dtype)
            sizes = torch.tensor([n for _, n in self._train_losses], dtype=dtype, device=losses.device)
            self._train_loss += torch.stack([(losses * sizes).sum(), sizes.sum()]).to(self._train_loss)
            self._train_losses.clear()
        return self._train_loss

    def on_train_epoch_start(self) -> None:
        """Start the epoch's mean training loss afresh."""
        self._train_loss, self._train_losses = None, []

    def on_train_epoch_end(self) -> None:
        """Log ``train/loss_epoch``: Σ loss·n / Σ n over the epoch's batches of every process."""
        total = self._collapse_train_losses()
        if self._trainer is not None:
            total = self.trainer.strategy.reduce(total.clone(), reduce_op="sum")  # exact weighted mean under DDP
        if float(total[1]) > 0:
            # already summed over processes; sync_dist averages the identical values (and silences Lightning's hint)
            self.log("train/loss_epoch", (total[0] / total[1]).float(), on_epoch=True, prog_bar=True, sync_dist=True)

    def _evaluate(self, batch: Mapping[str, Any], suite: Evaluator, prefix: str) -> None:
        features, logits = self.features_and_logits(batch["image"])
        if all(key in batch for key in self.method.requires):  # not for targets made for training cases only (VLS)
            loss = self.method(logits, self.method.make_target(batch))
            self.log(f"{prefix}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))
        refs = batch_references(batch, self.num_classes, self.spatial_dims, reference=self.reference)  # type: ignore[arg-type]
        suite.update(torch.softmax(logits.float(), dim=1), refs, features=features)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Update the validation metrics."""
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Update the test metrics."""
        self._evaluate(batch, self.test_metrics, "test")

    def _log_suite(self, suite: Evaluator, prefix: str) -> None:
        values = suite.compute()
        self.log_dict({f"{prefix}/{k}": float(v) for k, v in values.items()}, sync_dist=True)
        suite.reset()

    def on_validation_epoch_end(self) -> None:
        """Compute (synced), log and reset the validation metrics."""
        self._log_suite(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        """Compute (synced), log and reset the test metrics."""
        self._log_suite(self.test_metrics, "test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Calibrated probabilities ``(N, C, *spatial)``."""
        return torch.softmax(self.predict_logits(batch["image"]).float(), dim=1)

    def configure_optimizers(self) -> Any:
        """The configured optimiser (and scheduler) over the network's parameters only."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        return build_optimizer(self.model.parameters(), self.optimizer_config, self.scheduler_config, max_epochs)

    def configure_callbacks(self) -> list[L.Callback]:
        """The method's batch and epoch hooks (OLS accumulators and update), once per trainer."""
        callbacks: Any = self.trainer.callbacks if self._trainer is not None else []  # type: ignore[attr-defined]
        present = any(isinstance(c, MethodHooks) for c in callbacks)
        return [] if present else [MethodHooks()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the resolved configuration (plain data) so a checkpoint alone rebuilds the task."""
        checkpoint["softlabels_config"] = self.config
        if self.data_shape:
            checkpoint["softlabels_data_shape"] = dict(self.data_shape)
        if self.input_pipeline:
            checkpoint["softlabels_input_pipeline"] = dict(self.input_pipeline)
        if self.class_names:
            checkpoint["softlabels_class_names"] = list(self.class_names)


class SegmentationTask(SoftLabelTask):
    """2D/3D segmentation: Dice, HD95, ECE, classwise/boundary ECE, Brier, NLL, QUBIQ Dice; sliding windows.

    Same arguments as :class:`SoftLabelTask` without ``task``.

    Example:
        >>> from softlabels.methods import create_method
        >>> task = SegmentationTask(torch.nn.Conv3d(1, 3, 1), create_method("hard", 3), num_classes=3, spatial_dims=3)
        >>> sorted(task.val_metrics.names)[:3]
        ['brier', 'dice', 'ece']
    """

    def __init__(self, model: nn.Module, method: Method, **kwargs: Any) -> None:
        super().__init__(model, method, task="segmentation", **kwargs)


class ClassificationTask(SoftLabelTask):
    """Classification: Top-1/Top-5, ECE, classwise ECE, Brier, NLL, embedding compactness (``forward_features``).

    Same arguments as :class:`SoftLabelTask` without ``task`` and ``spatial_dims``.

    Example:
        >>> from softlabels.methods import create_method
        >>> task = ClassificationTask(torch.nn.Linear(4, 3), create_method("ls", 3), num_classes=3)
        >>> "compactness" in task.val_metrics.names  # the Linear has no forward_features
        False
    """

    def __init__(self, model: nn.Module, method: Method, **kwargs: Any) -> None:
        super().__init__(model, method, task="classification", **kwargs)


def _embedding(model: Any, features: Tensor) -> Tensor:
    """The pooled ``(N, F)`` embedding: ours are pooled already; timm's unpooled maps go through its pre-logits head."""
    if features.ndim == 2:
        return features
    if "pre_logits" in inspect.signature(model.forward_head).parameters:
        return model.forward_head(features, pre_logits=True).flatten(1)  # type: ignore[no-any-return]
    return features.flatten(2).mean(dim=2)
