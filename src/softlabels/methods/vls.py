"""Variational label smoothing (CALSeg, ``vls``, §3.7): KL on the cached soft labels of a cVAE generator.

The method trains on ``batch["vls_soft_label"]`` (:data:`VLS_KEY`), which no data source has: its
:meth:`~VLSMethod.prepare_run` hook trains (or loads) the generator, caches one soft label per training case and
overlays the training split with them (:mod:`softlabels.methods.vls_stage1`), so one config runs both stages.

Reference: Guo et al., "CALSeg: calibration-aware segmentation via variational label smoothing", ICASSP 2024.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from softlabels.losses import DiceCELoss, KLDivLoss
from softlabels.losses._inputs import check_positive
from softlabels.methods.base import SEGMENTATION, Method, RunContext, TargetBuilder, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import GivenSoftTarget
from softlabels.targets.vls import _check_options

__all__ = ["VLS_KEY", "VLSMethod"]

VLS_KEY = "vls_soft_label"  # the batch key of the cached VLS soft labels (added by VLSMethod.prepare_run)


class VLSMethod(Method):
    """A method training on the soft labels of a generator that its :meth:`prepare_run` hook trains and caches.

    Args:
        name, loss, build_target, requires, tasks: as :class:`~softlabels.methods.base.Method`.
        generator: the stage-1 options (``method.options.generator``; see
            :data:`~softlabels.methods.vls_stage1.GENERATOR_DEFAULTS`).
        generator_checkpoint: a stage-1 checkpoint to use instead of training one.

    Example:
        >>> from softlabels.methods import create_method
        >>> method = create_method("vls", 2)
        >>> method.is_ready, method.missing_keys({"image", "label"}), method.missing_before_training()
        (False, [], None)
    """

    provides = (VLS_KEY,)

    def __init__(
        self,
        name: str,
        loss: nn.Module,
        build_target: TargetBuilder,
        *,
        requires: tuple[str, ...] = (VLS_KEY,),
        tasks: tuple[Task, ...] = SEGMENTATION,
        generator: Mapping[str, Any] | None = None,
        generator_checkpoint: str | None = None,
    ) -> None:
        super().__init__(name, loss, build_target, requires=requires, tasks=tasks)
        self.generator_options = dict(generator or {})
        self.generator_checkpoint = generator_checkpoint
        self.soft_labels: str | None = None

    def prepare(self, **resources: Any) -> None:
        """Mark the soft labels cached (``soft_labels=`` the cache folder) and the data overlaid with them.

        Raises:
            ValueError: other resources than ``soft_labels``.
        """
        if set(resources) != {"soft_labels"}:
            raise ValueError(f"method {self.name!r} takes soft_labels= only; got resources {sorted(resources)}.")
        self.soft_labels = str(resources["soft_labels"])
        self.params["soft_labels"] = self.soft_labels

    @property
    def is_ready(self) -> bool:
        """Whether the soft labels are cached and overlaid."""
        return self.soft_labels is not None

    def prepare_run(self, context: RunContext) -> None:
        """Stage 1 (or the given generator), the cached soft labels, the overlay of the training data."""
        from softlabels.methods.vls_stage1 import cache_soft_labels  # Lightning, imported when a run needs it

        folder = cache_soft_labels(
            context, self.params, key=VLS_KEY, generator=self.generator_options,
            generator_checkpoint=self.generator_checkpoint,
        )  # fmt: skip
        self.prepare(soft_labels=str(folder))

    def missing_before_training(self) -> str | None:
        """Nothing: :meth:`prepare_run` makes the soft labels."""
        return None


@register_method("vls", tasks=SEGMENTATION)
def _vls(
    num_classes: int,
    *,
    task: Task | None = None,
    m: int = 16,  # m, τ, α: the validation sweep's choice (benchmarks/results/vls_sweep.md); the paper gives none
    tau: float = 1.0,
    alpha: float = 0.3,
    lambda_dice: float = 0.0,
    condition_on_raters: bool = False,
    generator_checkpoint: str | None = None,
    generator: Mapping[str, Any] | None = None,
) -> Method:
    """Variational LS (CALSeg): KL on soft labels of a cVAE generator trained first (+ DML Dice if λ > 0, §3.7)."""
    _check_options(m, tau, alpha)
    check_positive("lambda_dice", lambda_dice, "method 'vls'")
    if generator_checkpoint is not None and not isinstance(generator_checkpoint, str | os.PathLike):
        kind = type(generator_checkpoint).__name__
        raise TypeError(f"`generator_checkpoint` of method 'vls' must be a path or None; got {kind}.")
    if generator is not None and not isinstance(generator, Mapping):
        kind = type(generator).__name__
        raise TypeError(f"`generator` of method 'vls' must be a dict of options or None; got {kind}.")
    loss: nn.Module = KLDivLoss(validate_args=False) if lambda_dice == 0 else DiceCELoss(
        lambda_ce=1.0, lambda_dice=lambda_dice, validate_args=False
    )  # fmt: skip
    method = VLSMethod(
        "vls", loss, GivenSoftTarget(num_classes, VLS_KEY), generator=generator,
        generator_checkpoint=None if generator_checkpoint is None else str(generator_checkpoint),
    )  # fmt: skip
    method.params = {
        "m": m, "tau": tau, "alpha": alpha, "lambda_dice": lambda_dice, "condition_on_raters": condition_on_raters,
        "generator_checkpoint": generator_checkpoint, "generator": dict(generator or {}),
    }  # fmt: skip
    return method
