"""Test-time distribution shift at named severities: intensity, contrast, bias field, noise and resolution.

Each kind has severities 1–5 (0 is the identity) whose parameters are in :data:`SHIFT_SEVERITIES`; a shift is named
``"<kind>_<severity>"`` (``"noise_3"``), as in ImageNet-C, so a metric can be reported against severity per method
(Ovadia et al., "Can you trust your model's uncertainty? Evaluating predictive uncertainty under dataset shift",
NeurIPS 2019). The transforms are MONAI's; what this module adds is the parameter table, making every parameter
**relative to each image's own statistics** (per channel: mean ``μ``, standard deviation ``σ``, minimum ``m``, range
``r``), so a severity means the same on z-scored, [0, 1] or CT-like intensities, and per-case determinism.

==========  ========================================  =====================================  =========================
kind        what it does to a channel ``x``           parameter at severity 1, 2, 3, 4, 5    MONAI
==========  ========================================  =====================================  =========================
intensity   ``μ + s·(x − μ) + o·σ``: gain ``s``,      ``(s, o)`` = (0.9, 0.25), (0.8, 0.5),  ScaleIntensity,
            brightness ``o`` standard deviations      (0.7, 0.75), (0.6, 1.0), (0.5, 1.25)   ShiftIntensity
contrast    ``m + r·((x − m)/r)^γ``: gamma on the     ``γ`` = 1.25, 1.5, 2, 3, 4             AdjustContrast
            channel rescaled to [0, 1] and back       (γ > 1: dark tissue darker)
bias_field  ``m + (x − m)·exp(b)``, ``b`` a degree-3  coefficients uniform in ``(−c, c)``,   RandBiasField
            Legendre polynomial field                 ``c`` = 0.15, 0.3, 0.45, 0.6, 0.8
noise       ``x + ε``, ``ε ~ N(0, (f·σ)²)`` i.i.d.    ``f`` = 0.25, 0.5, 1, 1.5, 2           RandGaussianNoise
resolution  area-downsampled by ``k`` on every        ``k`` = 1.5, 2, 3, 4, 6                RandSimulateLowResolution
            spatial axis, (bi/tri)linear back up
==========  ========================================  =====================================  =========================

How strong (measured, two training seeds): on the benchmark's synthetic 48×48 segmentation suite, the small UNet
(instance norm) with Dice 0.97 on clean images keeps 0.95–0.97 at severities 1–2 and falls at severity 5 to about
0.65–0.85 (noise), 0.77–0.79 (bias field), 0.84–0.85 (contrast), 0.86–0.90 (resolution), its NLL rising 2–3×;
the images stay recognisable. ``intensity`` moves it least (0.92–0.95): instance normalisation undoes an affine
intensity change but for the zero padding; the same UNet with batch norm falls to 0.61.

Determinism: case ``i`` of a batch draws from ``numpy.random.default_rng([seed, first_case + i])`` (a ``RandomState``
seeded from it is given to the MONAI transform), so a case's shift depends on its seed and index only, never on the
global random state or on the other cases. The bias field is one field per case, shared by its channels (one coil);
noise is drawn per channel. The draws do not depend on the severity, so the change grows with the severity case by
case (the noise and the bias-field exponent scale linearly in ``f`` and ``c``). Every kind is equivariant to a
positive affine rescaling of the intensities: ``shift(a·x + b) = a·shift(x) + b`` for ``a > 0``.

The resolution change runs in float32 (MONAI's interpolation does), on each channel minus its mean, and is cast back
to the input dtype.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.transforms import (
    AdjustContrast,
    RandBiasField,
    RandGaussianNoise,
    RandSimulateLowResolution,
    ScaleIntensity,
    ShiftIntensity,
)
from monai.utils import convert_to_tensor
from numpy.random import RandomState, default_rng
from torch import Tensor

from softlabels._options import look_up_option

__all__ = ["SHIFT_KINDS", "SHIFT_SEVERITIES", "Shift", "parse_shifts", "shift_images"]

SHIFT_KINDS: tuple[str, ...] = ("intensity", "contrast", "bias_field", "noise", "resolution")
"""The kinds of shift, in report order.

