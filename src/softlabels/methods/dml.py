"""The ``dml`` method (§3.4): soft-correct Dice (DML) + KL, 0.75 : 0.25, on the hard label or a soft ``source``.

:func:`source_target` names the targets ``dml`` can train on: the label, the rater mean, SVLS of the label or of
the rater mean, or the data's own soft label.

Reference: Wang, Popordanoska, Bertels, Lemmens, Blaschko, "Dice Semimetric Losses: Optimizing the Dice Score with
Soft Labels", MICCAI 2023.
"""

from __future__ import annotations

from typing import Any, Literal

from softlabels._options import look_up_option
from softlabels.losses import DiceCELoss
from softlabels.methods.base import SEGMENTATION, Method, Task
from softlabels.methods.raters import RaterTarget
from softlabels.methods.registry import register_method
from softlabels.methods.spatial import SVLSTarget
from softlabels.methods.targets import GivenSoftTarget, LabelTarget

__all__ = ["source_target"]


def source_target(source: str, num_classes: int, ignore_index: int | None = None) -> tuple[Any, tuple[str, ...]]:
    """The target adapter and the batch keys it reads, of a named soft-target source (``dml``'s ``source``).

    Raises:
        ValueError: an unknown ``source`` (the valid ones and the closest match are listed).

    Example:
        >>> build, requires = source_target("raters_mean", 3)
        >>> type(build).__name__, requires
        ('RaterTarget', ('raters',))
    """
    builders: dict[str, tuple[Any, tuple[str, ...]]] = {
        "label": (LabelTarget(num_classes, ignore_index), ("label",)),
        "raters_mean": (RaterTarget(num_classes, "mean"), ("raters",)),
        "raters_svls": (SVLSTarget(num_classes, 1.0, 3, None, source="raters"), ("raters",)),
        "svls": (SVLSTarget(num_classes, 1.0, 3, None), ("label",)),
        "soft_label": (GivenSoftTarget(num_classes), ("soft_label",)),
    }
    return builders[look_up_option("source", source, builders, where="method 'dml'")]


@register_method("dml", tasks=SEGMENTATION)
def _dml(
    num_classes: int,
    *,
    task: Task | None = None,
    source: Literal["label", "raters_mean", "raters_svls", "svls", "soft_label"] = "label",
    lambda_ce: float = 0.25,
    lambda_dice: float = 0.75,
    form: Literal["l1", "squared", "product"] = "l1",
    smooth: float = 1.0,
    include_background: bool = True,
    ignore_index: int | None = None,
) -> Method:
    """Soft-correct Dice (DML) + KL, 0.75 : 0.25, on the hard label or a soft target ``source`` (§3.4)."""
    build, requires = source_target(source, num_classes, ignore_index)
    loss = DiceCELoss(
        lambda_ce=lambda_ce, lambda_dice=lambda_dice, form=form, smooth=smooth,
        include_background=include_background, ignore_index=ignore_index, validate_args=False,
    )  # fmt: skip
    return Method("dml", loss, build, requires=requires)
