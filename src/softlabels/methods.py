"""The method registry: a name → target construction + loss + epoch hooks, with the defaults of the methods spec.

A :class:`Method` is what a training loop needs to train "with method X": :meth:`Method.make_target` turns a batch
(a dict, as MONAI's dictionary transforms and DataLoader collate it) into a :class:`TrainingTarget`, calling the
method gives the loss, and :meth:`Method.on_train_batch_end` / :meth:`Method.on_train_epoch_end` run the epoch hooks
(OLS). Two methods differ only in their registry entry, never in a training loop.

Batch keys (2D and 3D alike; ``N`` samples):

- ``"label"``: hard labels ``(N, *spatial)`` integer (``(N, 1, *spatial)`` as MONAI collates it, when ``"image"`` has
  the same number of axes); ``(N,)`` for classification;
- ``"raters"``: one hard map per rater stacked on axis 1, ``(N, R, *spatial)`` (``(N, R)`` for classification);
- ``"confidence"``: annotator confidence in ``[0, 1]``, ``(N, *spatial)`` (or ``(N, 1, *spatial)``);
- ``"soft_label"``: a given soft target ``(N, C, *spatial)`` (e.g. tissue probability maps);
- ``"image"``: the network input ``(N, C_in, *spatial)`` (needed by methods that run a teacher network).

Every entry's keyword defaults are the spec's defaults (``../shared/methods.md``); :func:`create_method` overrides
them by name and rejects unknown names and parameters with the valid ones listed.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from softlabels import _method_targets as targets
from softlabels._errors import is_user_error
from softlabels._method_targets import TrainingTarget
from softlabels._options import look_up_option
from softlabels.losses import (
    FLSD53_BANDS,
    DiceCELoss,
    DistillationLoss,
    FocalLoss,
    KLDivLoss,
    MarginLoss,
    NACLLoss,
    OnlineLabelSmoothingLoss,
    SoftCrossEntropyLoss,
    VirtualTeacherLoss,
)
from softlabels.losses._inputs import check_positive
from softlabels.targets.smoothing import _check_fraction, _check_num_classes

__all__ = ["Method", "TrainingTarget", "create_method", "list_methods", "method_defaults", "register_method"]

Task = Literal["classification", "segmentation"]
TargetBuilder = Callable[[Mapping[str, Any]], TrainingTarget]
BOTH: tuple[Task, ...] = ("classification", "segmentation")
SEGMENTATION: tuple[Task, ...] = ("segmentation",)
RATERS = ("raters",)
CONFIDENCE = ("label", "confidence")


class Method(nn.Module):
    """A training recipe: target construction, loss, epoch hooks, and the resolved parameters.

    Calling the method with ``(logits, training_target)`` returns the loss. The loss is a submodule, so any state it
    holds (the OLS soft-label matrix) is part of ``state_dict`` of a module that holds the method.

    Args:
        name: the registry name.
        loss: the loss module; called as ``loss(logits, target, weight=..., keep_mask=...)`` (plus ``teacher=``
            when the target carries one).
        build_target: ``batch → TrainingTarget``.
        params: the resolved parameters (for provenance and config hashes).
        requires: the batch keys the target construction reads.
        tasks: the tasks the method is defined for.
        preparation: ``(method, **resources) → None`` for methods that need something trained first (a teacher, a
            generator), or ``None``; the training loop calls :meth:`prepare` when :attr:`is_ready` is false.

    Example:
        >>> method = create_method("svls", num_classes=2)
        >>> target = method.make_target({"label": torch.tensor([[[0, 0, 1, 1]]])})
        >>> target.target[0, 1].round(decimals=4)
        tensor([[0.0000, 0.1722, 0.8278, 1.0000]])
        >>> round(float(method(torch.zeros(1, 2, 1, 4), target)), 4)  # log 2: uniform predictions
        0.6931
    """

    def __init__(
        self,
        name: str,
        loss: nn.Module,
        build_target: TargetBuilder,
        *,
        params: Mapping[str, Any] | None = None,
        requires: tuple[str, ...] = ("label",),
        tasks: tuple[Task, ...] = BOTH,
        preparation: Callable[..., None] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.loss = loss
        self.build_target = build_target
        self.params = dict(params or {})
        self.requires = requires
        self.tasks = tasks
        self.preparation = preparation
        self.num_classes: int | None = None  # set by create_method
        self.description = ""  # the registry entry's one-line summary, set by create_method
        self._prepared = preparation is None

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

    def prepare(self, **resources: Any) -> None:
        """Give the method what it needs before training, e.g. ``teacher=`` for ``tfkd_self``."""
        if self.preparation is None:
            raise ValueError(f"method {self.name!r} needs no preparation; got resources {sorted(resources)}.")
        self.preparation(self, **resources)
        self._prepared = True

    @property
    def is_ready(self) -> bool:
        """Whether the method can train: it needs no preparation, or :meth:`prepare` has run."""
        return self._prepared

    def extra_repr(self) -> str:
        """Show the name and parameters in ``repr``."""
        return f"name={self.name!r}, params={self.params!r}"


_REGISTRY: dict[str, tuple[Callable[..., Method], tuple[Task, ...], str]] = {}


def register_method(name: str, *, tasks: tuple[Task, ...] = BOTH) -> Callable[[Callable[..., Method]], Callable]:
    """Register a factory ``(num_classes, *, task, **params) → Method`` under ``name``; its defaults are the method's.

    Example:
        >>> "svls" in list_methods()
        True
    """

    def decorator(factory: Callable[..., Method]) -> Callable[..., Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered.")
        summary = (inspect.getdoc(factory) or "").splitlines()[0]
        _REGISTRY[name] = (factory, tasks, summary)
        return factory

    return decorator


def list_methods(task: Task | None = None) -> list[str]:
    """The registered method names (for ``task``, if given), sorted.

    Example:
        >>> {"hard", "ls", "ols", "tfkd", "svls", "dml"} <= set(list_methods())
        True
        >>> "nacl" in list_methods("classification")
        False
    """
    if task is not None:
        look_up_option("task", task, BOTH, where="list_methods")
    return sorted(n for n, (_, tasks, _) in _REGISTRY.items() if task is None or task in tasks)


def method_defaults(name: str) -> dict[str, Any]:
    """The default parameters of method ``name`` (what :func:`create_method` uses when not overridden).

    Example:
        >>> method_defaults("svls")
        {'sigma': 1.0, 'kernel_size': 3, 'spacing': None}
    """
    factory = _REGISTRY[look_up_option("name", name, _REGISTRY, where="method_defaults")][0]
    params = list(inspect.signature(factory).parameters.values())[1:]
    return {p.name: p.default for p in params if p.name != "task"}


def create_method(name: str, num_classes: int, *, task: Task | None = None, **overrides: Any) -> Method:
    """Build the registered method ``name`` for ``num_classes`` classes, overriding its defaults by keyword.

    Every argument is checked here, when the method is built, not at its first batch: ``num_classes`` must be an
    int ``>= 2`` (every loss takes logits with ``C >= 2``, segmentation and classification alike), and the target
    construction and the loss are built eagerly, so each option goes through the checks of the function that uses
    it. A bad value raises a one-line ``ValueError`` (``TypeError`` for a wrong type) naming the parameter and the
    method.

    Args:
        name: a name of :func:`list_methods`.
        num_classes: number of classes ``C >= 2``.
        task: ``"classification"`` or ``"segmentation"``, to check the method applies and pick task-specific
            defaults (the MbLS margin); ``None`` for the task-independent defaults.
        **overrides: parameters of the method (see :func:`method_defaults`).

    Returns:
        A :class:`Method`.

    Raises:
        TypeError: ``num_classes`` or an option of the wrong type.
        ValueError: unknown name (the valid ones and the closest match are listed), unknown parameter, a method
            that is not defined for ``task``, or a bad value of ``num_classes`` or of an option.

    Example:
        >>> create_method("flsd", num_classes=4).loss
        FocalLoss(gamma=3.0, gamma_bands=((0.2, 5.0), (0.5, 3.0)), reduction='mean', ignore_index=None)
    """
    name = look_up_option("name", name, _REGISTRY, where="create_method")
    factory, tasks, summary = _REGISTRY[name]
    if task is not None:
        look_up_option("task", task, BOTH, where="create_method")
        if task not in tasks:
            raise ValueError(f"method {name!r} of create_method is defined for {list(tasks)}; got task={task!r}.")
    valid = method_defaults(name)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} of method {name!r} in create_method; valid: {sorted(valid) or 'none'}."
        )
    where = f"method {name!r}"
    _check_num_classes(num_classes, where, 2)
    for key, value in overrides.items():
        if isinstance(valid[key], bool) and not isinstance(value, bool):
            raise TypeError(f"`{key}` of {where} must be a bool; got {type(value).__name__} {value!r}.")
    try:
        method = factory(num_classes, task=task, **overrides)
    except (TypeError, ValueError) as error:
        if not is_user_error(error):
            raise  # a bug, not a bad option: it keeps its traceback
        raise _naming_the_method(error, where) from error
    method.name, method.tasks, method.num_classes, method.description = name, tasks, num_classes, summary
    resolved = {**valid, **overrides, **method.params}  # a factory may record values it resolved itself
    method.params = {key: _describe(value) for key, value in resolved.items()}
    return method


def _naming_the_method(error: TypeError | ValueError, where: str) -> TypeError | ValueError:
    """The error of a check inside a factory, its message prefixed by the method unless it names it already."""
    kind = ValueError if isinstance(error, ValueError) else TypeError
    return error if where in str(error) else kind(f"{where} of create_method: {error}")


def _describe(value: Any) -> Any:
    """A parameter as plain data for provenance: modules and other objects by their type name."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return [_describe(v) for v in value]
    return f"<{type(value).__name__}>"


