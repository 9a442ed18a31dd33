"""The input pipeline a run was trained with: raw image → network input, and network output → the image's grid.

A data source describes the preprocessing its samples went through as an :class:`InputPipeline` (in its ``info``);
``softlabels train`` stores it with the run (checkpoint and ``input_pipeline.json``), and ``softlabels evaluate`` /
``predict`` apply it to new image folders, so a trained model runs on a new volume without the source code that
prepared its training data. The steps, each optional, in the order they run:

1. ``orientation``: the volume is reoriented (axes permuted and flipped, from its affine) to the training axis codes,
   e.g. ``"RAS"``;
2. ``intensity``: ``"max"`` divides the image by its maximum (the MNI152 loader's [0, 1] scaling);
3. ``spacing``: the volume is resampled to the training voxel size — by exact block averaging (zero-padded ends,
   as :func:`area_downsample`) when the ratio is an integer, else by area averaging (shrinking) or linear
   interpolation (enlarging);
4. ``size_multiple``: each axis (but ``slice_axis``) is padded with zeros, centred, to a multiple;
5. ``normalize``: ``(image − mean) / std`` with the training statistics.

``slice_axis`` marks a 2D network trained on slices of 3D volumes: the prepared volume is cut along that axis and
every slice goes through the network. :meth:`InputPipeline.restore` undoes steps 4, 3 and 1 on the probabilities
(crop, linear resampling — a convex combination, so the classes still sum to 1 — and the inverse reorientation), so
the output lies on the input's grid and carries its affine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["InputPipeline", "Placement", "area_downsample", "voxel_spacing"]

_INTENSITY = ("none", "max")


def area_downsample(
    volume: np.ndarray, factor: int | Sequence[int], *, fill: float | Sequence[float] = 0.0
) -> np.ndarray:
    """Mean of ``factor``-wide blocks of every spatial axis of ``(C, *spatial)``, ends padded with per-channel ``fill``.

    Area averaging keeps soft targets on the simplex (never nearest-neighbour on soft maps); block ``i``'s centre is
    original voxel ``f·i + (f − 1)/2``. ``factor`` is one int or one per spatial axis. Shapes: ``(C, n_1, …)`` →
    ``(C, ⌈n_1 / f_1⌉, …)``.

    Example:
        >>> area_downsample(np.arange(6.0).reshape(1, 6), 2).tolist()
        [[0.5, 2.5, 4.5]]
        >>> area_downsample(np.ones((1, 3)), 2).tolist()  # the last block is half padding
        [[1.0, 0.5]]
        >>> area_downsample(np.ones((1, 4, 3)), (2, 1)).shape
        (1, 2, 3)
    """
    volume = np.asarray(volume, dtype=np.float64)
    spatial = volume.shape[1:]
    factors = [factor] * len(spatial) if isinstance(factor, int | np.integer) else list(factor)
    fills = np.broadcast_to(np.asarray(fill, dtype=np.float64), volume.shape[:1])
    padded = [-(-size // f) * f for size, f in zip(spatial, factors, strict=True)]
    blocks = [v for size, f in zip(padded, factors, strict=True) for v in (size // f, f)]
    out = []
    for channel, value in zip(volume, fills, strict=True):
        work = np.full(padded, value)
        work[tuple(slice(0, s) for s in channel.shape)] = channel
        out.append(work.reshape(blocks).mean(axis=tuple(range(1, 2 * channel.ndim, 2))))
    return np.stack(out)


def voxel_spacing(affine: Any, spatial_dims: int | None = None) -> tuple[float, ...]:
    """The voxel sizes (lengths of the affine's columns) of a 4×4 voxel-to-world matrix.

    Example:
        >>> voxel_spacing(np.diag([2.0, 1.5, 3.0, 1.0]))
        (2.0, 1.5, 3.0)
    """
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    sizes = tuple(float(v) for v in np.sqrt((matrix**2).sum(axis=0)))
    return sizes if spatial_dims is None else sizes[:spatial_dims]


@dataclass
class Placement:
    """What :meth:`InputPipeline.restore` needs to put a prepared volume's output back on the input grid.

    Example:
        >>> _, placement = InputPipeline(2, size_multiple=4).prepare(torch.zeros(1, 5, 6))
        >>> placement.input_shape, placement.pads
        ((5, 6), ((1, 2), (1, 1)))
    """

    input_shape: tuple[int, ...]
    oriented_shape: tuple[int, ...]
    ornt: np.ndarray | None = None  # input axes → training axes (nibabel orientation transform)
    inverse_ornt: np.ndarray | None = None
    factors: tuple[int, ...] | None = None  # exact block averaging by these factors (else linear resampling)
    resampled_shape: tuple[int, ...] | None = None
    pads: tuple[tuple[int, int], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class InputPipeline:
    """The preprocessing of a run's inputs (module docstring), stored with the run and applied to new images.

    Args:
        spatial_dims: spatial axes of the network's input (2 for a slice model, even on 3D volumes).
        orientation: axis codes of the training volumes (e.g. ``"RAS"``); ``None``: inputs are not reoriented.
        spacing: voxel size of the training grid, per axis of the (oriented) volume; ``None``: no resampling.
        intensity: ``"none"`` or ``"max"`` (divide by the image's maximum).
        normalize: ``(mean, std)`` of the z-scoring, or ``None``.
        size_multiple: pad the axes (but ``slice_axis``) to a multiple of this, or ``None``.
        slice_axis: the volume axis a slice model is applied along, or ``None``.

    Example:
        >>> pipeline = InputPipeline(2, spacing=(2.0, 2.0, 2.0), intensity="max", size_multiple=16, slice_axis=2)
        >>> image = torch.rand(1, 40, 30, 10)
        >>> prepared, placement = pipeline.prepare(image, np.eye(4))
        >>> tuple(prepared.shape)  # 1 mm → 2 mm, then x and y padded to multiples of 16
        (1, 32, 16, 5)
        >>> probs = torch.softmax(torch.randn(3, *prepared.shape[1:]), dim=0)
        >>> restored = pipeline.restore(probs, placement)
        >>> tuple(restored.shape), bool(torch.allclose(restored.sum(0), torch.ones(40, 30, 10), atol=1e-5))
        ((3, 40, 30, 10), True)
    """

    spatial_dims: int
    orientation: str | None = None
    spacing: tuple[float, ...] | None = None
    intensity: str = "none"
    normalize: tuple[float, float] | None = None
    size_multiple: int | None = None
    slice_axis: int | None = None

    def __post_init__(self) -> None:
        where = "InputPipeline"
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` of {where} must be 2 or 3; got {self.spatial_dims!r}.")
        if self.intensity not in _INTENSITY:
            raise ValueError(f"`intensity` of {where} must be one of {list(_INTENSITY)}; got {self.intensity!r}.")
        if self.spacing is not None and not all(isinstance(s, int | float) and s > 0 for s in self.spacing):
            raise ValueError(f"`spacing` of {where} must be positive numbers; got {self.spacing!r}.")
        if self.normalize is not None and (len(self.normalize) != 2 or not self.normalize[1] > 0):
            raise ValueError(f"`normalize` of {where} must be (mean, std > 0); got {self.normalize!r}.")
        if self.size_multiple is not None and not (isinstance(self.size_multiple, int) and self.size_multiple >= 1):
            raise ValueError(f"`size_multiple` of {where} must be an int >= 1; got {self.size_multiple!r}.")
        if self.slice_axis is not None and self.slice_axis not in (0, 1, 2):
            raise ValueError(f"`slice_axis` of {where} must be 0, 1 or 2; got {self.slice_axis!r}.")
        if self.orientation is not None and (len(self.orientation) != 3 or not set(self.orientation) <= set("RLAPSI")):
            raise ValueError(f"`orientation` of {where} must be 3 axis codes like 'RAS'; got {self.orientation!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML-able), read back by :meth:`from_dict`.

        Example:
            >>> InputPipeline(2, intensity="max").to_dict()["intensity"]
            'max'
        """
        data = asdict(self)
        for key in ("spacing", "normalize"):
            data[key] = None if data[key] is None else [float(v) for v in data[key]]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "the stored input pipeline") -> InputPipeline:
        """The pipeline of :meth:`to_dict` output; an unknown key or bad value is one error naming ``where``.

        Example:
            >>> InputPipeline.from_dict({"spatial_dims": 2, "spacing": [2, 2, 2]}).spacing
            (2.0, 2.0, 2.0)
        """
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(known)}.")
        values = dict(data)
        for key in ("spacing", "normalize"):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err

    @property
    def is_identity(self) -> bool:
        """``True`` when the pipeline changes nothing (images are used as stored).

        Example:
            >>> InputPipeline(2).is_identity, InputPipeline(2, size_multiple=8).is_identity
            (True, False)
        """
        return self == InputPipeline(self.spatial_dims)

    def prepare(self, image: Tensor, affine: Any = None) -> tuple[Tensor, Placement]:
        """The network-ready volume of ``image`` ``(C, *spatial)`` and its :class:`Placement`.

        ``affine`` (4×4, NIfTI inputs) gives the orientation and voxel size; without it (PNG) the image is taken
        to be in the training orientation at the training voxel size.

        Raises:
            ValueError: a 2D image for a slice model with ``slice_axis``, or a volume of another dimensionality.
        """
        volume = image.detach().to(torch.float64)
        spatial = tuple(volume.shape[1:])
        ornt = inverse = None
        sizes: tuple[float, ...] | None = None
        if affine is not None and len(spatial) == 3:
            import nibabel.orientations as nio

            matrix = np.asarray(affine, dtype=np.float64)
            sizes = voxel_spacing(matrix)
            if self.orientation is not None:
                own, trained = nio.io_orientation(matrix), nio.axcodes2ornt(tuple(self.orientation))
                ornt, inverse = nio.ornt_transform(own, trained), nio.ornt_transform(trained, own)
                volume = _apply_ornt(volume, ornt)
                sizes = tuple(sizes[int(np.nonzero(ornt[:, 0] == a)[0][0])] for a in range(3))
        oriented = tuple(volume.shape[1:])
        if self.intensity == "max":
            peak = float(volume.max())
            volume = volume / peak if peak > 0 else volume
        factors, resampled = None, None
        if self.spacing is not None and sizes is not None:
            ratios = [t / s for t, s in zip(self.spacing, sizes, strict=True)]
            if all(abs(r - round(r)) < 1e-3 and round(r) >= 1 for r in ratios):
                factors = tuple(round(r) for r in ratios)
                if any(f > 1 for f in factors):
                    volume = torch.from_numpy(area_downsample(volume.numpy(), factors))
            else:
                resampled = tuple(max(1, round(n / r)) for n, r in zip(oriented, ratios, strict=True))
                shrink = all(r >= 1 for r in ratios)
                volume = _resize(volume, resampled, mode="area" if shrink else "linear")
        pads: tuple[tuple[int, int], ...] = ()
        if self.size_multiple is not None:
            pads = tuple(
                (0, 0) if axis == self.slice_axis else _centred_pad(n, self.size_multiple)
                for axis, n in enumerate(volume.shape[1:])
            )
            volume = F.pad(volume, [p for pair in reversed(pads) for p in pair])
        if self.normalize is not None:
            volume = (volume - self.normalize[0]) / self.normalize[1]
        placement = Placement(spatial, oriented, ornt, inverse, factors, resampled, pads)
        return volume.float(), placement

    def restore(self, probs: Tensor, placement: Placement) -> Tensor:
        """Probabilities ``(K, *prepared grid)`` back on the input's grid ``(K, *spatial)`` (module docstring)."""
        out = probs.detach().to(torch.float64)
        if placement.pads:
            out = out[(slice(None), *(slice(lo, out.shape[1 + a] - hi) for a, (lo, hi) in enumerate(placement.pads)))]
        target = placement.oriented_shape
        if placement.factors is not None and any(f > 1 for f in placement.factors):
            padded = tuple(n * f for n, f in zip(out.shape[1:], placement.factors, strict=True))
            out = _resize(out, padded, mode="linear")[(slice(None), *(slice(0, n) for n in target))]
        elif placement.resampled_shape is not None:
            out = _resize(out, target, mode="linear")
        if placement.inverse_ornt is not None:
            out = _apply_ornt(out, placement.inverse_ornt)
        return (out / out.sum(0, keepdim=True).clamp_min(1e-12)).float()


def _apply_ornt(volume: Tensor, ornt: np.ndarray) -> Tensor:
    """``nibabel.orientations.apply_orientation`` on the spatial axes of ``(C, x, y, z)``."""
    out = volume
    for axis, flip in enumerate(ornt[:, 1]):
        if flip == -1:
            out = out.flip(1 + axis)
    order = [0] + [1 + int(np.nonzero(ornt[:, 0] == a)[0][0]) for a in range(3)]
    return out.permute(order).contiguous()


def _centred_pad(size: int, multiple: int) -> tuple[int, int]:
    extra = -(-size // multiple) * multiple - size
    return extra // 2, extra - extra // 2


def _resize(volume: Tensor, size: Sequence[int], *, mode: str) -> Tensor:
    dims = len(size)
    if tuple(volume.shape[1:]) == tuple(size):
        return volume
    if mode == "area":
        return F.interpolate(volume[None], size=tuple(size), mode="area")[0]
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[dims]
    return F.interpolate(volume[None], size=tuple(size), mode=linear, align_corners=False)[0]
