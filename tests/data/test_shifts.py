"""Tests of softlabels.data.shifts against float64 NumPy references and the properties every shift must keep."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import legendre

from softlabels.data.shifts import SHIFT_KINDS, SHIFT_SEVERITIES, Shift, parse_shifts, shift_images

RANDOM_KINDS = ("bias_field", "noise")


def phantom(n: int, spatial: tuple[int, ...], *, seed: int = 0, channels: int = 1) -> torch.Tensor:
    """Bright disks/balls on a dark background with a little noise: (n, channels, *spatial), float64, in [0, 1]."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in spatial], indexing="ij")
    out = np.empty((n, channels, *spatial))
    for i in range(n):
        for c in range(channels):
            img = np.full(spatial, 0.2)
            for _ in range(2):
                centre = rng.uniform(-0.5, 0.5, len(spatial))
                dist = np.sqrt(sum((g - m) ** 2 for g, m in zip(grids, centre, strict=True)))
                img[dist < rng.uniform(0.15, 0.35)] += 0.5
            out[i, c] = img + rng.normal(0, 0.03, spatial)
    return torch.from_numpy(out)


CONVENTIONS = {
    "unit": lambda x: x,
    "zscore": lambda x: (x - x.mean()) / x.std(),
    "ct": lambda x: x * 1400.0 - 1000.0,
}


@pytest.fixture(scope="module")
def images2d() -> torch.Tensor:
    return phantom(6, (24, 24), seed=1).float()


@pytest.fixture(scope="module")
def images3d() -> torch.Tensor:
    return phantom(2, (12, 14, 16), seed=2, channels=2).float()


# --- identity, shape, dtype, input untouched -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SHIFT_KINDS)
def test_severity_zero_is_an_identity_copy(kind, images2d):
    out = shift_images(images2d, kind, 0, seed=3)
    assert torch.equal(out, images2d)
    assert out.data_ptr() != images2d.data_ptr()


@pytest.mark.parametrize("kind", SHIFT_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spatial", [(20, 18), (8, 10, 12)])
def test_shape_dtype_type_kept_input_untouched_finite(kind, dtype, spatial):
    images = phantom(3, spatial, channels=2).to(dtype)
    before = images.clone()
    out = shift_images(images, kind, 5, seed=0)
    assert type(out) is torch.Tensor  # not a MONAI MetaTensor
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert torch.equal(images, before)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, images)


@pytest.mark.parametrize("kind", SHIFT_KINDS)
def test_constant_images_and_empty_batches_stay_finite(kind):
    constant = torch.full((2, 1, 16, 16), 3.5)
    out = shift_images(constant, kind, 5)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, constant, atol=1e-5)  # no spread to be relative to: nothing changes
    empty = torch.empty(0, 1, 8, 8)
    assert shift_images(empty, kind, 3).shape == empty.shape


def test_gradient_is_not_carried():
    images = phantom(2, (8, 8)).requires_grad_()
    for kind in SHIFT_KINDS:
        assert not shift_images(images, kind, 2).requires_grad


# --- determinism and the per-case seed -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SHIFT_KINDS)
def test_same_seed_same_result_and_per_case_seeds(kind, images3d):
    first = shift_images(images3d, kind, 4, seed=7)
    assert torch.equal(first, shift_images(images3d, kind, 4, seed=7))
    # case i depends on (seed, first_case + i) only: shifting batch by batch equals shifting at once
    parts = [shift_images(images3d[i : i + 1], kind, 4, seed=7, first_case=i) for i in range(len(images3d))]
    assert torch.allclose(torch.cat(parts), first, atol=1e-6)
    other = shift_images(images3d, kind, 4, seed=8)
    assert torch.equal(other, first) == (kind not in RANDOM_KINDS)


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_cases_draw_different_randomness(kind):
    same = phantom(1, (16, 16)).repeat(3, 1, 1, 1)
    out = shift_images(same, kind, 3, seed=0)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_no_global_random_state_used_or_changed(kind, images2d):
    np.random.seed(0)
    torch.manual_seed(0)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    first = shift_images(images2d, kind, 3, seed=1)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.random.seed(99)
    torch.manual_seed(99)
    assert torch.equal(shift_images(images2d, kind, 3, seed=1), first)


# --- severity and relative parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SHIFT_KINDS)
@pytest.mark.parametrize("spatial", [(32, 32), (12, 14, 16)])
def test_mean_absolute_change_grows_with_severity(kind, spatial):
    images = phantom(4, spatial, seed=5)
    changes = [(shift_images(images, kind, s, seed=2) - images).abs().mean().item() for s in range(6)]
    assert changes[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(changes)), changes