# --- classification and segmentation -------------------------------------------------------------------------------


@register_method("hard")
def _hard(num_classes: int, *, task: Task | None = None, ignore_index: int | None = None) -> Method:
    """Cross-entropy on the hard label (the baseline)."""
    loss = SoftCrossEntropyLoss(ignore_index=ignore_index, validate_args=False)
    return Method("hard", loss, targets.LabelTarget(num_classes, ignore_index))


@register_method("ls")
def _ls(
    num_classes: int,
    *,
    task: Task | None = None,
    epsilon: float = 0.1,
    convention: Literal["uniform", "others"] = "uniform",
    ignore_index: int | None = None,
) -> Method:
    """Label smoothing: ``(1 − ε)·onehot + ε/C`` (or the ``ε/(C − 1)`` form) at every item or voxel (§1.2)."""
    convention = look_up_option("convention", convention, ("uniform", "others"), where="method 'ls'")  # type: ignore[assignment]
    epsilon = _check_fraction("epsilon", epsilon, "method 'ls'")
    # both forms are PyTorch's fused label smoothing: the "others" ε equals a uniform ε·C/(C − 1)
    uniform = epsilon if convention == "uniform" else epsilon * num_classes / max(num_classes - 1, 1)
    if isinstance(uniform, float | int) and 0 <= uniform <= 1:
        loss = SoftCrossEntropyLoss(label_smoothing=uniform, ignore_index=ignore_index, validate_args=False)
        return Method("ls", loss, targets.LabelTarget(num_classes, ignore_index))
    build = targets.SmoothedTarget(num_classes, epsilon=epsilon, convention=convention, ignore_index=ignore_index)
    return Method("ls", SoftCrossEntropyLoss(validate_args=False), build)


