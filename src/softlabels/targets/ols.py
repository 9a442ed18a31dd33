"""Online Label Smoothing (OLS): one soft label per class, learned from the previous epoch's correct predictions.

See ``docs/methods.md`` §2.1.

The state is the class-wise soft-label matrix ``S (C, C)`` (row ``c`` is the target of class ``c``),
read at loss time and constant within an epoch, plus this epoch's accumulators: ``A (C, C)``, the sum of the
predicted distributions of the correctly classified samples of each class (float32 within a batch, float64 across
batches), and ``n (C,)``, their count (int64). At the end of an epoch ``S[c] = A[c] / n[c]``; only the previous
epoch is used (no running average). ``S`` is a buffer; ``A`` and ``n`` are the module's *extra state*: saved in
``state_dict`` (checkpoints, mid-epoch too) and moved with ``.to(device)``, but not buffers, because
``DistributedDataParallel`` overwrites every buffer with rank 0's at each forward pass (``broadcast_buffers``),
which would discard the other processes' accumulators. Under DDP ``A`` and ``n`` are all-reduced (summed) before
the update, so every process holds the same ``S``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from softlabels._ops import is_first_max
from softlabels._options import look_up_option
from softlabels.targets.label_checks import _check_ignore_index, _check_labels, _check_num_classes

__all__ = ["OnlineLabelSmoother"]


class OnlineLabelSmoother(nn.Module):
    r"""The OLS soft-label matrix and its epoch-wise update from correct predictions.

    Per training step, for every sample (or voxel) whose argmax equals its label ``y``:
    ``A[y] += softmax(z)`` and ``n[y] += 1`` (:meth:`accumulate`, no gradient). At the end of the epoch
    (:meth:`update`), for every class ``c``:

    .. math::
        S[c] \leftarrow \begin{cases}
        \text{uniform } 1/C \ (\text{or } S[c] \text{ with } \texttt{empty\_class\_policy="keep"}) & \text{if } n[c] = 0
        \\ S[c] & \text{else if } \max S[c] \ge f \ (\text{frozen}) \\ A[c] / n[c] & \text{otherwise}
        \end{cases}

    in this order, as the fine-grained solver of the authors: the empty-class rule comes first, so a frozen row whose
    class had no correct prediction is reset to uniform (and so unfreezes); freezing only keeps the rows of classes
    that had correct predictions. Then ``A`` and ``n`` are cleared. Calling the module returns the rows ``S[y]`` as a
    target.

    Args:
        num_classes: number of classes ``C >= 2``.
        init: initial ``S``: ``"uniform"`` (``1/C``; the fine-grained code, our default) or ``"zeros"`` (the CIFAR
            code: the soft term is 0 in epoch 1, which then trains on the CE term alone).
        empty_class_policy: a class with no correct prediction this epoch is reset to ``"uniform"`` (both reference
            code paths) or keeps its previous row (``"keep"``).
        freeze_at: leave a row unchanged once its maximum is ``>= freeze_at`` (the fine-grained code uses 0.88), or
            ``None`` (never freeze); an empty class still follows ``empty_class_policy`` (the reset comes first).
        ignore_index: label of voxels that are never accumulated, or ``None``.

    Reference:
        Zhang, Jiang, Hou, Cheng, Xu, Tang, "Delving Deep into Label Smoothing", IEEE TIP 2021; "Online Label
        Smoothing for medical image classification" (RadImageNet, BIO Web of Conferences 2025).

    Example:
        >>> ols = OnlineLabelSmoother(3)
        >>> logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [4.0, 0.0, 0.0]])
        >>> ols.accumulate(logits, torch.tensor([0, 1, 1]))  # samples 0 and 1 are correct, sample 2 is not
        >>> ols.update()
        >>> ols.soft_labels[0].round(decimals=4), ols.soft_labels[2]  # class 2: no correct prediction → uniform
        (tensor([0.9647, 0.0177, 0.0177], dtype=torch.float64), tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64))
    """

    soft_labels: Tensor
    sums: Tensor
    counts: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        init: Literal["uniform", "zeros"] = "uniform",
        empty_class_policy: Literal["uniform", "keep"] = "uniform",
        freeze_at: float | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        where = "OnlineLabelSmoother"
        self.num_classes = _check_num_classes(num_classes, where, 2)
        self.init = look_up_option("init", init, ("uniform", "zeros"), where=where)
        self.empty_class_policy = look_up_option(
            "empty_class_policy", empty_class_policy, ("uniform", "keep"), where=where
        )
        if freeze_at is not None and (isinstance(freeze_at, bool) or not isinstance(freeze_at, int | float)):
            raise TypeError(f"`freeze_at` of {where} must be a float or None; got {type(freeze_at).__name__}.")
        if freeze_at is not None and not 0 < freeze_at <= 1:
            raise ValueError(f"`freeze_at` of {where} must be in (0, 1] or None; got {freeze_at!r}.")
        self.freeze_at = freeze_at
        self.ignore_index = _check_ignore_index(ignore_index, self.num_classes, where)
        c = self.num_classes
        start = torch.full((c, c), 1.0 / c, dtype=torch.float64) if self.init == "uniform" else torch.zeros(c, c)
        self.register_buffer("soft_labels", start.to(torch.float64))
        self.sums = torch.zeros(c, c, dtype=torch.float64)  # extra state, not buffers: see the module docstring
        self.counts = torch.zeros(c, dtype=torch.int64)

    def get_extra_state(self) -> dict[str, Tensor]:
        """The accumulators ``A`` and ``n`` (saved in ``state_dict``)."""
        return {"sums": self.sums, "counts": self.counts}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        """Restore the accumulators from ``state_dict`` (shapes checked)."""
        c = self.num_classes
        sums, counts = state.get("sums"), state.get("counts")
        if (
            not isinstance(sums, Tensor)
            or not isinstance(counts, Tensor)
            or (sums.shape, counts.shape) != ((c, c), (c,))
        ):
            raise ValueError(f"OnlineLabelSmoother state must hold `sums` ({c}, {c}) and `counts` ({c},).")
        device = self.soft_labels.device
        self.sums = sums.to(device=device, dtype=torch.float64).clone()
        self.counts = counts.to(device=device, dtype=torch.int64).clone()

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> OnlineLabelSmoother:
        """Move the accumulators with the module (device only: they stay float64 / int64)."""
        out = super()._apply(fn, recurse)
        device = self.soft_labels.device
        self.sums, self.counts = self.sums.to(device), self.counts.to(device)
        return out  # type: ignore[no-any-return]

    def forward(self, labels: Tensor) -> Tensor:
        """Rows ``S[y]`` as a target ``(N, C, *spatial)`` for labels ``(N, *spatial)`` (ignored voxels: zeros)."""
        labels = _check_labels(
            labels, self.num_classes, "OnlineLabelSmoother", spatial=False, ignore_index=self.ignore_index
        )
        return self.rows(labels)

    def rows(self, labels: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """Unchecked :meth:`forward` for labels already validated, in ``dtype`` (default float dtype)."""
        valid = (labels >= 0) & (labels < self.num_classes)
        safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
        rows = self.soft_labels.to(dtype or torch.get_default_dtype())[safe]
        if not bool(valid.all()):
            rows = rows * valid.unsqueeze(-1).to(rows.dtype)
        return rows.movedim(-1, 1)

    @torch.no_grad()
    def accumulate(self, logits: Tensor, labels: Tensor) -> None:
        """Add ``softmax(logits)`` of the correctly classified samples/voxels to their class's accumulators.

        Args:
            logits: ``(N, C, *spatial)`` (``(N, C)`` for classification), the training forward pass (train mode).
            labels: ``(N, *spatial)`` integer labels (``ignore_index`` voxels are skipped).
        """
        where = "OnlineLabelSmoother.accumulate"
        if not isinstance(logits, Tensor) or logits.ndim < 2 or logits.shape[1] != self.num_classes:
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"`logits` of {where} must be (N, C={self.num_classes}, *spatial); got {got}.")
        labels = _check_labels(labels, self.num_classes, where, spatial=False, ignore_index=self.ignore_index)
        if labels.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(f"`labels` of {where} must be {tuple(logits.shape[:1] + logits.shape[2:])}.")
        if logits.numel() == 0:  # an empty batch has no correct prediction to accumulate
            return
        n, c = logits.shape[:2]
        z = logits.detach().reshape(n, c, -1)
        flat = labels.reshape(n, 1, -1).to(z.device).long()
        probs = torch.softmax(z.float(), dim=1)
        index = flat.clamp(0, c - 1)  # ignored voxels: any class, dropped by `valid`
        valid = (flat >= 0) & (flat < c)
        correct = (is_first_max(z, index) & valid).to(probs.dtype)  # top-1 of softmax = top-1 of the logits
        by_class = torch.zeros_like(probs).scatter_(1, index, correct)  # (N, C_label, V), 0/1
        sums = torch.bmm(by_class, probs.transpose(1, 2)).sum(0)  # Σ p over correct voxels, per label class (float32)
        self.sums += sums.to(self.sums)
        self.counts += by_class.sum(dim=(0, 2)).round().to(self.counts)

    @torch.no_grad()
    def update(self, *, sync: bool = True) -> None:
        """End of epoch: (all-reduce ``A``, ``n`` under DDP,) set ``S`` from them by the rule above, clear them."""
        if sync and dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.sums)
            dist.all_reduce(self.counts)
        c = self.num_classes
        new = self.sums / self.counts.clamp_min(1).unsqueeze(1).to(self.sums.dtype)
        if self.freeze_at is not None:  # only for classes with correct predictions: the empty rule below wins
            frozen = self.soft_labels.amax(dim=1) >= self.freeze_at
            new = torch.where(frozen.unsqueeze(1), self.soft_labels, new)
        empty = self.counts == 0
        fallback = self.soft_labels if self.empty_class_policy == "keep" else torch.full_like(new, 1.0 / c)
        new = torch.where(empty.unsqueeze(1), fallback, new)
        self.soft_labels.copy_(new)
        self.sums.zero_()
        self.counts.zero_()

    def extra_repr(self) -> str:
        """Show the options in ``repr``."""
        return (
            f"num_classes={self.num_classes}, init={self.init!r}, empty_class_policy={self.empty_class_policy!r}, "
            f"freeze_at={self.freeze_at!r}"
        )
