r"""Soft targets inside nnU-Net's training step: decode the augmented label map, build the method's target, downsample.

A softlabels trainer (:mod:`softlabels.integrations.nnunet.trainers`) receives nnU-Net's augmented integer map
(``batch["target"]``; with deep supervision a list whose first entry is the full-resolution map). This module, which
imports nothing of ``nnunetv2``, turns it into what the registry method reads (:func:`method_batch`: the label, the
raters or the annotator confidence, by :class:`~softlabels.integrations.nnunet.encoding.LabelEncoding`), calls the
method's own ``make_target`` once at full resolution, and gives every deep-supervision output its own target by area
averaging (:func:`downsample_target`):

.. math::

    q^{(s)}_c(\mathbf{v}) = \frac{\sum_{\mathbf{u} \in \text{cell}(\mathbf{v})} k(\mathbf{u})\, q_c(\mathbf{u})}
                                 {\sum_{\mathbf{u} \in \text{cell}(\mathbf{v})} k(\mathbf{u})},

with ``q`` the full-resolution target (a hard label as its one-hot row), ``k`` the keep mask (1 where no keep mask),
so every row still sums to 1; voxel weights are averaged the same way. nnU-Net itself downsamples label maps by
nearest neighbour, which would drop the soft values; its own downsampled maps are therefore not used.
:class:`DeepSupervisedMethodLoss` sums the method's loss over the outputs with nnU-Net's weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from softlabels.integrations.nnunet.encoding import LabelEncoding, _integer_map, decode_raters
from softlabels.methods import Method
from softlabels.methods.targets import TrainingTarget

__all__ = [
    "DeepSupervisedMethodLoss",
    "deep_supervision_targets",
    "deep_supervision_weights",
    "downsample_target",
    "encoding_of_dataset",
    "hard_label_map",
    "method_batch",
]

_KEYS = {"rater_bits": ("label", "raters", "confidence"), "foreground_levels": ("label", "confidence")}


def encoding_of_dataset(dataset_json: Mapping[str, Any]) -> LabelEncoding:
    """The label encoding of an nnU-Net ``dataset.json``: its ``softlabels_encoding``, else plain labels ``0..C−1``.

    Raises:
        ValueError: a dataset with regions or an ignore label but no softlabels encoding, or labels that are not
            ``0..C−1`` (one line naming the value).

    Example:
        >>> encoding_of_dataset({"labels": {"background": 0, "liver": 1, "tumour": 2}}).class_names
        ('background', 'liver', 'tumour')
        >>> encoding_of_dataset({"labels": {}, "softlabels_encoding": {"kind": "rater_bits", "levels": 3,
        ...                      "source": "raters"}}).kind
        'rater_bits'
    """
    if "softlabels_encoding" in dataset_json:
        return LabelEncoding.from_dict(dataset_json["softlabels_encoding"], where="softlabels_encoding of dataset.json")
    labels = dataset_json.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f"dataset.json has no `labels` mapping; got {labels!r}.")
    if "ignore" in labels or any(not isinstance(v, int) or isinstance(v, bool) for v in labels.values()):
        raise ValueError(
            "dataset.json declares regions or an ignore label; softlabels trainers train a softmax over the labels "
            f"0..C-1 (or a dataset written by `softlabels nnunet convert`); got labels {dict(labels)}."
        )
    values = sorted(labels.values())
    if values != list(range(len(values))) or len(values) < 2:
        raise ValueError(f"dataset.json labels must be 0..C-1 with C >= 2; got {dict(labels)}.")
    names = tuple(sorted(labels, key=lambda name: labels[name]))
    if "background" in names[1:]:
        raise ValueError(f"dataset.json labels must give 'background' the value 0; got {dict(labels)}.")
    names = ("background", *names[1:])
    return LabelEncoding("labels", len(names) - 1, "labels", len(names), names)


def method_batch(seg: Tensor, encoding: LabelEncoding, keys: Sequence[str] = ("label",)) -> dict[str, Tensor]:
    """The batch keys a method reads (``label``, ``raters``, ``confidence``), decoded from nnU-Net's integer map.

    ``labels``: the label map itself. ``rater_bits``: every rater's map (bit ``r``), the majority label
    (``2·votes > R``) and its confidence (the share of raters agreeing with it). ``foreground_levels``: the label
    ``q > 0.5`` and its confidence ``max(q, 1 − q)``, ``q = v / L``. Shapes: ``(N, 1, *spatial)`` or
    ``(N, *spatial)`` integer → ``label (N, *spatial)`` int64, ``raters (N, R, *spatial)`` int64, ``confidence
    (N, *spatial)`` float32.

    Raises:
        ValueError: a key the encoding cannot give (raters of a confidence dataset, confidence of plain labels).

    Example:
        >>> enc = LabelEncoding("rater_bits", 3, "raters")
        >>> batch = method_batch(torch.tensor([[[0, 1, 3, 7]]]), enc, ("label", "raters", "confidence"))
        >>> batch["label"].tolist(), batch["raters"][0, :, 0].tolist()
        ([[[0, 0, 1, 1]]], [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
        >>> [round(c, 4) for c in batch["confidence"][0, 0].tolist()]
        [1.0, 0.6667, 0.6667, 1.0]
    """
    available = _KEYS.get(encoding.kind, ("label",))
    missing = [key for key in keys if key not in available]
    if missing:
        raise ValueError(
            f"a {encoding.kind!r} dataset (source {encoding.source!r}) gives no {missing}: it gives {list(available)}."
        )
    if encoding.kind == "labels":
        return {"label": (seg[:, 0] if seg.ndim in (4, 5) and seg.shape[1] == 1 else seg).to(torch.int64)}
    top = encoding.levels
    out: dict[str, Tensor] = {}
    if encoding.kind == "rater_bits":
        raters = decode_raters(seg, top)  # checks the layout and the codes
        votes = raters.sum(dim=1)
        if "raters" in keys:
            out["raters"] = raters
    else:
        votes = _integer_map(seg, "seg", "method_batch", top)  # decode_foreground's layout and range checks
    label = 2 * votes > top
    out["label"] = label.to(torch.int64)
    if "confidence" in keys:
        share = votes.double() / top
        out["confidence"] = torch.where(label, share, 1.0 - share).float()
    return out


def hard_label_map(seg: Tensor, encoding: LabelEncoding) -> Tensor:
    """The hard label map of an encoded map, in its layout (``(N, 1, *spatial)`` stays so), for nnU-Net's online Dice.

    Example:
        >>> hard_label_map(torch.tensor([[[[0, 2, 3]]]]), LabelEncoding("foreground_levels", 4, "confidence")).tolist()
        [[[[0, 0, 1]]]]
    """
    if encoding.kind == "labels":
        return seg
    label = method_batch(seg, encoding)["label"].to(seg.dtype)
    return label.unsqueeze(1) if seg.ndim in (4, 5) and seg.shape[1] == 1 else label


def downsample_target(target: TrainingTarget, shape: Sequence[int], num_classes: int) -> TrainingTarget:
    """A training target area-averaged onto a coarser grid (deep supervision): soft rows that sum to 1.

    Hard labels become their one-hot rows, then every output voxel takes the mean over the kept voxels of its cell
    (``adaptive_avg_pool``); weights are averaged the same way; a cell with no kept voxel is dropped (keep mask
    ``False``, a uniform row). ``shape`` equal to the target's grid returns ``target`` itself. Shapes: ``target``
    ``(N, *spatial)`` integer or ``(N, C, *spatial)`` float → ``(N, C, *shape)`` float32.

    Example:
        >>> coarse = downsample_target(TrainingTarget(torch.tensor([[[0, 1], [1, 1]]])), (1, 1), 2)
        >>> coarse.target[0, :, 0, 0].tolist(), coarse.weight, coarse.keep_mask
        ([0.25, 0.75], None, None)
    """
    full = target.target
    soft = full.is_floating_point()
    if not soft:  # a label a loss ignores (``ignore_index``, e.g. 255) has no one-hot row: it is dropped here
        valid = (full >= 0) & (full < num_classes)
        if not bool(valid.all()):
            keep_valid = valid if target.keep_mask is None else target.keep_mask & valid
            target = TrainingTarget(full, weight=target.weight, keep_mask=keep_valid, teacher=target.teacher)
    spatial = _grid(target)
    size = tuple(int(s) for s in shape)
    if size == spatial:
        return target
    keep = target.keep_mask
    ones = torch.ones((full.shape[0], *spatial), dtype=torch.float32, device=full.device)
    kept = ones if keep is None else keep.float()
    if soft:
        rows = full.float()
    else:
        labels = torch.where(kept > 0, full.to(torch.int64), 0) if keep is not None else full.to(torch.int64)
        rows = F.one_hot(labels, num_classes).movedim(-1, 1).float()
    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[len(spatial) - 1]
    if keep is None:  # every voxel counts: plain block means
        weight_of = None if target.weight is None else pool(target.weight.float().unsqueeze(1), size)[:, 0]  # type: ignore[operator, arg-type]
        return TrainingTarget(pool(rows, size), weight=weight_of)  # type: ignore[operator, arg-type]
    mass = pool(kept.unsqueeze(1), size)  # type: ignore[operator, arg-type]
    present = mass > 0
    safe = torch.where(present, mass, torch.ones_like(mass))
    coarse = torch.where(present, pool(rows * kept.unsqueeze(1), size) / safe, 1.0 / num_classes)  # type: ignore[operator, arg-type]
    weight = None
    if target.weight is not None:
        weighted = pool((target.weight.float() * kept).unsqueeze(1), size)  # type: ignore[operator, arg-type]
        weight = torch.where(present, weighted / safe, 0.0)[:, 0]
    return TrainingTarget(coarse, weight=weight, keep_mask=None if keep is None else present[:, 0])


def deep_supervision_targets(
    method: Method, seg: Tensor, shapes: Sequence[Sequence[int]], encoding: LabelEncoding
) -> list[TrainingTarget]:
    """The target of every output scale: ``method.make_target`` of the decoded map, area-averaged to each shape.

    Example:
        >>> from softlabels.methods import create_method
        >>> seg = torch.tensor([[[[0, 0, 1, 1], [0, 1, 1, 1]]]])
        >>> targets = deep_supervision_targets(create_method("ls", 2), seg, [(2, 4), (1, 2)], LabelEncoding("labels",
        ...                                    1, "labels"))
        >>> [tuple(t.target.shape) for t in targets], targets[1].target[0, :, 0].sum(0).tolist()
        ([(1, 2, 4), (1, 2, 1, 2)], [1.0, 1.0])
    """
    full = method.make_target(method_batch(seg, encoding, method.requires))
    rows = _one_hot_once(full, encoding.num_classes)
    grid = _grid(full)
    return [full if tuple(shape) == grid else downsample_target(rows, shape, encoding.num_classes) for shape in shapes]


def _grid(target: TrainingTarget) -> tuple[int, ...]:
    """The spatial shape of a target: hard ``(N, *spatial)`` or soft ``(N, C, *spatial)``."""
    full = target.target
    return tuple(full.shape[2:] if full.is_floating_point() else full.shape[1:])


def _one_hot_once(target: TrainingTarget, num_classes: int) -> TrainingTarget:
    """A hard target with every label valid and no keep mask as float one-hot rows, shared by the coarser scales."""
    labels = target.target
    if labels.is_floating_point() or target.keep_mask is not None:
        return target
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        return target
    rows = torch.zeros((labels.shape[0], num_classes, *labels.shape[1:]), dtype=torch.float32, device=labels.device)
    rows.scatter_(1, labels.unsqueeze(1).to(torch.int64), 1.0)
    return TrainingTarget(rows, weight=target.weight, teacher=target.teacher)


def deep_supervision_weights(scales: int) -> list[float]:
    """nnU-Net's weights of the deep-supervision outputs: ``2^{-i}``, the coarsest 0, normalised to sum 1.

    Example:
        >>> [round(w, 4) for w in deep_supervision_weights(4)]
        [0.5714, 0.2857, 0.1429, 0.0]
    """
    raw = [0.5**i for i in range(scales)]
    if scales > 1:
        raw[-1] = 0.0
    total = sum(raw)
    return [w / total for w in raw]


class DeepSupervisedMethodLoss(nn.Module):
    """The method's loss summed over nnU-Net's outputs, each against its own area-averaged soft target.

    ``loss(outputs, target)``: ``outputs`` is the network's list of logits ``(N, C, *spatial_i)`` (or one tensor
    without deep supervision); ``target`` nnU-Net's integer map (or its list of maps: the first, full-resolution one
    is used). Outputs of weight 0 get no target. ``held`` (set, then cleared, by the trainer's validation step)
    replaces ``target`` while set: the loss comes from the encoded map while nnU-Net's online Dice sees hard labels.

    Example:
        >>> from softlabels.methods import create_method
        >>> loss = DeepSupervisedMethodLoss(create_method("svls", 2), LabelEncoding("labels", 1, "labels"), [1.0])
        >>> round(float(loss([torch.zeros(1, 2, 4, 4)], torch.zeros(1, 1, 4, 4, dtype=torch.long))), 4)
        0.6931
    """

    def __init__(self, method: Method, encoding: LabelEncoding, weights: Sequence[float]) -> None:
        super().__init__()
        self.method = method
        self.encoding = encoding
        self.weights = [float(w) for w in weights]
        self.held: Tensor | Sequence[Tensor] | None = None

    def forward(self, outputs: Tensor | Sequence[Tensor], target: Tensor | Sequence[Tensor]) -> Tensor:
        """The weighted sum of the method's loss over the outputs."""
        logits = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        source = target if self.held is None else self.held
        seg = source if isinstance(source, Tensor) else source[0]
        if len(logits) != len(self.weights):
            raise ValueError(f"the network gave {len(logits)} outputs; the loss has {len(self.weights)} weights.")
        used = [(w, out) for w, out in zip(self.weights, logits, strict=True) if w != 0]
        targets = deep_supervision_targets(
            self.method, seg, [tuple(out.shape[2:]) for _, out in used], self.encoding
        )  # fmt: skip
        total = torch.zeros((), device=seg.device)
        for (w, out), t in zip(used, targets, strict=True):
            total = total + w * self.method(out, t)
        return total