@register_method("ols")
def _ols(
    num_classes: int,
    *,
    task: Task | None = None,
    alpha: float = 0.5,
    init: Literal["uniform", "zeros"] = "uniform",
    empty_class_policy: Literal["uniform", "keep"] = "uniform",
    freeze_at: float | None = None,
    ignore_index: int | None = None,
) -> Method:
    """Online label smoothing: class-wise soft labels from the previous epoch's correct predictions (§2.1)."""
    loss = OnlineLabelSmoothingLoss(
        num_classes, alpha, init=init, empty_class_policy=empty_class_policy, freeze_at=freeze_at,
        ignore_index=ignore_index, validate_args=False,
    )  # fmt: skip
    return Method("ols", loss, targets.LabelTarget(num_classes, ignore_index))


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
    return Method("tfkd", loss, targets.LabelTarget(num_classes, ignore_index))


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
    build = targets.SelfTeacherTarget(num_classes, temperature=temperature)
    method = Method("tfkd_self", loss, build, requires=("label", "image"), preparation=targets.set_teacher)
    if teacher is not None:
        method.prepare(teacher=teacher)
    return method


@register_method("focal")
def _focal(
    num_classes: int, *, task: Task | None = None, gamma: float = 3.0, ignore_index: int | None = None
) -> Method:
    """Focal loss with a fixed ``γ`` (FL-3, Mukhoti et al. 2020)."""
    loss = FocalLoss(gamma, ignore_index=ignore_index, validate_args=False)
    return Method("focal", loss, targets.LabelTarget(num_classes, ignore_index))