Example:
    >>> SHIFT_KINDS
    ('intensity', 'contrast', 'bias_field', 'noise', 'resolution')
"""

_INTENSITY: tuple[tuple[float, float], ...] = ((0.9, 0.25), (0.8, 0.5), (0.7, 0.75), (0.6, 1.0), (0.5, 1.25))
_CONTRAST: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 4.0)
_BIAS_FIELD: tuple[float, ...] = (0.15, 0.3, 0.45, 0.6, 0.8)
_NOISE: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0)
_RESOLUTION: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 6.0)

SHIFT_SEVERITIES: dict[str, tuple[float | tuple[float, float], ...]] = {
    "intensity": _INTENSITY,
    "contrast": _CONTRAST,
    "bias_field": _BIAS_FIELD,
    "noise": _NOISE,
    "resolution": _RESOLUTION,
}
"""The parameter of each kind at severities 1–5 (index ``severity − 1``); the module docstring says what each means.

Example:
    >>> SHIFT_SEVERITIES["noise"][3 - 1]  # noise_3: a standard deviation of the image's own
    1.0
    >>> all(len(SHIFT_SEVERITIES[k]) == 5 for k in SHIFT_KINDS)
    True
"""

_MAX_SEVERITY = 5
_BIAS_DEGREE = 3
_NAME = re.compile(r"^(?P<kind>[a-z_]+)_(?P<severity>\d+)$")


def _check_int(value: object, name: str, where: str, low: int, high: int | None = None) -> int:
    bad = isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high)
    if bad:
        allowed = f"an int in {low}..{high}" if high is not None else f"an int ≥ {low}"
        raise ValueError(f"`{name}` of {where} must be {allowed}; got {value!r}.")
    return value  # type: ignore[return-value]


def _check_images(images: object, where: str) -> Tensor:
    if not isinstance(images, Tensor) or not images.is_floating_point():
        got = f"a {images.dtype} tensor" if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"`images` of {where} must be a floating-point tensor (N, C, *spatial); got {got}.")
    if images.ndim not in (4, 5):
        raise ValueError(
            f"`images` of {where} must be (N, C, H, W) or (N, C, D, H, W); got shape {tuple(images.shape)}."
        )
    return images.detach()


def _plain(image: object) -> Tensor:
    """A MONAI output (maybe a ``MetaTensor``) as a plain tensor."""
    out: Tensor = convert_to_tensor(image, track_meta=False)
    return out


def _channel_stats(image: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel standard deviation and mean of one image ``(C, *spatial)``, float64, each ``(C,)``."""
    flat = image.reshape(image.shape[0], -1).double()
    return torch.std_mean(flat, dim=1, correction=0)


def _intensity(image: Tensor, params: tuple[float, float], state: RandomState | None) -> Tensor:
    scale, offset = params
    std, mean = _channel_stats(image)
    gain = ScaleIntensity(minv=None, maxv=None, factor=scale - 1.0, dtype=None)
    channels = [
        ShiftIntensity(offset=float((1.0 - scale) * mu + offset * sigma))(gain(image[c : c + 1]))
        for c, (mu, sigma) in enumerate(zip(mean.tolist(), std.tolist(), strict=True))
    ]
    return torch.cat([_plain(x) for x in channels])


def _contrast(image: Tensor, gamma: float, state: RandomState | None) -> Tensor:
    adjust = AdjustContrast(gamma=gamma)
    return torch.cat([_plain(adjust(image[c : c + 1])) for c in range(image.shape[0])])


def _bias_field(image: Tensor, coeff: float, state: RandomState | None) -> Tensor:
    field = RandBiasField(degree=_BIAS_DEGREE, coeff_range=(-coeff, coeff), dtype=None, prob=1.0)
    field.set_random_state(state=state)
    shape = (image.shape[0],) + (1,) * (image.ndim - 1)
    low = image.reshape(image.shape[0], -1).amin(dim=1).reshape(shape)
    return _plain(field(image - low)) + low


