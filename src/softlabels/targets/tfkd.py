"""Teacher distributions of teacher-free knowledge distillation (Tf-KD): the virtual teacher and the self-teacher.

See ``docs/methods.md`` §2.2.

The regularisation variant (Tf-KD_reg) distils from a hand-made "virtual teacher"; the self-training
variant (Tf-KD_self) from a trained copy of the same network. Both give a distribution ``(N, C, *spatial)`` that
:class:`softlabels.losses.DistillationLoss` compares with the student.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from torch import Tensor

from softlabels.targets.label_checks import _check_fraction, _check_ignore_index, _check_labels, _check_num_classes
from softlabels.targets.smoothing import _as_batch, _one_hot

__all__ = ["VirtualTeacherd", "self_teacher", "virtual_teacher"]


def _check_temperature(temperature: object, where: str) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"`temperature` of {where} must be a float; got {type(temperature).__name__} {temperature!r}.")
    if not (0 < temperature < float("inf")):
        raise ValueError(f"`temperature` of {where} must be a finite float > 0; got {temperature!r}.")
    return float(temperature)


def _teacher_values(num_classes: int, correct_probability: float, temperature: float) -> tuple[float, float]:
    """The virtual teacher's two values ``(t[c*], t[k ≠ c*])`` in float64, for checked arguments."""
    row = torch.full((num_classes,), (1.0 - correct_probability) / (num_classes - 1), dtype=torch.float64)
    row[0] = correct_probability
    teacher = torch.softmax(row / temperature, dim=0)
    return float(teacher[0]), float(teacher[1])


def virtual_teacher(
    labels: Tensor,
    num_classes: int,
    *,
    correct_probability: float = 0.99,
    temperature: float = 40.0,
    ignore_index: int | None = None,
) -> Tensor:
    r"""Tf-KD_reg's virtual teacher: a confident hand-made distribution, softened by a temperature.

    .. math::
        p_d[c^*] = a,\quad p_d[k] = \frac{1 − a}{C − 1}\ (k ≠ c^*),\qquad t = \mathrm{softmax}(p_d / T)

    Exactly as the reference code: the softmax is applied to the **probability vector** divided by ``T``, so for a
    large ``T`` the teacher is almost uniform (``C = 100, T = 40, a = 0.99``: ``t[c*] ≈ 0.01025``), and Tf-KD_reg acts
    as a confidence penalty. Ignored voxels get an all-zero row.

    Args:
        labels: hard labels ``(N,)`` or ``(N, *spatial)``, integer dtype.
        num_classes: number of classes ``C >= 2``.
        correct_probability: ``a`` in ``[0, 1]``, the virtual teacher's probability of the true class (0.99).
        temperature: ``T > 0`` (40 for MobileNetV2, 6 for ResNet-50 in the authors' settings).
        ignore_index: label value to leave out (not in ``[0, C)``), or ``None``.

    Returns:
        Teacher distribution ``(N, C, *spatial)`` in the default float dtype, on ``labels``' device.

    Raises:
        TypeError: ``labels`` is not an integer tensor, or an option has the wrong type.
        ValueError: labels outside ``[0, C)``, ``a`` outside ``[0, 1]`` or ``T <= 0``.

    Reference:
        Yuan, Tay, Li, Wang, Feng, "Revisiting Knowledge Distillation via Label Smoothing Regularization",
        CVPR 2020 (``my_loss_function.py::loss_kd_regularization``).

    Example:
        >>> t = virtual_teacher(torch.tensor([3]), 100, temperature=40.0)
        >>> round(t[0, 3].item(), 5), round(t[0].sum().item(), 5)
        (0.01025, 1.0)
    """
    where = "virtual_teacher"
    num_classes = _check_num_classes(num_classes, where, 2)
    a = _check_fraction("correct_probability", correct_probability, where)
    temperature = _check_temperature(temperature, where)
    ignore_index = _check_ignore_index(ignore_index, num_classes, where)
    labels = _check_labels(labels, num_classes, where, spatial=False, ignore_index=ignore_index)
    onehot = _one_hot(labels, num_classes)
    correct, other = _teacher_values(num_classes, a, temperature)
    target = onehot * (correct - other) + other
    if ignore_index is not None:
        target = target * (labels != ignore_index).unsqueeze(1).to(target.dtype)
    return target