@register_method("flsd")
def _flsd(
    num_classes: int,
    *,
    task: Task | None = None,
    gamma: float = 3.0,
    gamma_bands: tuple[tuple[float, float], ...] = FLSD53_BANDS,
    ignore_index: int | None = None,
) -> Method:
    """Focal loss with the sample-dependent ``γ`` of FLSD-53 (5 below p = 0.2, else 3)."""
    loss = FocalLoss(gamma, gamma_bands=gamma_bands, ignore_index=ignore_index, validate_args=False)
    return Method("flsd", loss, targets.LabelTarget(num_classes, ignore_index))


@register_method("mbls")
def _mbls(
    num_classes: int,
    *,
    task: Task | None = None,
    margin: float | None = None,
    lambda_margin: float = 0.1,
    ignore_index: int | None = None,
) -> Method:
    """Margin-based label smoothing: CE + λ·hinge on logit distances (m = 10 classification, 5 segmentation)."""
    if margin is None:
        margin = 5.0 if task == "segmentation" else 10.0
    loss = MarginLoss(margin, lambda_margin, ignore_index=ignore_index, validate_args=False)
    return Method("mbls", loss, targets.LabelTarget(num_classes, ignore_index), params={"margin": margin})


@register_method("raters_mean")
def _raters_mean(num_classes: int, *, task: Task | None = None) -> Method:
    """Soft target = the fraction of raters choosing each class (multi-rater soft labels, §3.5)."""
    build = targets.RaterTarget(num_classes, "mean")
    return Method("raters_mean", SoftCrossEntropyLoss(validate_args=False), build, requires=RATERS)


@register_method("raters_weighted")
def _raters_weighted(num_classes: int, *, task: Task | None = None, reference_quirk: bool = False) -> Method:
    """Rater mean weighted by each rater's Dice against the majority vote (JDTLosses "MR" labels, §3.5)."""
    build = targets.RaterTarget(num_classes, "weighted", reference_quirk=reference_quirk)
    return Method("raters_weighted", SoftCrossEntropyLoss(validate_args=False), build, requires=RATERS)


@register_method("raters_majority")
def _raters_majority(num_classes: int, *, task: Task | None = None) -> Method:
    """Hard majority vote of the raters (``≥ ⌊R/2⌋ + 1`` votes, else background), trained with CE."""
    build = targets.RaterTarget(num_classes, "majority")
    return Method("raters_majority", SoftCrossEntropyLoss(validate_args=False), build, requires=RATERS)


# --- segmentation only ----------------------------------------------------------------------------------------------


@register_method("boundary_ls", tasks=SEGMENTATION)
def _boundary_ls(
    num_classes: int, *, task: Task | None = None, epsilon: float = 0.5, width: int = 1, ignore_index: int | None = None
) -> Method:
    """Label smoothing on class boundaries only (JDTLosses: ε = 0.5, 3×3 window, §1.2)."""
    build = targets.BoundarySmoothedTarget(num_classes, epsilon=epsilon, width=width, ignore_index=ignore_index)
    return Method("boundary_ls", SoftCrossEntropyLoss(validate_args=False), build)


@register_method("svls", tasks=SEGMENTATION)
def _svls(
    num_classes: int, *, task: Task | None = None, sigma: float = 1.0, kernel_size: int = 3, spacing: Any = None
) -> Method:
    """Spatially varying label smoothing of the hard label map (centre 0.5, Gaussian neighbours, §3.1)."""
    build = targets.SVLSTarget(num_classes, sigma=sigma, kernel_size=kernel_size, spacing=spacing)
    return Method("svls", SoftCrossEntropyLoss(validate_args=False), build)


@register_method("raters_svls", tasks=SEGMENTATION)
def _raters_svls(
    num_classes: int, *, task: Task | None = None, sigma: float = 1.0, kernel_size: int = 3, spacing: Any = None
) -> Method:
    """Multi-rater SVLS: SVLS of the rater mean (= mean of the per-rater SVLS maps, §3.1)."""
    build = targets.SVLSTarget(num_classes, sigma=sigma, kernel_size=kernel_size, spacing=spacing, source="raters")
    return Method("raters_svls", SoftCrossEntropyLoss(validate_args=False), build, requires=RATERS)


