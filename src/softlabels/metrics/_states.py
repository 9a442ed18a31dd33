"""State helpers shared by the streaming metrics (no maths): the per-case ``"cat"`` list states.

A per-case list state is empty before any non-empty ``update`` (empty batches add no case). Two places need a tensor
then: ``compute`` (``torchmetrics`` cannot concatenate an empty list, "No samples to concatenate") and the distributed
sync, where ``torchmetrics`` stands in a 1-D float ``tensor([])`` for an empty list, which does not match the other
processes' ``(n, …)`` rows and breaks the collective. :class:`CaseListMetric` gives both a 0-row tensor of the rows'
shape and dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors


def cat_cases(state: list[Tensor] | Tensor, empty: Tensor) -> Tensor:
    """The rows of a per-case ``"cat"`` state concatenated along axis 0, or ``empty`` (0 rows) when none was added.

    After a distributed sync the state may already be one tensor.

    Example:
        >>> import torch
        >>> cat_cases([], torch.zeros(0, 2)).shape
        torch.Size([0, 2])
        >>> cat_cases([torch.ones(1, 2), torch.zeros(3, 2)], torch.zeros(0, 2)).shape
        torch.Size([4, 2])
    """
    if isinstance(state, Tensor) or len(state) > 0:
        return dim_zero_cat(state)
    return empty


class CaseListMetric(Metric):
    """A ``Metric`` with per-case list states; subclasses say what 0 cases look like in :meth:`_empty_cases`."""

    def _empty_cases(self) -> dict[str, Tensor]:
        """Per-case list state name → a 0-row tensor of its rows' shape, dtype and device."""
        raise NotImplementedError

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None) -> None:
        """Sync as ``torchmetrics``, an empty per-case list first given its 0-row tensor (restored by ``unsync``)."""
        for name, empty in self._empty_cases().items():
            state = getattr(self, name)
            if isinstance(state, list) and not state:
                setattr(self, name, [empty])
        super()._sync_dist(dist_sync_fn, process_group)