def self_teacher(teacher_logits: Tensor, *, temperature: float = 6.0) -> Tensor:
    """Tf-KD_self's target: a trained teacher's logits softened by a temperature, ``softmax(z_teacher / T)``.

    Args:
        teacher_logits: the teacher's logits ``(N, C, *spatial)`` (computed without gradient).
        temperature: ``T > 0`` (6 for ResNet-50, 20 for MobileNetV2 in the authors' settings).

    Returns:
        ``(N, C, *spatial)``, detached, ``teacher_logits``' dtype and device.

    Raises:
        TypeError: not a floating tensor.
        ValueError: fewer than 2 classes, NaN/inf logits or ``T <= 0``.

    Reference:
        Yuan, Tay, Li, Wang, Feng, "Revisiting Knowledge Distillation via Label Smoothing Regularization", CVPR 2020.

    Example:
        >>> self_teacher(torch.tensor([[2.0, 0.0]]), temperature=2.0)
        tensor([[0.7311, 0.2689]])
    """
    where = "self_teacher"
    temperature = _check_temperature(temperature, where)
    if not isinstance(teacher_logits, Tensor) or not teacher_logits.is_floating_point():
        raise TypeError(f"`teacher_logits` of {where} must be a floating tensor; got {type(teacher_logits).__name__}.")
    if teacher_logits.ndim < 2 or teacher_logits.shape[1] < 2:
        raise ValueError(
            f"`teacher_logits` of {where} must be (N, C, *spatial) with C >= 2; got {tuple(teacher_logits.shape)}."
        )
    if not bool(torch.isfinite(teacher_logits).all()):
        raise ValueError(f"`teacher_logits` of {where} must be finite; got NaN/inf values.")
    return torch.softmax(teacher_logits.detach() / temperature, dim=1)


class VirtualTeacherd(MapTransform):
    """MONAI dictionary wrapper of :func:`virtual_teacher` for one sample.

    Each ``data[key]`` is one sample's label: a map ``(1, *spatial)`` (``has_channel=True``, as MONAI gives it),
    ``(*spatial)``, or a class index (0-d tensor, classification). It is replaced by the teacher ``(C, *spatial)``
    (``(C,)`` for a class index).

    Args:
        keys: keys of the labels to transform.
        num_classes: number of classes ``C``.
        correct_probability: the virtual teacher's probability of the true class ``a``.
        temperature: ``T > 0``.
        has_channel: whether each map carries a leading channel of size 1 (ignored for 0-d labels).
        allow_missing_keys: skip keys absent from the dictionary.

    Example:
        >>> out = VirtualTeacherd("label", num_classes=4, temperature=1.0)({"label": torch.tensor(2)})
        >>> out["label"].argmax().item(), out["label"].shape
        (2, torch.Size([4]))
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        *,
        correct_probability: float = 0.99,
        temperature: float = 40.0,
        has_channel: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_classes = num_classes
        self.correct_probability = correct_probability
        self.temperature = temperature
        self.has_channel = has_channel

    def __call__(self, data: Mapping[Hashable, Tensor]) -> dict[Hashable, Tensor]:
        """Replace every selected label by its virtual-teacher distribution."""
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            batch = value.reshape(1) if value.ndim == 0 else _as_batch(value, self.has_channel, "VirtualTeacherd", key)
            d[key] = virtual_teacher(
                batch, self.num_classes, correct_probability=self.correct_probability, temperature=self.temperature
            )[0]
        return d