@pytest.mark.parametrize("kind", ["noise", "bias_field"])
def test_random_change_grows_case_by_case(kind, images2d):
    """The draws do not depend on the severity, so every voxel's change grows (not only the mean)."""
    changes = [(shift_images(images2d.double(), kind, s, seed=4) - images2d.double()).abs() for s in range(1, 6)]
    for low, high in itertools.pairwise(changes):
        assert (high >= low - 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(SHIFT_KINDS),
    severity=st.integers(1, 5),
    seed=st.integers(0, 2**31),
    scale=st.floats(0.01, 1000.0),
    offset=st.floats(-3000.0, 3000.0),
    three_d=st.booleans(),
)
def test_every_shift_is_relative_to_the_image_statistics(kind, severity, seed, scale, offset, three_d):
    """shift(a·x + b) = a·shift(x) + b: a severity means the same on [0, 1], z-scored and CT-like intensities."""
    images = phantom(2, (6, 8, 10) if three_d else (16, 12), seed=seed % 97)
    direct = shift_images(images * scale + offset, kind, severity, seed=seed)
    mapped = shift_images(images, kind, severity, seed=seed) * scale + offset
    # float32 resampling (resolution) and AdjustContrast's 1e-7 range guard bound the agreement
    atol = 1e-4 * scale + 1e-9 * abs(offset)
    assert torch.allclose(direct, mapped, rtol=0, atol=atol), (direct - mapped).abs().max().item()


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_intensity_against_reference(convention, severity, images3d):
    images = CONVENTIONS[convention](images3d.double())
    scale, offset = SHIFT_SEVERITIES["intensity"][severity - 1]
    out = shift_images(images, "intensity", severity).numpy()
    x = images.numpy()
    axes = (2, 3, 4)
    mu, sigma = x.mean(axis=axes, keepdims=True), x.std(axis=axes, keepdims=True)
    np.testing.assert_allclose(out, mu + scale * (x - mu) + offset * sigma, rtol=1e-10, atol=1e-9 * np.abs(x).max())
    np.testing.assert_allclose(out.std(axis=axes), scale * sigma[..., 0, 0, 0], rtol=1e-9)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_contrast_is_gamma_on_the_rescaled_channel(severity, images3d):
    images = CONVENTIONS["ct"](images3d.double())
    gamma = SHIFT_SEVERITIES["contrast"][severity - 1]
    out = shift_images(images, "contrast", severity).numpy()
    x = images.numpy()
    low = x.min(axis=(2, 3, 4), keepdims=True)
    span = x.max(axis=(2, 3, 4), keepdims=True) - low
    np.testing.assert_allclose(out, low + span * ((x - low) / span) ** gamma, rtol=0, atol=1e-5 * span.max())
    assert gamma > 1 and (out <= x + 1e-9).all()  # γ > 1 darkens: every voxel moves down, extremes stay


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_noise_has_the_tabled_fraction_of_each_channel_std(convention):
    images = CONVENTIONS[convention](phantom(8, (48, 48), channels=2, seed=3))
    images[:, 1] *= 10.0  # channels on different scales get noise on their own scale
    fraction = SHIFT_SEVERITIES["noise"][3 - 1]
    noise = (shift_images(images, "noise", 3, seed=5) - images).numpy()
    sigma = images.numpy().std(axis=(2, 3))
    ratio = noise.std(axis=(2, 3)) / (fraction * sigma)
    assert np.abs(ratio - 1).max() < 0.1  # 2304 draws per channel: the std's relative error is ~1.5 %
    assert np.abs(noise.mean(axis=(2, 3)) / sigma).max() < 0.1


@pytest.mark.parametrize("spatial", [(24, 20), (10, 12, 14)])
def test_bias_field_multiplies_above_the_minimum_by_one_smooth_field(spatial):
    images = CONVENTIONS["ct"](phantom(2, spatial, channels=2, seed=6))
    coeff = SHIFT_SEVERITIES["bias_field"][4 - 1]
    out = shift_images(images, "bias_field", 4, seed=1).numpy()
    x = images.numpy()
    low = x.reshape(2, 2, -1).min(axis=2).reshape(2, 2, *([1] * len(spatial)))
    valid = (x - low) > 1e-6 * np.abs(x).max()
    log_ratio = np.where(valid, np.log(np.where(valid, out - low, 1.0) / np.where(valid, x - low, 1.0)), np.nan)
    for i in range(2):
        shared = log_ratio[i, 0][valid[i, 0] & valid[i, 1]] - log_ratio[i, 1][valid[i, 0] & valid[i, 1]]
        assert np.abs(shared).max() < 1e-9  # one field per case, shared by the channels
        field = log_ratio[i, 0]
        coords = np.meshgrid(*[np.linspace(-1, 1, s) for s in spatial], indexing="ij")
        mask = valid[i, 0]
        vander = (legendre.legvander2d if len(spatial) == 2 else legendre.legvander3d)(
            *[c[mask] for c in coords], [3] * len(spatial)
        )
        fit, *_ = np.linalg.lstsq(vander, field[mask], rcond=None)
        assert np.abs(vander @ fit - field[mask]).max() < 1e-6  # a degree-3 Legendre polynomial
        n_terms = math.comb(3 + len(spatial), len(spatial))
        assert np.abs(field[mask]).max() <= n_terms * coeff + 1e-9  # |b| ≤ Σ |coefficients|, |P_k| ≤ 1


