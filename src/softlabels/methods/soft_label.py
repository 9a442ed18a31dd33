"""The ``soft_label`` method: soft cross-entropy on a soft target shipped with the data (``batch["soft_label"]``).

E.g. tissue probability maps (MNI152): the target is taken as is, checked to be a distribution over the classes at
every voxel (:class:`~softlabels.methods.targets.GivenSoftTarget`).

Example:
    >>> import torch
    >>> from softlabels.methods import create_method
    >>> method = create_method("soft_label", 2)
    >>> target = method.make_target({"soft_label": torch.full((1, 2, 2, 2), 0.5)})
    >>> round(float(method(torch.zeros(1, 2, 2, 2), target)), 4)  # log 2
    0.6931
"""

from __future__ import annotations

from softlabels.losses import SoftCrossEntropyLoss
from softlabels.methods.base import SEGMENTATION, Method, Task
from softlabels.methods.registry import register_method
from softlabels.methods.targets import GivenSoftTarget

__all__: list[str] = []  # the entry is reached through the registry (softlabels.methods.create_method)


@register_method("soft_label", tasks=SEGMENTATION)
def _soft_label(num_classes: int, *, task: Task | None = None) -> Method:
    """Soft CE on a soft target given with the data (``batch["soft_label"]``, e.g. tissue probability maps)."""
    loss = SoftCrossEntropyLoss(validate_args=False)
    return Method("soft_label", loss, GivenSoftTarget(num_classes), requires=("soft_label",))
