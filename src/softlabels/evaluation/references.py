"""The one reference rule: what a batch's hard and soft reference are, for every metric, fit and report.

A metric is scored against one of three references (its ``reference`` in :mod:`softlabels.evaluation.spec`):

* ``"label"`` — the hard label map ``(N, *spatial)`` (classification: ``(N,)``) the batch carries as ``"label"``;
* ``"soft"`` — the **observed soft reference** ``(N, C, *spatial)``: the batch's ``"soft_label"`` when it has one,
  else the mean of the one-hot ``"raters"``; without either, the one-hot hard label;
* ``"soft_argmax"`` — the labels of the soft reference (argmax over classes, ties to the lowest class; a single
  channel: ``> 0.5``); without a soft reference, the hard label.

``"true_probs"`` — the unobservable p* of the synthetic data — is **never** a reference by default: it is scored
only as the *prediction* of the benchmark's floor (``oracle``) rows, never used to fit a temperature, never for a
model's reported metrics. A user who wants the metrics against p* names it: ``reference="true_probs"`` (the config's
``evaluation.reference: true_probs``). ``reference="label"`` scores everything against the hard label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from softlabels._ops import argmax
from softlabels._options import look_up_option

__all__ = [
    "REFERENCE_RULES",
    "RISK_REFERENCES",
    "References",
    "batch_references",
    "labels_of",
    "resolve_risk_reference",
    "risk_reference",
]

ReferenceRule = Literal["observed", "label", "true_probs"]  # the names of REFERENCE_RULES, for type hints
REFERENCE_RULES: tuple[str, ...] = ("observed", "label", "true_probs")
"""How a batch's soft reference is chosen: ``observed`` (default), ``label`` (none), ``true_probs`` (named p*).

Example:
    >>> REFERENCE_RULES[0]
    'observed'
"""


def labels_of(soft: Tensor) -> Tensor:
    """Labels ``(N, *spatial)`` of a soft map ``(N, C, *spatial)``: argmax (first maximum); one channel: ``> 0.5``.

    Example:
        >>> labels_of(torch.tensor([[[0.2, 0.6]], [[0.5, 0.5]]]).movedim(1, 2)).tolist()
        [[1], [0]]
        >>> labels_of(torch.tensor([[[0.7, 0.5]]])).tolist()
        [[1, 0]]
    """
    return argmax(soft, 1) if soft.shape[1] > 1 else (soft[:, 0] > 0.5).long()


@dataclass(frozen=True)
class References:
    """The references of a batch (see the module docstring).

    Attributes:
        hard: the label map ``(N, *spatial)`` (classification ``(N,)``), int64.
        soft: the soft reference ``(N, C, *spatial)``, or ``None`` when the batch has none.
        raters: the raters' label maps ``(N, R, *spatial)``, or ``None``.

    Example:
        >>> refs = References(torch.tensor([0, 1]), torch.tensor([[0.4, 0.6], [0.1, 0.9]]))
        >>> refs.soft_argmax.tolist(), refs.soft_or_hard.shape
        ([1, 1], torch.Size([2, 2]))
    """

    hard: Tensor
    soft: Tensor | None = None
    raters: Tensor | None = None

    @property
    def soft_or_hard(self) -> Tensor:
        """The ``"soft"`` reference: the soft map, else the hard label (metrics take either form)."""
        return self.soft if self.soft is not None else self.hard

    @property
    def soft_argmax(self) -> Tensor:
        """The ``"soft_argmax"`` reference: the labels of the soft map, else the hard label."""
        return labels_of(self.soft) if self.soft is not None else self.hard

    def case(self, index: int) -> References:
        """The references of case ``index`` alone (batch axis kept, size 1).

        Example:
            >>> References(torch.tensor([[0, 1], [1, 1]])).case(1).hard.tolist()
            [[1, 1]]
        """
        one = slice(index, index + 1)
        return References(
            self.hard[one],
            None if self.soft is None else self.soft[one],
            None if self.raters is None else self.raters[one],
        )

    def to(self, device: torch.device | str) -> References:
        """The references on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return References(self.hard.to(device), move(self.soft), move(self.raters))

    @classmethod
    def from_target(cls, target: Tensor) -> References:
        """References of a scoring case's target: a label map (hard) or a soft map (its labels are the argmax).

        Example:
            >>> References.from_target(torch.tensor([[[0.2, 0.9]]])).hard.tolist()
            [[0, 1]]
        """
        if target.is_floating_point():
            return cls(labels_of(target), target)
        return cls(target.long())