def test_resolution_is_a_low_pass_that_keeps_constants():
    images = phantom(3, (48, 48), seed=9)
    variation = []
    for severity in range(6):
        out = shift_images(images, "resolution", severity)
        variation.append((out.diff(dim=-1).abs().mean() + out.diff(dim=-2).abs().mean()).item())
        assert torch.allclose(out.mean((2, 3)), images.mean((2, 3)), atol=0.02)  # area averaging keeps the mean
    assert all(b < a for a, b in itertools.pairwise(variation)), variation
    ramp = torch.full((1, 1, 12, 12, 12), -7.0, dtype=torch.float64)
    assert torch.allclose(shift_images(ramp, "resolution", 5), ramp)


def test_severity_tables_are_complete_and_monotone():
    assert set(SHIFT_SEVERITIES) == set(SHIFT_KINDS)
    for kind in SHIFT_KINDS:
        table = SHIFT_SEVERITIES[kind]
        assert len(table) == 5
        if kind == "intensity":
            gains, offsets = zip(*table, strict=True)
            assert list(gains) == sorted(gains, reverse=True) and list(offsets) == sorted(offsets)
        else:
            assert list(table) == sorted(table) and len(set(table)) == 5


# --- validation ----------------------------------------------------------------------------------------------------


def test_shift_images_rejects_bad_arguments(images2d):
    with pytest.raises(ValueError, match=r"`kind` of shift_images .* got 'nois' \(did you mean 'noise'\?\)"):
        shift_images(images2d, "nois", 1)
    for severity in (-1, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match=r"`severity` of shift_images must be an int in 0\.\.5; got"):
            shift_images(images2d, "noise", severity)
    for seed in (-1, 1.5, None):
        with pytest.raises(ValueError, match="`seed` of shift_images"):
            shift_images(images2d, "noise", 1, seed=seed)
    with pytest.raises(ValueError, match=r"`first_case` of shift_images .* got -2"):
        shift_images(images2d, "noise", 1, first_case=-2)
    with pytest.raises(TypeError, match=r"floating-point tensor .* got a torch.int64 tensor"):
        shift_images(torch.zeros(1, 1, 4, 4, dtype=torch.long), "noise", 1)
    with pytest.raises(TypeError, match="got ndarray"):
        shift_images(np.zeros((1, 1, 4, 4)), "noise", 1)
    for shape in [(4, 4), (1, 4, 4), (1, 1, 2, 2, 2, 2)]:
        with pytest.raises(ValueError, match=r"got shape \("):
            shift_images(torch.zeros(shape), "noise", 1)


# --- Shift and parse_shifts ------------------------------------------------------------------------------------------


def test_shift_names_validates_and_calls(images2d):
    shift = Shift("noise", 3)
    assert shift.name == "noise_3" and Shift("bias_field", 0).name == "bias_field_0"
    assert torch.equal(shift(images2d, seed=2, first_case=1), shift_images(images2d, "noise", 3, seed=2, first_case=1))
    assert hash(shift) == hash(Shift("noise", 3)) and shift == Shift("noise", 3)
    with pytest.raises(AttributeError):
        shift.severity = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"`kind` of Shift must be one of .*; got 'blur'"):
        Shift("blur", 1)
    with pytest.raises(ValueError, match=r"`severity` of Shift must be an int in 0\.\.5; got 9"):
        Shift("noise", 9)


def test_parse_shifts_forms_and_round_trip():
    every = parse_shifts({"kinds": list(SHIFT_KINDS), "severities": [1, 2, 3, 4, 5]})
    assert len(every) == 25 and every[0] == Shift("intensity", 1) and every[-1] == Shift("resolution", 5)
    assert parse_shifts([s.name for s in every]) == every
    assert parse_shifts(("bias_field_2", Shift("noise", 0))) == [Shift("bias_field", 2), Shift("noise", 0)]
    assert parse_shifts([]) == [] and parse_shifts({"kinds": [], "severities": [1]}) == []


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("noise_3", "`spec` of parse_shifts must be a list"),
        (3, "`spec` of parse_shifts must be a list"),
        (None, "`spec` of parse_shifts must be a list"),
        (["noise"], r"must name shifts '<kind>_<severity>' .*; got 'noise'"),
        (["noise-3"], "got 'noise-3'"),
        (["noise_x"], "got 'noise_x'"),
        ([3], "got 3"),
        (["nosie_3"], r"did you mean 'noise'\?"),
        (["noise_6"], "`severity` of Shift"),
        (["noise_3", "contrast_1", "noise_3"], "names a shift more than once: noise_3"),
        ({"kinds": ["noise"]}, "exactly the keys 'kinds' and 'severities'"),
        ({"kinds": ["noise"], "severities": [1], "seed": 0}, "exactly the keys"),
        ({"kinds": "noise", "severities": [1]}, r"`spec\['kinds'\]` of parse_shifts must be a list; got 'noise'"),
        ({"kinds": ["noise"], "severities": 3}, r"`spec\['severities'\]`"),
        ({"kinds": ["noise"], "severities": [1, 1]}, "more than once: noise_1"),
        ({"kinds": ["noise"], "severities": ["1"]}, "`severity` of Shift"),
    ],
)
def test_parse_shifts_rejects_anything_else(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_shifts(spec)