def _noise(image: Tensor, fraction: float, state: RandomState | None) -> Tensor:
    std, _ = _channel_stats(image)
    channels = []
    for c, sigma in enumerate(std.tolist()):
        noise = RandGaussianNoise(prob=1.0, mean=0.0, std=fraction * sigma, dtype=None, sample_std=False)
        noise.set_random_state(state=state)
        channels.append(_plain(noise(image[c : c + 1])))
    return torch.cat(channels)


def _resolution(images: Tensor, factor: float) -> Tensor:
    """The whole batch at once: the same deterministic resampling for every channel of every case.

    MONAI resamples in float32; each channel is centred on its mean first (resampling keeps constants), so the
    float32 rounding is relative to the channel's spread, not to an offset such as CT's −1000.
    """
    n, c, *spatial = images.shape
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    zoom = 1.0 / factor
    low = RandSimulateLowResolution(prob=1.0, downsample_mode="area", upsample_mode=mode, zoom_range=(zoom, zoom))
    low.set_random_state(seed=0)  # prob 1 and a one-point zoom range: nothing is random, but keep off shared state
    mean = images.mean(dim=tuple(range(2, images.ndim)), keepdim=True)
    out = _plain(low((images - mean).reshape(n * c, *spatial)))
    return out.reshape(images.shape).to(images.dtype) + mean


_PER_CASE: dict[str, Callable[[Tensor, Any, RandomState | None], Tensor]] = {
    "intensity": _intensity,
    "contrast": _contrast,
    "bias_field": _bias_field,
    "noise": _noise,
}
_RANDOM = ("bias_field", "noise")


def _case_state(seed: int, case: int) -> RandomState:
    return RandomState(int(default_rng([seed, case]).integers(0, 2**32)))


def shift_images(images: Tensor, kind: str, severity: int, *, seed: int = 0, first_case: int = 0) -> Tensor:
    """Apply the shift ``kind`` at ``severity`` to a batch of images, each relative to its own statistics.

    The formulas and parameters are in the module docstring (:data:`SHIFT_SEVERITIES`); severity 0 is the identity.
    Case ``i`` of the batch draws its randomness (bias field, noise) from ``default_rng([seed, first_case + i])``
    only, so a split shifted batch by batch (``first_case`` = the index of the batch's first case) equals the split
    shifted at once. Follows the severity protocol of Ovadia et al. (NeurIPS 2019).

    Args:
        images: ``(N, C, H, W)`` or ``(N, C, D, H, W)``, floating point.
        kind: one of :data:`SHIFT_KINDS`.
        severity: 0–5.
        seed: ≥ 0; the same seed gives the same shifted images.
        first_case: ≥ 0, the index of ``images[0]`` in the whole split.

    Returns:
        A new tensor of the same shape, dtype and device, without gradient; ``images`` is left untouched.

    Raises:
        TypeError: ``images`` is not a floating-point tensor.
        ValueError: an unknown ``kind``; a severity outside 0–5; a bad shape, seed or ``first_case``.

    Example:
        >>> images = torch.rand(4, 1, 16, 16)
        >>> noisy = shift_images(images, "noise", 3, seed=0)
        >>> noisy.shape == images.shape, torch.equal(noisy, shift_images(images, "noise", 3, seed=0))
        (True, True)
        >>> torch.equal(noisy[2:], shift_images(images[2:], "noise", 3, seed=0, first_case=2))
        True
        >>> torch.equal(shift_images(images, "contrast", 0), images)
        True
    """
    where = "shift_images"
    kind = look_up_option("kind", kind, SHIFT_KINDS, where=where)
    severity = _check_int(severity, "severity", where, 0, _MAX_SEVERITY)
    images = _check_images(images, where)
    seed = _check_int(seed, "seed", where, 0)
    first_case = _check_int(first_case, "first_case", where, 0)
    if severity == 0 or images.shape[0] == 0:
        return images.clone()
    param = SHIFT_SEVERITIES[kind][severity - 1]
    if kind == "resolution":
        return _resolution(images, float(param))  # type: ignore[arg-type]
    transform = _PER_CASE[kind]
    out = torch.empty_like(images)
    for i in range(images.shape[0]):
        state = _case_state(seed, first_case + i) if kind in _RANDOM else None
        out[i] = transform(images[i], param, state)
    return out


