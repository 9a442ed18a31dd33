"""What a run prints: Lightning's notices that are noise for a softlabels run, and the display callbacks, explicitly.

:func:`quiet_lightning` silences exactly these, each by its message (and category or logger), never a blanket filter:

* torch ≥ 2.13's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", raised inside Lightning's own
  ``lightning/pytorch/utilities/_pytree.py`` on every fit and validate. Only Lightning can act on it, and it was
  printed several times by every run.
* Lightning's ``PossibleUserWarning`` "The number of training batches (n) is smaller than the logging interval": the
  task logs the epoch's mean training loss (``train/loss_epoch``) every epoch whatever ``log_every_n_steps``, so the
  learning curve in ``metrics.csv`` is complete; the interval only thins the per-step rows, as asked.
* The "💡 Tip: ... litlogger / litmodels" lines: advertisements for a cloud service, not about the run.
* "TPU available: False, using: 0 TPU cores": nothing to act on without a TPU. The "GPU available: …, used: …" line
  stays (which device trains is information), and so does Lightning's warning that a GPU is available but unused.
* Lightning's note that a model-summary callback was given: :func:`display_callbacks` passes it on purpose.

Everything else stays: the model summary (what is trained, how many parameters), "`Trainer.fit` stopped: …" (why
training ended), the "does not have many workers" hint (actionable through ``data.num_workers`` for data read from
disk, such as user folders or LIDC) and any other warning.

:func:`display_callbacks` passes Lightning's ``TQDMProgressBar`` and ``ModelSummary`` explicitly, so an environment
with ``rich`` installed prints the same plain text (Lightning would switch to its Rich variants), and turns the bar on
only when stdout is a terminal unless the config says otherwise: a log written to a file holds no carriage-return
bar lines.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.fabric.utilities.warnings import PossibleUserWarning

_NOISE_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # (message regex, category, module regex of the code the warning is attributed to: "" any)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
    (r"The number of training batches \(\d+\) is smaller than the logging interval", PossibleUserWarning, ""),
)
_NOISE_LINES: tuple[str, ...] = (
    "💡 Tip:",
    "TPU available: False",
    "Trainer already configured with model summary callbacks",
)
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropNoise(logging.Filter):
    """Drop Lightning's info lines that start with one of :data:`_NOISE_LINES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_NOISE_LINES)


def quiet_lightning() -> None:
    """Silence the Lightning notices listed in the module docstring (idempotent; process-wide, like any filter).

    Example:
        >>> quiet_lightning()
        >>> with warnings.catch_warnings(record=True) as seen:
        ...     warnings.simplefilter("default")
        ...     quiet_lightning()
        ...     warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning,
        ...                            "_pytree.py", 21, module="lightning.pytorch.utilities._pytree")
        ...     warnings.warn("another FutureWarning", FutureWarning)
        >>> [str(w.message) for w in seen]
        ['another FutureWarning']
    """
    for message, category, module in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


def _stdout_is_terminal() -> bool:
    stream = sys.stdout
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


def display_callbacks(options: dict[str, Any], callbacks: Sequence[L.Callback]) -> list[L.Callback]:
    """The progress-bar and model-summary callbacks to add; resolves ``options["enable_progress_bar"]`` in place.

    ``enable_progress_bar`` ``None`` (or absent) means on only when stdout is a terminal (on, too, when ``callbacks``
    already hold a progress bar). A bar or summary already in ``callbacks`` is kept instead of a new one.

    Example:
        >>> options = {"enable_progress_bar": True}
        >>> [type(c).__name__ for c in display_callbacks(options, [])]
        ['TQDMProgressBar', 'ModelSummary']
        >>> options = {}
        >>> names = [type(c).__name__ for c in display_callbacks(options, [])]  # doctest output is not a terminal
        >>> names, options["enable_progress_bar"]
        (['ModelSummary'], False)
    """
    from lightning.pytorch.callbacks import ModelSummary, ProgressBar, TQDMProgressBar

    has_bar = any(isinstance(c, ProgressBar) for c in callbacks)
    if options.get("enable_progress_bar") is None:
        options["enable_progress_bar"] = has_bar or _stdout_is_terminal()
    extra: list[L.Callback] = []
    if options["enable_progress_bar"] and not has_bar:
        extra.append(TQDMProgressBar())
    if options.get("enable_model_summary", True) and not any(isinstance(c, ModelSummary) for c in callbacks):
        extra.append(ModelSummary())
    return extra
