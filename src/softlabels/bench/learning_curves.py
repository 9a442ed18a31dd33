"""Learning curves of the benchmark's runs: recorded every epoch, checked for convergence, drawn per suite.

Every benchmark run validates after each epoch, and :class:`CurveRecorder` keeps one row per epoch: the mean training
loss, the validation loss of the method (its own loss on the validation split; ``None`` for a method that builds its
target for training cases only, VLS), the validation NLL against the observed reference (the report's NLL: the rater
mean, the tissue maps or the label) and the task's headline metric (Dice or top-1). The rows travel in the
checkpoints, so a resumed run keeps its whole curve, and end in the run's ``result.json`` (``learning_curve``).

**The convergence rule** (:func:`check_convergence`) watches the validation NLL, the one loss that every method has
and that means the same for all of them, and asks whether it was still falling at the end: with ``n`` validated
epochs and a window ``w = max(2, ceil(n / 5))`` (the last fifth of training), the run is *not converged* when the mean
of the last ``w`` values is more than ``TOLERANCE`` (3 %) below the mean of the ``w`` before.

* A fifth of the run makes the rule independent of the run's length, and a relative drop of its scale.
* 3 %: the MNI152 suite as it was (20 epochs, validation NLL 0.33, on its way to 0.24 by epoch 40) fell 4.3 % over
  its last fifth, so 5 % would call it converged; a loss approaching its floor exponentially and falling 3 % per
  fifth is within about 1-2 % of that floor; and the noisiest end of a curve measured (synthetic classification
  after its step decay, 2.5 % from epoch to epoch, so 1.8 % for the difference of two windows of 4) stays below it.
* At least 2 epochs per window, so fewer than 4 validated epochs cannot show a plateau and are flagged.
* A rising curve (over-fitting, over-confidence of hard labels) is not "still falling" and passes. The rule says
  whether more epochs would still lower the loss, not whether the model is good: a run that never learned is for
  the metric tables to show.

docs/bench.md has the measured curves behind the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from softlabels.bench.figures import LEGEND, method_style

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Convergence",
    "CurveRecorder",
    "check_convergence",
    "convergence_flags",
    "curve_data",
    "plot_learning_curves",
]

TOLERANCE = 0.03  # the largest relative drop of the window mean that still counts as a plateau
WINDOW_FRACTION = 0.2  # the window: this fraction of the validated epochs
MIN_WINDOW = 2
MONITOR = "val_nll"  # the curve the rule watches
COLUMNS = ("epoch", "train_loss", "val_loss", "val_nll", "val_metric")


class CurveRecorder(L.Callback):
    """One row per training epoch: mean training loss and, when validation ran, validation loss, NLL and metric.

    The training loss is the batch-size-weighted mean of the ``loss`` the training step returned (accumulated here, so
    any LightningModule works); the validation values are what the module logged as ``val/loss``, ``val/nll`` and
    ``val/<metric>`` in the validation that ran at the end of that epoch (``None`` in an epoch without validation).
    The rows are saved in every checkpoint, so a resumed run keeps its curve.

    Args:
        metric: the logged validation metric to keep (``"dice"``, ``"top1"``).

    Example:
        >>> import tempfile
        >>> from softlabels.training.config import config_from_dict
        >>> from softlabels.training.run import train
        >>> tmp = tempfile.TemporaryDirectory()
        >>> config = config_from_dict({"task": "classification", "output_dir": tmp.name, "model": {"name": "small_cnn"},
        ...     "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}},
        ...     "trainer": {"max_epochs": 2, "enable_progress_bar": False}})
        >>> recorder = CurveRecorder("top1")
        >>> _ = train(config, callbacks=[recorder])
        >>> curve = recorder.curve()
        >>> curve["epoch"], curve["metric"], all(v > 0 for v in curve["train_loss"] + curve["val_nll"])
        ([1, 2], 'top1', True)
        >>> tmp.cleanup()
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.rows: list[dict[str, Any]] = []
        self._losses: list[tuple[Tensor, int]] = []
        self._validated = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the epoch's training-loss sums afresh."""
        self._losses, self._validated = [], False

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Keep the step's detached loss and batch size (summed once per epoch: no per-step synchronisation)."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, Tensor):
            image = batch.get("image") if isinstance(batch, Mapping) else None
            self._losses.append((loss.detach(), len(image) if isinstance(image, Tensor) else 1))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Mark that this epoch was validated (the sanity check does not count)."""
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Append the epoch's row (replacing a row of the same epoch left by an interrupted run)."""
        train_loss = None
        if self._losses:
            losses = torch.stack([v.double() for v, _ in self._losses])
            sizes = torch.tensor([n for _, n in self._losses], dtype=torch.float64)
            train_loss = float((losses * sizes).sum() / sizes.sum())
        logged = trainer.callback_metrics if self._validated else {}
        row = {"epoch": trainer.current_epoch + 1, "train_loss": train_loss}
        for column, key in (("val_loss", "val/loss"), ("val_nll", "val/nll"), ("val_metric", f"val/{self.metric}")):
            value = logged.get(key)
            row[column] = None if value is None else float(value)
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        self._losses = []

    def state_dict(self) -> dict[str, Any]:
        """The rows so far (saved in the checkpoint)."""
        return {"metric": self.metric, "rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the rows of a resumed run."""
        self.rows = [dict(r) for r in state_dict.get("rows", [])]

    def curve(self) -> dict[str, Any]:
        """The rows as columns: ``{"epoch": [...], "train_loss": [...], ..., "metric": name}``."""
        return {column: [r.get(column) for r in self.rows] for column in COLUMNS} | {"metric": self.metric}


@dataclass(frozen=True)
class Convergence:
    """The verdict of :func:`check_convergence` and the numbers behind it.

    Example:
        >>> check_convergence([1.0, 0.6, 0.5, 0.5, 0.5, 0.5]).converged
        True
    """

    converged: bool
    window: int
    previous: float
    last: float
    relative_drop: float
    reason: str


def check_convergence(values: Sequence[float | None], *, tolerance: float = TOLERANCE) -> Convergence:
    """Whether a validation loss was still falling over its last epochs (the rule of the module docstring).

    ``None`` entries (epochs without validation) are skipped. With ``n`` values and ``w = max(2, ceil(n / 5))``, the
    relative drop is ``(mean(previous w) - mean(last w)) / mean(previous w)``; the run converged when it is at most
    ``tolerance``. A non-finite value, or fewer than ``2w`` values, is not converged.

    Args:
        values: the loss per validated epoch, oldest first (a loss: ``>= 0``).
        tolerance: the largest relative drop that counts as a plateau (``>= 0``).

    Returns:
        A :class:`Convergence`: the verdict, ``w``, both window means, the relative drop and a one-line reason.

    Raises:
        ValueError: a negative ``tolerance`` or a negative value.

    Example:
        >>> check = check_convergence([0.9, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1, 0.09])
        >>> check.converged, check.window, round(check.previous, 3), round(check.last, 3), round(check.relative_drop, 3)
        (False, 2, 0.135, 0.095, 0.296)
        >>> check_convergence([0.9, 0.5, 0.3, 0.2, 0.2, 0.2, 0.21, 0.2]).converged
        True
        >>> check_convergence([0.9, 0.5]).reason
        'only 2 validated epoch(s); 4 needed to show a plateau'
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise ValueError(f"`tolerance` of check_convergence must be a number >= 0; got {tolerance!r}.")
    losses = [float(v) for v in values if v is not None]
    if any(v < 0 for v in losses):
        raise ValueError(f"`values` of check_convergence must be losses (>= 0); got {min(losses)!r}.")
    window = max(MIN_WINDOW, math.ceil(WINDOW_FRACTION * len(losses)))
    if not all(math.isfinite(v) for v in losses):
        return Convergence(False, window, math.nan, math.nan, math.nan, "the validation loss is not finite")
    if len(losses) < 2 * window:
        reason = f"only {len(losses)} validated epoch(s); {2 * window} needed to show a plateau"
        return Convergence(False, window, math.nan, math.nan, math.nan, reason)
    previous = sum(losses[-2 * window : -window]) / window
    last = sum(losses[-window:]) / window
    drop = (previous - last) / previous if previous > 0 else 0.0
    converged = drop <= tolerance
    verb = "fell" if drop > 0 else "did not fall"
    reason = (
        f"mean of the last {window} epochs {verb} {abs(drop):.1%} against the {window} before "
        f"({'within' if converged else 'above'} the {tolerance:.0%} tolerance)"
    )
    return Convergence(converged, window, previous, last, drop, reason)


def _runs(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(label, result) for label, runs in results.items() for result in runs]


def convergence_flags(
    results: Mapping[str, Sequence[Mapping[str, Any]]], *, tolerance: float = TOLERANCE
) -> list[dict[str, Any]]:
    """The convergence verdict of every run of a suite (method label → its ``result.json`` documents).

    A run without a recorded curve (an older result) is not converged, with that reason.

    Returns:
        One dict per run: ``method``, ``seed``, ``epochs`` (trained) and the fields of :class:`Convergence` (``None``
        for a number that could not be computed), ready for JSON.

    Example:
        >>> curve = {"epoch": [1, 2, 3, 4], "val_nll": [0.8, 0.5, 0.3, 0.2]}
        >>> flags = convergence_flags({"hard": [{"seed": 0, "learning_curve": curve}], "ls": [{"seed": 0}]})
        >>> [(f["method"], f["converged"]) for f in flags], flags[1]["reason"]
        ([('hard', False), ('ls', False)], 'no learning curve recorded')
    """
    out = []
    for label, result in _runs(results):
        curve = result.get("learning_curve") or {}
        if not curve.get(MONITOR):
            check = Convergence(False, 0, math.nan, math.nan, math.nan, "no learning curve recorded")
        else:
            check = check_convergence(curve[MONITOR], tolerance=tolerance)
        epochs = max(curve.get("epoch") or [0])
        numbers = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(check).items()}
        out.append({"method": label, "seed": result.get("seed"), "epochs": epochs, **numbers})
    return out


def curve_data(results: Mapping[str, Sequence[Mapping[str, Any]]], column: str = MONITOR) -> dict[str, dict[str, Any]]:
    """Plot data of one curve column per method: the mean over seeds per epoch, and the seeds' minimum and maximum.

    Epochs where a seed has no value (no validation) are left out for that seed; an epoch no seed validated is not
    shown. Methods without any recorded value are left out.

    Returns:
        method → ``{"epochs", "mean", "low", "high"}`` (NumPy arrays of one length).

    Example:
        >>> runs = [{"learning_curve": {"epoch": [1, 2], "val_nll": [0.6, 0.4]}},
        ...         {"learning_curve": {"epoch": [1, 2], "val_nll": [0.8, None]}}]
        >>> data = curve_data({"hard": runs})["hard"]
        >>> data["epochs"].tolist(), data["mean"].round(3).tolist(), data["high"].tolist()
        ([1, 2], [0.7, 0.4], [0.8, 0.4])
    """
    out = {}
    for label, runs in results.items():
        by_epoch: dict[int, list[float]] = {}
        for result in runs:
            curve = result.get("learning_curve") or {}
            for epoch, value in zip(curve.get("epoch") or [], curve.get(column) or [], strict=False):
                if value is not None and math.isfinite(value):
                    by_epoch.setdefault(int(epoch), []).append(float(value))
        if by_epoch:
            epochs = sorted(by_epoch)
            out[label] = {
                "epochs": np.array(epochs),
                "mean": np.array([np.mean(by_epoch[e]) for e in epochs]),
                "low": np.array([min(by_epoch[e]) for e in epochs]),
                "high": np.array([max(by_epoch[e]) for e in epochs]),
            }
    return out


def plot_learning_curves(
    panels: Mapping[str, Mapping[str, Mapping[str, Any]]], *, title: str, log_scale: Sequence[str] = ()
) -> Figure:
    """Draw one panel per curve (y label → :func:`curve_data` output): a line per method, the seeds' range shaded.

    Each method keeps its colour, line style and marker in every panel (``figures.method_style`` of its position
    among all the panels' methods); one legend below.

    Args:
        panels: y-axis label → method → ``{"epochs", "mean"}`` with optional ``"low"`` and ``"high"``.
        title: the figure title.
        log_scale: the y labels whose axis is logarithmic.

    Raises:
        ValueError: no panels, or a panel without methods.

    Example:
        >>> data = {"hard": {"epochs": [1, 2, 3], "mean": [0.9, 0.5, 0.4]}, "ls": {"epochs": [1, 2], "mean": [1, .7]}}
        >>> fig = plot_learning_curves({"validation NLL": data, "validation Dice": data}, title="curves")
        >>> [len(ax.get_lines()) for ax in fig.axes], fig.axes[0].get_ylabel(), fig.axes[1].get_xlabel()
        ([2, 2], 'validation NLL', 'epoch')
    """
    if not panels or any(not methods for methods in panels.values()):
        raise ValueError(f"`panels` of plot_learning_curves needs at least one method per panel; got {list(panels)}.")
    from matplotlib import ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(label for methods in panels.values() for label in methods))
    rows = math.ceil(len(labels) / 4)
    figure = Figure(figsize=(3.4 * len(panels) + 0.4, 3.0 + 0.2 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, methods) in zip(axes, panels.items(), strict=True):
        for label, data in methods.items():
            style = method_style(labels.index(label))
            epochs = np.asarray(data["epochs"], dtype=float)
            ax.plot(epochs, np.asarray(data["mean"], dtype=float), label=label, linewidth=1.2, markersize=2.5, **style)
            if "low" in data and "high" in data:
                ax.fill_between(epochs, data["low"], data["high"], color=style["color"], alpha=0.1, linewidth=0)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if ylabel in log_scale:
            ax.set_yscale("log")
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(ticker.FuncFormatter(lambda value, _: f"{value:.3g}"))  # 0.2, not 2×10⁻¹
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.tick_params(which="both", labelsize=7)
        ax.grid(True, linewidth=0.4, alpha=0.5)
    handles = {name: h for ax in axes for h, name in zip(*ax.get_legend_handles_labels(), strict=True)}
    figure.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(handles)), **LEGEND
    )
    figure.suptitle(title, fontsize=10)
    return figure