@dataclass(frozen=True)
class Shift:
    """One named test-time shift, ``kind`` at ``severity``: a callable on image batches (see :func:`shift_images`).

    Args:
        kind: one of :data:`SHIFT_KINDS`.
        severity: 0–5 (0: the identity).

    Raises:
        ValueError: an unknown kind or a severity outside 0–5.

    Example:
        >>> shift = Shift("bias_field", 2)
        >>> shift.name
        'bias_field_2'
        >>> images = torch.rand(2, 1, 8, 8, 8)
        >>> torch.equal(shift(images, seed=1), shift_images(images, "bias_field", 2, seed=1))
        True
    """

    kind: str
    severity: int

    def __post_init__(self) -> None:
        look_up_option("kind", self.kind, SHIFT_KINDS, where="Shift")
        _check_int(self.severity, "severity", "Shift", 0, _MAX_SEVERITY)

    @property
    def name(self) -> str:
        """``"<kind>_<severity>"``, e.g. ``"noise_3"``; :func:`parse_shifts` reads it back."""
        return f"{self.kind}_{self.severity}"

    def __call__(self, images: Tensor, *, seed: int = 0, first_case: int = 0) -> Tensor:
        """Shift ``images`` ``(N, C, *spatial)``: ``shift_images(images, kind, severity, seed=..., first_case=...)``."""
        return shift_images(images, self.kind, self.severity, seed=seed, first_case=first_case)


def _from_name(name: object, where: str) -> Shift:
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"`spec` of {where} must name shifts '<kind>_<severity>' (e.g. 'noise_3'); got {name!r}.")
    return Shift(match["kind"], int(match["severity"]))


def _from_mapping(spec: Mapping[Any, Any], where: str) -> list[Shift]:
    if set(spec) != {"kinds", "severities"}:
        raise ValueError(
            f"`spec` of {where}, a mapping, must have exactly the keys 'kinds' and 'severities'; got {spec!r}."
        )
    kinds, severities = spec["kinds"], spec["severities"]
    for key, value in (("kinds", kinds), ("severities", severities)):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValueError(f"`spec['{key}']` of {where} must be a list; got {value!r}.")
    return [Shift(k, s) for k, s in itertools.product(kinds, severities)]


def parse_shifts(spec: object) -> list[Shift]:
    """Read the shifts of a config value: a list of names, or a mapping whose kinds × severities are all taken.

    Accepted forms: ``["noise_3", "bias_field_5"]`` (names ``"<kind>_<severity>"``, or :class:`Shift` objects), or
    ``{"kinds": [...], "severities": [...]}`` (every kind at every severity, kinds outer). Duplicates are refused.

    Args:
        spec: the config value.

    Returns:
        The shifts, in the order given.

    Raises:
        ValueError: any other form, an unknown kind, a severity outside 0–5, or a repeated shift.

    Example:
        >>> [s.name for s in parse_shifts({"kinds": ["noise", "contrast"], "severities": [1, 5]})]
        ['noise_1', 'noise_5', 'contrast_1', 'contrast_5']
        >>> parse_shifts(["resolution_2"])
        [Shift(kind='resolution', severity=2)]
    """
    where = "parse_shifts"
    if isinstance(spec, Mapping):
        shifts = _from_mapping(spec, where)
    elif isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
        shifts = [s if isinstance(s, Shift) else _from_name(s, where) for s in spec]
    else:
        raise ValueError(
            f"`spec` of {where} must be a list of '<kind>_<severity>' names or a mapping "
            f"{{'kinds': [...], 'severities': [...]}}; got {spec!r}."
        )
    names = [s.name for s in shifts]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"`spec` of {where} names a shift more than once: {', '.join(repeated)}.")
    return shifts