def batch_references(
    batch: Mapping[str, Any], num_classes: int, spatial_dims: int, *, reference: ReferenceRule = "observed"
) -> References:
    """The :class:`References` of a batch dict under the reference rule (module docstring).

    Args:
        batch: a batch with ``"label"`` (``(N, *spatial)`` or ``(N, 1, *spatial)``) and optionally ``"soft_label"``,
            ``"raters"`` (``(N, R, *spatial)``) and ``"true_probs"``. Without ``"label"`` (a folder with ``probs/``
            or ``raters/`` but no ``labels/``) the label is the argmax of the observed soft reference.
        num_classes: classes ``C``.
        spatial_dims: 2 or 3 (segmentation), 0 (classification).
        reference: ``"observed"`` (soft label, else rater mean), ``"label"`` (no soft reference) or
            ``"true_probs"`` (the synthetic p*, only when named).

    Example:
        >>> batch = {"label": torch.tensor([1, 0]), "raters": torch.tensor([[1, 1], [0, 1]]),
        ...     "true_probs": torch.tensor([[0.25, 0.75], [0.5, 0.5]])}
        >>> batch_references(batch, 2, 0).soft.tolist()
        [[0.0, 1.0], [0.5, 0.5]]
        >>> batch_references(batch, 2, 0, reference="true_probs").soft.tolist()
        [[0.25, 0.75], [0.5, 0.5]]
    """
    reference = look_up_option("reference", reference, REFERENCE_RULES, where="batch_references")  # type: ignore[assignment]
    raters = batch.get("raters")
    raters = raters.long() if isinstance(raters, Tensor) else None
    soft: Tensor | None = None
    if reference == "true_probs":
        value = batch.get("true_probs")
        if not isinstance(value, Tensor):
            raise ValueError("reference 'true_probs' was named, but the batch has no 'true_probs' (synthetic data).")
        soft = value.float()
    elif reference == "observed":
        value = batch.get("soft_label")
        if isinstance(value, Tensor):
            soft = value.float()
        elif raters is not None:
            soft = torch.nn.functional.one_hot(raters, num_classes).float().mean(1).movedim(-1, 1).contiguous()
    label = batch.get("label")
    if not isinstance(label, Tensor):  # a folder with probs/ or raters/ but no labels/: the soft reference's argmax
        observed = soft
        if observed is None and reference != "observed":
            observed = batch_references(batch, num_classes, spatial_dims).soft
        if observed is None:
            raise ValueError("the data has no reference: no 'label', 'soft_label' or 'raters' in its samples.")
        return References(labels_of(observed), soft, raters)
    if label.ndim == spatial_dims + 2 and label.shape[1] == 1:
        label = label[:, 0]
    hard = label.long()
    return References(hard, soft, raters)


RISK_REFERENCES: tuple[str, ...] = ("auto", "label", "each", "union", "majority", "soft")
"""What a structure's truth is for the risk of a thresholded mask (:mod:`softlabels.conformal`, docs/conformal.md).

* ``"label"`` — the hard label map;
* ``"each"`` — every rater's own mask: a case's loss is the mean of its loss against each rater (the expected loss
  against a rater drawn at random);
* ``"union"`` — the voxels any rater marks (the strictest FNR);
* ``"majority"`` — the voxels more than half of the raters mark (a soft reference: its value > 0.5);
* ``"soft"`` — the soft reference as weights: a voxel marked by 2 of 3 raters is 2/3 of a positive (FNR: the
  expected fraction of the reference's mass that the mask misses);
* ``"auto"`` — ``each`` when the raters' maps are there, else ``soft`` when there is a soft reference, else ``label``.

Example:
    >>> RISK_REFERENCES[0]
    'auto'
"""


def _one_hot(labels: Tensor, num_classes: int, axis: int) -> Tensor:
    return torch.nn.functional.one_hot(labels.long(), max(num_classes, 2)).movedim(-1, axis).float()


def _soft_weights(refs: References, rule: str, num_classes: int) -> Tensor:
    """``(N, C, *spatial)`` weights of the soft reference (rater mean): itself, its union or its strict majority."""
    if refs.soft is not None:
        soft = refs.soft.float()
    elif refs.raters is not None:
        soft = _one_hot(refs.raters, num_classes, -1).mean(1).movedim(-1, 1)
    else:
        raise ValueError(f"risk reference {rule!r} needs raters or a soft reference; the data has only labels.")
    if rule == "union":
        return (soft > 0).float()
    return (soft > 0.5).float() if rule == "majority" else soft


def resolve_risk_reference(refs: References, rule: str = "auto") -> str:
    """The rule :func:`risk_reference` applies: ``rule`` itself, or what ``"auto"`` means for these references.

    Example:
        >>> resolve_risk_reference(References(torch.tensor([0, 1]))), resolve_risk_reference(References(
        ...     torch.tensor([0, 1]), raters=torch.tensor([[0, 1], [1, 1]])), "union")
        ('label', 'union')
    """
    rule = look_up_option("reference", rule, RISK_REFERENCES, where="risk_reference")
    if rule == "auto":
        return "each" if refs.raters is not None else ("soft" if refs.soft is not None else "label")
    return rule


def risk_reference(refs: References, num_classes: int, rule: str = "auto") -> Tensor:
    """The truth weights of a batch for conformal risk control under ``rule`` (:data:`RISK_REFERENCES`).

    Args:
        refs: the batch's references (segmentation).
        num_classes: channels ``C`` of the predictions; ``1`` (a binary foreground probability) gives the
            foreground's weights in that one channel.
        rule: one of :data:`RISK_REFERENCES`.

    Returns:
        ``(N, C, *spatial)`` weights in [0, 1], or ``(N, R, C, *spatial)`` for ``"each"`` (one mask per rater).

    Raises:
        ValueError: an unknown rule, or a rule the data cannot give (``each`` without raters, ``union`` /
            ``majority`` / ``soft`` with labels only).

    Example:
        >>> refs = References(torch.tensor([[0, 1, 1]]), raters=torch.tensor([[[0, 1, 1], [0, 0, 1], [1, 0, 1]]]))
        >>> risk_reference(refs, 2, "majority")[0, 1].tolist(), risk_reference(refs, 2).shape
        ([0.0, 0.0, 1.0], torch.Size([1, 3, 2, 3]))
    """
    rule = resolve_risk_reference(refs, rule)
    if rule == "label":
        weights = _one_hot(refs.hard, num_classes, 1)
    elif rule == "each":
        if refs.raters is None:
            raise ValueError("risk reference 'each' needs the raters' maps; the data has none (use 'soft' or 'label').")
        weights = _one_hot(refs.raters, num_classes, 2)
        return weights[:, :, 1:2] if num_classes == 1 else weights
    else:
        weights = _soft_weights(refs, rule, num_classes)
    if num_classes == 1 and weights.shape[1] != 1:
        weights = weights[:, 1:2]
    return weights
