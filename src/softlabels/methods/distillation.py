"""Teacher-free knowledge distillation (Tf-KD, §2.2): ``tfkd`` (virtual teacher) and ``tfkd_self`` (a trained copy).

``tfkd_self`` distils from a trained network: :class:`SelfDistillationMethod` takes it through
``prepare(teacher=...)`` or, in a configured run, loads it in its :meth:`~SelfDistillationMethod.setup_run` hook from
``method.teacher_checkpoint`` (a checkpoint of ``softlabels train`` of the same architecture); without one the run
is refused before anything is written.

Reference: Yuan, Tay, Li, Wang, Feng, "Revisiting Knowledge Distillation via Label Smoothing Regularization",
CVPR 2020.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from softlabels.losses import DistillationLoss, VirtualTeacherLoss
from softlabels.methods.base import Method, RunContext, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import LabelTarget, TrainingTarget, _tensor, hard_labels
from softlabels.targets.label_checks import _check_num_classes
from softlabels.targets.tfkd import _check_temperature, self_teacher

__all__ = ["SelfDistillationMethod", "SelfTeacherTarget"]


@dataclass
class SelfTeacherTarget:
    """The hard label with a trained teacher's softened outputs on ``batch["image"]`` (Tf-KD_self).

    Example:
        >>> build = SelfTeacherTarget(2, temperature=1.0, teacher=torch.nn.Linear(1, 2))
        >>> target = build({"label": torch.tensor([0, 1]), "image": torch.zeros(2, 1)})
        >>> target.target.tolist(), target.teacher.sum(1).tolist()
        ([0, 1], [1.0, 1.0])
    """

    num_classes: int
    temperature: float
    teacher: nn.Module | None = None

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes, "self_teacher", 2)
        _check_temperature(self.temperature, "self_teacher")

    def __call__(self, batch: Mapping[str, Any]) -> TrainingTarget:
        """The hard label, and the teacher's ``softmax(z / T)`` on ``batch["image"]``."""
        if self.teacher is None:
            raise ValueError(
                "method 'tfkd_self' needs a trained teacher network: pass teacher= to create_method or call "
                "method.prepare(teacher=...)."
            )
        image = _tensor(batch, "image")
        self.teacher.to(image.device).eval()
        with torch.no_grad():
            logits = self.teacher(image)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the teacher of 'tfkd_self' gives {logits.shape[1]} classes; expected {self.num_classes}."
            )
        return TrainingTarget(hard_labels(batch), teacher=self_teacher(logits, temperature=self.temperature))


class SelfDistillationMethod(Method):
    """A method that distils from a trained, frozen teacher network held by its :class:`SelfTeacherTarget`.

    The teacher is not a submodule (it is neither trained nor saved with the student). It comes from
    ``prepare(teacher=...)`` or, in a configured run, from ``method.teacher_checkpoint`` (:meth:`setup_run`).

    Example:
        >>> from softlabels.methods import create_method
        >>> method = create_method("tfkd_self", 3)
        >>> method.is_ready, method.missing_before_training()[:26]
        (False, 'needs a trained teacher: s')
        >>> method.prepare(teacher=torch.nn.Linear(1, 3))
        >>> method.is_ready, method.missing_before_training(), list(method.parameters())
        (True, None, [])
    """

    build_target: SelfTeacherTarget

    def prepare(self, **resources: Any) -> None:
        """Attach the trained teacher (``teacher=``, an ``nn.Module``), frozen.

        Raises:
            ValueError: other resources than ``teacher``.
            TypeError: the teacher is not an ``nn.Module``.
        """
        if set(resources) != {"teacher"}:
            raise ValueError(f"method {self.name!r} takes teacher= only; got resources {sorted(resources)}.")
        teacher = resources["teacher"]
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"`teacher` of method {self.name!r} must be an nn.Module; got {type(teacher).__name__}.")
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        self.build_target.teacher = teacher

    @property
    def is_ready(self) -> bool:
        """Whether the teacher is there."""
        return self.build_target.teacher is not None

    def setup_run(self, context: RunContext) -> None:
        """Load the teacher named by ``method.teacher_checkpoint``: the run's architecture with its weights."""
        if context.teacher_checkpoint:
            path = str(context.teacher_checkpoint)
            self.prepare(teacher=context.load_network(path, "method.teacher_checkpoint"))

    def missing_before_training(self) -> str | None:
        """Without a teacher: what to set in the config."""
        if self.is_ready:
            return None
        return "needs a trained teacher: set `method.teacher_checkpoint` to a checkpoint of `softlabels train`."


@register_method("tfkd")
def _tfkd(
    num_classes: int,
    *,
    task: Task | None = None,
    alpha: float = 0.95,
    temperature: float = 40.0,
    correct_probability: float = 0.99,
    multiplier: float = 1.0,
    kl_reduction: Literal["batchmean", "mean"] = "mean",
    ignore_index: int | None = None,
) -> Method:
    """Teacher-free KD, regularisation variant: KL to the virtual teacher ``softmax(p_d / T)`` (§2.2)."""
    loss = VirtualTeacherLoss(
        num_classes, alpha, temperature=temperature, correct_probability=correct_probability, multiplier=multiplier,
        kl_reduction=kl_reduction, ignore_index=ignore_index, validate_args=False,
    )  # fmt: skip
    return Method("tfkd", loss, LabelTarget(num_classes, ignore_index))


@register_method("tfkd_self")
def _tfkd_self(
    num_classes: int,
    *,
    task: Task | None = None,
    alpha: float = 0.95,
    temperature: float = 6.0,
    multiplier: float = 1.0,
    kl_reduction: Literal["batchmean", "mean"] = "mean",
    teacher: nn.Module | None = None,
) -> Method:
    """Teacher-free KD, self-training variant: KL to a trained copy's outputs at temperature ``T`` (§2.2)."""
    loss = DistillationLoss(
        alpha, temperature=temperature, multiplier=multiplier, kl_reduction=kl_reduction, validate_args=False
    )
    build = SelfTeacherTarget(num_classes, temperature=temperature)
    method = SelfDistillationMethod("tfkd_self", loss, build, requires=("label", "image"))
    if teacher is not None:
        method.prepare(teacher=teacher)
    return method
