"""Streaming classification metrics (torchmetrics twins of :mod:`softlabels.metrics.functional.classification`).

Every state is a fixed-size int64 count or float64 sum with ``dist_reduce_fx="sum"``. An empty batch (``N = 0``) adds
zeros, so it changes nothing; without data :class:`TopKAccuracy` is NaN and :class:`EmbeddingCompactness` raises its
documented "fewer than 2 classes" error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from softlabels.metrics.functional.classification import (
    ClassMoments,
    TopKCounts,
    _embedding_compactness_arg_validation,
    _embedding_compactness_compute,
    _embedding_compactness_tensor_validation,
    _embedding_compactness_update,
    _top_k_accuracy_arg_validation,
    _top_k_accuracy_compute,
    _top_k_accuracy_tensor_validation,
    _top_k_accuracy_update,
)


class TopKAccuracy(Metric):
    """Streaming top-k accuracy; see :func:`softlabels.metrics.functional.classification.top_k_accuracy`.

    State: int64 ``correct`` and ``total``. Ties go to the lower class index.

    Args:
        k: number of top classes that count.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = TopKAccuracy(k=2)
        >>> metric.update(torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]]), torch.tensor([1, 1]))
        >>> metric.update(torch.tensor([[0.1, 0.3, 0.6]]), torch.tensor([0]))
        >>> round(metric.compute().item(), 4)
        0.6667
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    correct: Tensor
    total: Tensor

    def __init__(self, *, k: int = 1, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _top_k_accuracy_arg_validation(type(self).__name__, k)
        self.k, self.validate_args = k, validate_args
        self.add_state("correct", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Add a batch: ``probs (N, C)`` and integer labels ``target (N,)``."""
        _top_k_accuracy_tensor_validation(
            probs, target, k=self.k, where=type(self).__name__, check_values=self.validate_args
        )
        counts = _top_k_accuracy_update(probs, target, k=self.k)
        self.correct += counts.correct
        self.total += counts.total

    def compute(self) -> Tensor:
        """Float64 fraction of items whose target is in the top ``k`` (NaN if none)."""
        return _top_k_accuracy_compute(TopKCounts(self.correct, self.total))


class EmbeddingCompactness(Metric):
    """Streaming embedding compactness (lower is more compact).

    See :func:`softlabels.metrics.functional.classification.embedding_compactness`. State (fixed size): per-class
    float64 ``feature_sum`` ``(C, D)``, float64 ``sq_norm_sum`` ``(C,)`` and int64 ``n_items`` ``(C,)``; the
    within-class variance is ``sq_norm_sum / n − ‖feature_sum / n‖²``. Classes without samples are excluded;
    ``compute()`` raises a ``ValueError`` if fewer than 2 classes have samples.

    Args:
        num_classes: number of classes ``C >= 2``.
        num_features: embedding size ``D``.
        validate_args: check input values on every update.
        kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = EmbeddingCompactness(3, num_features=2)
        >>> metric.update(torch.tensor([[0.0, 1.0], [4.0, 1.0]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.0, -1.0], [4.0, -1.0]]), torch.tensor([0, 1]))
        >>> metric.compute().item()
        0.0625
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    feature_sum: Tensor
    sq_norm_sum: Tensor
    n_items: Tensor

    def __init__(self, num_classes: int, *, num_features: int, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _embedding_compactness_arg_validation(type(self).__name__, num_classes, num_features)
        self.num_classes, self.num_features, self.validate_args = num_classes, num_features, validate_args
        self.add_state("feature_sum", torch.zeros(num_classes, num_features, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sq_norm_sum", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_items", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, features: Tensor, target: Tensor) -> None:
        """Add a batch: embeddings ``features (N, D)`` and integer labels ``target (N,)``."""
        _embedding_compactness_tensor_validation(
            features,
            target,
            num_classes=self.num_classes,
            where=type(self).__name__,
            check_values=self.validate_args,
            num_features=self.num_features,
        )
        moments = _embedding_compactness_update(features, target, num_classes=self.num_classes)
        self.feature_sum += moments.feature_sum
        self.sq_norm_sum += moments.sq_norm_sum
        self.n_items += moments.n_items

    def compute(self) -> Tensor:
        """Float64 compactness ratio over the classes seen so far."""
        moments = ClassMoments(self.feature_sum, self.sq_norm_sum, self.n_items)
        return _embedding_compactness_compute(moments, type(self).__name__)
