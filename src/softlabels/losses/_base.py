"""The base of every voxel-wise loss: shared options, input checks and reduction (see ``_inputs``)."""

from __future__ import annotations

from torch import Tensor, nn

from softlabels.losses._inputs import (
    LossTarget,
    Reduction,
    check_ignore_index,
    check_logits,
    check_reduction,
    prepare_target,
    reduce_voxels,
)


class VoxelLoss(nn.Module):
    """A loss ``ℓ_v`` per item or voxel, reduced by :func:`reduce_voxels`; subclasses implement ``_per_voxel``.

    Empty and left-out inputs, the same for every loss: an empty batch (``N = 0`` or a spatial size 0) raises a
    ``ValueError`` naming ``input`` and the loss, whatever the reduction; a batch whose voxels are all left out
    (``keep_mask``, ``ignore_index``, zero ``weight``) gives 0 with a zero gradient (``"mean"``, ``"sum"``).

    Args:
        reduction: ``"mean"`` (weighted mean over kept voxels), ``"sum"`` or ``"none"`` (``(N, *spatial)``).
        ignore_index: hard label whose voxels are left out, or ``None``.
        validate_args: check values (finite logits, label range, target sums, weights) on every call.
    """

    def __init__(
        self, *, reduction: Reduction = "mean", ignore_index: int | None = None, validate_args: bool = True
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.reduction: Reduction = check_reduction(reduction, name)
        self.ignore_index = check_ignore_index(ignore_index, name)
        self.validate_args = bool(validate_args)

    def prepare(
        self,
        input: Tensor,
        target: Tensor,
        weight: Tensor | None,
        keep_mask: Tensor | None,
        *,
        where: str | None = None,
    ) -> tuple[Tensor, LossTarget]:
        """Check the inputs and return the logits and the combined target/voxel weights.

        ``where`` is the loss named in errors (default: this class; a composite passes its own name).
        """
        name = type(self).__name__ if where is None else where
        input = check_logits(input, name, validate_args=self.validate_args)
        prepared = prepare_target(
            input,
            target,
            weight=weight,
            keep_mask=keep_mask,
            ignore_index=self.ignore_index,
            where=name,
            validate_args=self.validate_args,
        )
        return input, prepared

    def _per_voxel(self, input: Tensor, target: LossTarget) -> Tensor:
        raise NotImplementedError

    def forward(
        self,
        input: Tensor,
        target: Tensor,
        *,
        weight: Tensor | None = None,
        keep_mask: Tensor | None = None,
    ) -> Tensor:
        """Loss of logits ``input (N, C, *spatial)`` against a hard ``(N, *spatial)`` or soft target.

        Args:
            input: logits ``(N, C, *spatial)``.
            target: integer labels ``(N, *spatial)`` (or ``(N, 1, *spatial)``) or a soft target of ``input``'s shape.
            weight: voxel weights ``(N, *spatial)`` >= 0, or ``None``.
            keep_mask: bool ``(N, *spatial)``, ``True`` where the voxel counts, or ``None``.

        Returns:
            A scalar for ``"mean"``/``"sum"``, per-voxel values ``(N, *spatial)`` for ``"none"``.

        Raises:
            ValueError: an empty batch (``N = 0`` or a spatial size 0), or bad shapes or values.
        """
        input, prepared = self.prepare(input, target, weight, keep_mask)
        return reduce_voxels(self._per_voxel(input, prepared), prepared.voxel_weight, self.reduction)

    def extra_repr(self) -> str:
        """Show the options in ``repr``."""
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index!r}"
