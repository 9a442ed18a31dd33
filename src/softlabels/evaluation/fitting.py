"""The one fitting path of post-hoc scaling: streaming scalers fed with a split's logits and observed reference.

The scalers are those of :mod:`softlabels.calibration`; the reference is the **observed** one of the reference rule.

``softlabels calibrate`` and the benchmark's temperature-scaled rows both fit through :func:`fit_scaler`, so a
temperature is the same whichever command fitted it, and never depends on the synthetic ``true_probs`` (unless the
user names ``reference="true_probs"``): the batches may carry it or not, the fitted ``T`` is identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from softlabels.evaluation.references import ReferenceRule, batch_references

__all__ = ["ObservedLogits", "fit_scaler"]


class _Scaler(Protocol):
    def fit(self, batches: Iterable[Any]) -> Any: ...


class ObservedLogits:
    """Re-iterable ``(logits, reference)`` over a loader, one network pass per iteration (a split never sits in memory).

    The reference is the batch's ``"soft"`` reference under the rule (:mod:`softlabels.evaluation.references`): the
    soft label or rater mean when the batch has one, else the hard label.

    Args:
        logits_of: the network's uncalibrated logits ``(N, C, *spatial)`` of an image batch.
        loader: an iterable of batch dicts (re-iterable, e.g. a ``DataLoader``).
        num_classes: classes ``C``.
        spatial_dims: 2 or 3 (segmentation), 0 (classification).
        reference: the reference rule (default ``"observed"``).

    Example:
        >>> loader = [{"image": torch.randn(2, 3), "label": torch.tensor([0, 2])}]
        >>> stream = ObservedLogits(lambda x: x, loader, num_classes=3, spatial_dims=0)
        >>> [target.tolist() for _, target in stream]
        [[0, 2]]
    """

    def __init__(
        self,
        logits_of: Callable[[Tensor], Tensor],
        loader: Iterable[Mapping[str, Any]],
        *,
        num_classes: int,
        spatial_dims: int,
        reference: ReferenceRule = "observed",
    ) -> None:
        self.logits_of, self.loader = logits_of, loader
        self.num_classes, self.spatial_dims, self.reference = num_classes, spatial_dims, reference

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batch in self.loader:
            with torch.no_grad():  # per batch: grad mode must not stay off in the consumer while it is suspended
                logits = self.logits_of(batch["image"]).float()
                refs = batch_references(batch, self.num_classes, self.spatial_dims, reference=self.reference)
            yield logits, refs.soft_or_hard.to(logits.device)


def fit_scaler(scaler: _Scaler, stream: ObservedLogits) -> Any:
    """Fit a streaming scaler (``TemperatureScaler``, ``VectorScaler``) on the observed stream; return it.

    Example:
        >>> from softlabels.calibration import TemperatureScaler
        >>> loader = [{"image": 3 * torch.randn(64, 3), "label": torch.randint(0, 3, (64,))}]
        >>> scaler = fit_scaler(TemperatureScaler(), ObservedLogits(lambda x: x, loader, num_classes=3, spatial_dims=0))
        >>> scaler.temperature_ > 1  # random logits: softened
        True
    """
    return scaler.fit(stream)