@register_method("soft_label", tasks=SEGMENTATION)
def _soft_label(num_classes: int, *, task: Task | None = None) -> Method:
    """Soft CE on a soft target given with the data (``batch["soft_label"]``, e.g. tissue probability maps)."""
    loss = SoftCrossEntropyLoss(validate_args=False)
    return Method("soft_label", loss, targets.GivenSoftTarget(num_classes), requires=("soft_label",))


@register_method("confidence_threshold", tasks=SEGMENTATION)
def _confidence_threshold(
    num_classes: int,
    *,
    task: Task | None = None,
    tau: float = 0.6,
    below: Literal["background", "ignore"] = "background",
    ignore_index: int = 255,
) -> Method:
    """Hard labels kept where the annotator confidence is ``≥ τ`` (τ = 0.6 worked best, §3.6)."""
    build = targets.ConfidenceTarget(num_classes, "threshold", tau=tau, below=below, ignore_index=ignore_index)
    loss = SoftCrossEntropyLoss(ignore_index=ignore_index if below == "ignore" else None, validate_args=False)
    return Method("confidence_threshold", loss, build, requires=CONFIDENCE)


@register_method("confidence_soft", tasks=SEGMENTATION)
def _confidence_soft(num_classes: int, *, task: Task | None = None) -> Method:
    """Soft target: the confidence on the labelled class, the rest on background (§3.6)."""
    build = targets.ConfidenceTarget(num_classes, "soft")
    return Method("confidence_soft", SoftCrossEntropyLoss(validate_args=False), build, requires=CONFIDENCE)


@register_method("confidence_weighted", tasks=SEGMENTATION)
def _confidence_weighted(num_classes: int, *, task: Task | None = None) -> Method:
    """Hard label with the annotator confidence as voxel weight: ``Σ conf·CE / Σ conf`` (§3.6)."""
    build = targets.ConfidenceTarget(num_classes, "weighted")
    return Method("confidence_weighted", SoftCrossEntropyLoss(validate_args=False), build, requires=CONFIDENCE)


@register_method("nacl", tasks=SEGMENTATION)
def _nacl(
    num_classes: int,
    *,
    task: Task | None = None,
    lambda_nacl: float = 0.1,
    kernel_size: int = 3,
    kernel: Literal["mean", "gaussian", "gaussian_monai"] = "mean",
    sigma: float = 1.0,
    distance: Literal["l1", "l2"] = "l1",
    padding: Literal["background", "zeros", "replicate"] | None = None,
    ignore_index: int | None = None,
) -> Method:
    """NACL: CE + λ·|local class proportions − logits| (λ = 0.1, 3-window mean, §3.2)."""
    loss = NACLLoss(
        lambda_nacl, kernel_size, kernel=kernel, sigma=sigma, distance=distance, padding=padding,
        ignore_index=ignore_index, validate_args=False,
    )  # fmt: skip
    build = targets.LabelTarget(num_classes, ignore_index)
    return Method("nacl", loss, build, params={"padding": loss.window["padding"]})  # None → the kernel's own


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
    build, requires = targets.source_target(source, num_classes, ignore_index)
    loss = DiceCELoss(
        lambda_ce=lambda_ce, lambda_dice=lambda_dice, form=form, smooth=smooth,
        include_background=include_background, ignore_index=ignore_index, validate_args=False,
    )  # fmt: skip
    return Method("dml", loss, build, requires=requires)


VLS_KEY = "vls_soft_label"  # the batch key of the cached VLS soft labels (set by softlabels.training.vls)


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
    from softlabels.targets.vls import _check_options

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
    method = Method(
        "vls", loss, targets.GivenSoftTarget(num_classes, VLS_KEY), requires=(VLS_KEY,),
        preparation=_vls_ready,
    )  # fmt: skip
    method.params = {
        "m": m, "tau": tau, "alpha": alpha, "lambda_dice": lambda_dice, "condition_on_raters": condition_on_raters,
        "generator_checkpoint": generator_checkpoint, "generator": dict(generator or {}),
    }  # fmt: skip
    return method


def _vls_ready(method: Method, *, soft_labels: str) -> None:
    """The cached soft labels exist (``softlabels.training.vls.prepare_vls`` made them and overlaid the data)."""
    method.params["soft_labels"] = soft_labels
