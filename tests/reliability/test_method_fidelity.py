"""The registry's defaults against the authors' code: each test re-implements the official formula in float64.

The references below are written from the authors' code (the papers of ``docs/methods.md`` §2.1 OLS, §2.2 Tf-KD,
§3.1 SVLS, §3.2 NACL and their repositories), in plain NumPy / torch, without calling ``softlabels``:

- Tf-KD_reg (``loss_kd_regularization``; the OLS repo's ``tf_kd_loss``): a virtual teacher ``(1 − a)/(C − 1)``
  everywhere and ``a`` at the label, softened by ``softmax(· / T)``; ``(1 − α)·CE + α·m·nn.KLDivLoss()(log_softmax(z),
  t)`` with PyTorch's default ``reduction="mean"`` (÷ N·C, every element);
- Tf-KD_self (``loss_kd_self``): ``(1 − α)·CE + α·T²·m·nn.KLDivLoss()(log_softmax(z/T), softmax(z_teacher/T))``;
- OLS, fine-grained solver: per class, an empty class resets to uniform first, then a frozen row (max >= 0.88) is
  kept, else ``S[c] = A[c]/n[c]``;
- SVLS / NACL's Gaussian option: a Gaussian normalised to 1, its centre replaced by ``1 − g_centre``, divided by its
  sum, a depthwise convolution with replicate padding; NACL adds ``λ · mean_{n,c,s} |τ − z|`` to the mean CE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import NACLLoss as MonaiNACLLoss

from softlabels.losses import NACLLoss
from softlabels.methods import create_method
from softlabels.targets import OnlineLabelSmoother, svls

Tensor = torch.Tensor

# --- independent references -----------------------------------------------------------------------------------------


def log_softmax64(z: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def mean_ce64(z: np.ndarray, y: np.ndarray) -> float:
    """``F.cross_entropy(z, y)`` (mean over items/voxels) in float64."""
    logp = np.take_along_axis(log_softmax64(z), y[:, None].astype(np.int64), axis=1)
    return float(-logp.mean())


def kl_div_mean64(log_q: np.ndarray, t: np.ndarray) -> float:
    """PyTorch's ``nn.KLDivLoss()`` (``reduction="mean"``): ``Σ t (log t − log q)`` over EVERY element ÷ their count."""
    return float((t * (np.log(t) - log_q)).sum() / t.size)


def official_tfkd_reg(z: np.ndarray, y: np.ndarray, alpha: float, temperature: float, a: float, m: float) -> float:
    c = z.shape[1]
    teacher_soft = np.full(z.shape, (1.0 - a) / (c - 1))
    np.put_along_axis(teacher_soft, y[:, None].astype(np.int64), a, axis=1)
    shifted = teacher_soft / temperature
    t = np.exp(shifted - shifted.max(1, keepdims=True))
    t /= t.sum(1, keepdims=True)
    return (1 - alpha) * mean_ce64(z, y) + alpha * m * kl_div_mean64(log_softmax64(z), t)


def official_tfkd_self(z: np.ndarray, y: np.ndarray, z_teacher: np.ndarray, alpha: float, temp: float, m: float):
    t = np.exp(log_softmax64(z_teacher / temp))
    return (1 - alpha) * mean_ce64(z, y) + alpha * kl_div_mean64(log_softmax64(z / temp), t) * temp * temp * m


def official_ols_update(soft: np.ndarray, sums: np.ndarray, counts: np.ndarray, freeze_at: float | None, keep: bool):
    """The fine-grained solver's end-of-epoch loop, class by class (``keep``: our ``empty_class_policy="keep"``)."""
    num_classes = soft.shape[0]
    out = soft.copy()
    for c in range(num_classes):
        if counts[c] == 0:
            if not keep:
                out[c] = 1.0 / num_classes  # reset to uniform, frozen or not
        elif freeze_at is not None and soft[c].max() >= freeze_at:
            pass  # frozen
        else:
            out[c] = sums[c] / counts[c]
    return out


def gaussian(dims: int, sigma: float, k: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``exp(−‖o‖² / 2σ²)`` on the ``k^d`` offsets, normalised to sum 1."""
    axis = torch.arange(k, dtype=dtype) - k // 2
    grids = torch.meshgrid(*[axis] * dims, indexing="ij")
    squared = sum(g * g for g in grids)
    g = torch.exp(-squared / (2 * sigma * sigma))
    return g / g.sum()


def official_svls_kernel(
    dims: int, sigma: float, k: int, dtype: torch.dtype = torch.float64, centre: tuple[int, ...] | None = None
) -> Tensor:
    """Gaussian normalised to 1; the centre := 1 − g read at ``centre`` (default ``k//2``); divided by the sum."""
    g = gaussian(dims, sigma, k, dtype)
    read_at = centre if centre is not None else (k // 2,) * dims
    g[(k // 2,) * dims] = 1 - g[read_at]
    return g / g.sum()


def conv_replicate(x: Tensor, kernel: Tensor) -> Tensor:
    """Depthwise convolution ``(N, C, *S)`` with a ``k^d`` kernel, replicate padding of ``k//2`` (float64)."""
    dims, r, c = kernel.ndim, kernel.shape[0] // 2, x.shape[1]
    padded = F.pad(x, [r] * (2 * dims), mode="replicate")
    weight = kernel.to(x.dtype).expand(c, 1, *kernel.shape).contiguous()
    return (F.conv2d if dims == 2 else F.conv3d)(padded, weight, groups=c)


def one_hot64(labels: Tensor, num_classes: int) -> Tensor:
    return F.one_hot(labels, num_classes).movedim(-1, 1).double()


# --- Tf-KD ----------------------------------------------------------------------------------------------------------

TFKD_CASES = [(c, shape) for c in (2, 3, 10, 100) for shape in ((16,), (3, 5, 4))]


def _inputs(num_classes: int, shape: tuple[int, ...], seed: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(shape[0], num_classes, *shape[1:], generator=g)).to(dtype)
    return logits, torch.randint(0, num_classes, shape, generator=g)


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float32, 1e-6), (torch.float64, 1e-10)])
@pytest.mark.parametrize(("num_classes", "shape"), TFKD_CASES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tfkd_registry_default_is_the_official_loss(num_classes, shape, seed, dtype, rtol):
    logits, labels = _inputs(num_classes, shape, seed, dtype)
    method = create_method("tfkd", num_classes)
    got = float(method(logits, method.make_target({"label": labels})))
    expected = official_tfkd_reg(logits.double().numpy(), labels.numpy(), 0.95, 40.0, 0.99, 1.0)
    assert got == pytest.approx(expected, rel=rtol, abs=0)


@pytest.mark.parametrize(("num_classes", "shape"), TFKD_CASES, ids=str)
def test_tfkd_batchmean_is_c_times_the_official_kl_term(num_classes, shape):
    logits, labels = _inputs(num_classes, shape, 3, torch.float64)
    z, y = logits.numpy(), labels.numpy()
    batch = {"label": labels}
    for alpha, temperature in ((0.95, 40.0), (0.5, 6.0)):
        mean = create_method("tfkd", num_classes, alpha=alpha, temperature=temperature)
        batchmean = create_method("tfkd", num_classes, alpha=alpha, temperature=temperature, kl_reduction="batchmean")
        ce_part = (1 - alpha) * mean_ce64(z, y)
        kl_part = official_tfkd_reg(z, y, alpha, temperature, 0.99, 1.0) - ce_part
        assert float(mean(logits, mean.make_target(batch))) - ce_part == pytest.approx(kl_part, rel=1e-9)
        got = float(batchmean(logits, batchmean.make_target(batch))) - ce_part
        assert got == pytest.approx(num_classes * kl_part, rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_classes", [2, 5, 10])
@pytest.mark.parametrize("temperature", [1.0, 6.0, 20.0])
def test_tfkd_self_registry_default_is_the_official_loss(num_classes, temperature, dtype):
    # T² = 400 amplifies the float32 rounding of log_softmax(z/T): PyTorch's own float32 run of the official line
    # is off by a few 1e-6 (relative) at T = 20 on these inputs, as ours
    rtol = 1e-10 if dtype == torch.float64 else (1e-5 if temperature > 6 else 1e-6)
    g = torch.Generator().manual_seed(num_classes)
    teacher = torch.nn.Linear(3, num_classes).to(dtype)
    image = torch.randn(12, 3, generator=g).to(dtype)
    logits = (2 * torch.randn(12, num_classes, generator=g)).to(dtype)
    labels = torch.randint(0, num_classes, (12,), generator=g)
    method = create_method("tfkd_self", num_classes, temperature=temperature, multiplier=2.0, teacher=teacher)
    got = float(method(logits, method.make_target({"label": labels, "image": image})))
    with torch.no_grad():
        z_teacher = teacher(image).double().numpy()  # the teacher's logits as the method computes them
    expected = official_tfkd_self(logits.double().numpy(), labels.numpy(), z_teacher, 0.95, temperature, 2.0)
    assert got == pytest.approx(expected, rel=rtol, abs=0)
    batchmean = create_method(
        "tfkd_self", num_classes, temperature=temperature, multiplier=2.0, teacher=teacher, kl_reduction="batchmean"
    )
    ce_part = 0.05 * mean_ce64(logits.double().numpy(), labels.numpy())
    got = float(batchmean(logits, batchmean.make_target({"label": labels, "image": image}))) - ce_part
    assert got == pytest.approx(num_classes * (expected - ce_part), rel=max(rtol, 1e-6) * 10)


# --- OLS ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["uniform", "keep"])
@pytest.mark.parametrize("seed", range(5))
def test_ols_update_is_the_official_per_class_loop_over_epochs(seed, policy):
    num_classes, freeze_at = 5, 0.88
    rng = np.random.default_rng(seed)
    ols = OnlineLabelSmoother(num_classes, freeze_at=freeze_at, empty_class_policy=policy)
    expected = np.full((num_classes, num_classes), 1.0 / num_classes)
    for _ in range(8):
        counts = rng.integers(0, 4, num_classes) * (rng.random(num_classes) < 0.7)  # some classes empty
        logits = 6 * rng.standard_normal((num_classes, num_classes))  # sharp rows: some reach 0.88 and freeze
        rows = np.exp(logits - logits.max(1, keepdims=True))
        sums = counts[:, None] * rows / rows.sum(1, keepdims=True)
        ols.sums.copy_(torch.from_numpy(sums))
        ols.counts.copy_(torch.from_numpy(counts))
        ols.update()
        expected = official_ols_update(expected, sums, counts, freeze_at, keep=policy == "keep")
        np.testing.assert_allclose(ols.soft_labels.numpy(), expected, rtol=1e-15, atol=0)


def test_ols_frozen_row_of_an_empty_class_resets_to_uniform_and_is_updatable_again():
    ols = OnlineLabelSmoother(3, freeze_at=0.88)
    sharp = torch.tensor([0.95, 0.03, 0.02], dtype=torch.float64)
    epochs = [  # (sums of class 0, count of class 0)
        (2 * sharp, 2),  # epoch 1: row 0 = sharp, max 0.95 >= 0.88: frozen
        (torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), 1),  # epoch 2: frozen, kept
        (torch.zeros(3, dtype=torch.float64), 0),  # epoch 3: no correct prediction: reset to uniform (unfreezes)
        (torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64), 1),  # epoch 4: updatable again
    ]
    expected = np.full((3, 3), 1 / 3)
    rows = []
    for sums, count in epochs:
        ols.sums[0], ols.counts[0] = sums, count
        ols.sums[1:], ols.counts[1:] = torch.tensor([0.1, 0.8, 0.1], dtype=torch.float64), 1
        expected = official_ols_update(expected, ols.sums.numpy().copy(), ols.counts.numpy().copy(), 0.88, False)
        ols.update()
        rows.append(ols.soft_labels[0].clone())
        np.testing.assert_allclose(ols.soft_labels.numpy(), expected, rtol=1e-15)
    torch.testing.assert_close(rows[1], sharp)
    torch.testing.assert_close(rows[2], torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(rows[3], torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64))


# --- SVLS -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("shape", [(2, 7, 6), (1, 4, 5, 6)], ids=str)
def test_svls_k3_is_the_official_recipe(shape, sigma):
    labels = torch.randint(0, 4, shape, generator=torch.Generator().manual_seed(int(10 * sigma)))
    kernel = official_svls_kernel(len(shape) - 1, sigma, 3)
    expected = conv_replicate(one_hot64(labels, 4), kernel)
    got = svls(labels, 4, sigma, 3)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("sigma", "k"), [(1.0, 5), (0.05, 3), (0.05, 5), (1e-3, 3)])
@pytest.mark.parametrize("dims", [2, 3])
def test_svls_stays_a_distribution_with_centre_half_where_the_official_recipe_breaks(sigma, k, dims):
    size = 2 * k + 1
    labels = torch.zeros((1,) + (size,) * dims, dtype=torch.long)
    centre = (0,) + (size // 2,) * dims
    labels[centre] = 1  # an isolated voxel: its own class gets exactly the centre weight of the kernel
    got = svls(labels, 2, sigma, k)
    assert bool(torch.isfinite(got).all()) and bool((got >= 0).all())
    torch.testing.assert_close(got.sum(1), torch.ones_like(got[:, 0]), rtol=0, atol=1e-6)
    assert got[(0, 1, *centre[1:])].item() == pytest.approx(0.5, abs=1e-7)
    kernel = official_svls_kernel(dims, sigma, k)  # float64, centre at k//2: the recipe as meant
    if sigma >= 0.5:
        torch.testing.assert_close(got[0, 1].double(), conv_replicate(one_hot64(labels, 2), kernel)[0, 1], atol=1e-6,
                                   rtol=0)  # fmt: skip
    # the official code: float32, and the neighbour sum read at [1, 1(, 1)], the centre only for k = 3
    official = official_svls_kernel(dims, sigma, k, torch.float32, centre=(1,) * dims)
    centre_weight = official[(k // 2,) * dims]
    assert not math.isclose(float(centre_weight), 0.5, abs_tol=1e-3)  # NaN (0/0) for a tiny σ, or not 0.5 for k = 5


def test_svls_tiny_sigma_official_float32_kernel_is_nan_or_identity():
    """σ = 0.05: g_centre rounds to 1 in float32, the neighbour sum ``1 − g_centre`` is 0."""
    official = official_svls_kernel(2, 0.05, 3, torch.float32)
    assert bool(torch.isnan(official).all())  # divided by its sum, 0
    g = gaussian(2, 0.05, 3, torch.float32)
    assert g[1, 1].item() == 1.0
    neighbours = (1 - g[1, 1]) + 1e-16  # with a 1e-16 guard against the division by 0
    guarded = g.clone()
    guarded[1, 1] = neighbours
    guarded = guarded / neighbours
    assert guarded[1, 1].item() == 1.0 and guarded.sum().item() == 1.0  # the identity: no smoothing at all


# --- NACL -----------------------------------------------------------------------------------------------------------


def official_nacl(logits: Tensor, labels: Tensor, kernel: Tensor, lambda_nacl: float) -> float:
    z = logits.double()
    tau = conv_replicate(one_hot64(labels, z.shape[1]), kernel)
    ce = F.cross_entropy(z, labels)
    return float(ce + lambda_nacl * (tau - z).abs().mean())


@pytest.mark.parametrize(("k", "sigma"), [(3, 0.5), (3, 1.0), (3, 2.0), (5, 1.0)])
@pytest.mark.parametrize("shape", [(2, 3, 8, 7), (1, 4, 4, 5, 6)], ids=str)
@pytest.mark.parametrize("seed", [0, 1])
def test_nacl_gaussian_is_the_authors_svls_kernel_with_replicate_padding(shape, k, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(shape, generator=g)
    labels = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    expected = official_nacl(logits, labels, official_svls_kernel(len(shape) - 2, sigma, k), 0.1)
    loss = NACLLoss(kernel="gaussian", kernel_size=k, sigma=sigma)
    assert float(loss(logits, labels)) == pytest.approx(expected, rel=1e-6, abs=0)
    method = create_method("nacl", shape[1], kernel="gaussian", kernel_size=k, sigma=sigma)
    assert float(method(logits, method.make_target({"label": labels}))) == pytest.approx(expected, rel=1e-6, abs=0)
    assert method.params["padding"] == "replicate"


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
@pytest.mark.parametrize(("shape", "lambda_nacl"), [((2, 3, 12, 11), 0.1), ((1, 4, 6, 7, 8), 0.3)], ids=str)
@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_nacl_gaussian_monai_is_monai_nacl_loss(shape, lambda_nacl, sigma, distance):
    g = torch.Generator().manual_seed(int(10 * sigma))
    logits = 2 * torch.randn(shape, generator=g)
    labels = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    monai = MonaiNACLLoss(
        classes=shape[1], dim=len(shape) - 2, kernel_ops="gaussian", distance_type=distance, alpha=lambda_nacl,
        sigma=sigma,
    )  # fmt: skip
    ours = NACLLoss(lambda_nacl, kernel="gaussian_monai", sigma=sigma, distance=distance)
    torch.testing.assert_close(ours(logits, labels), monai(logits, labels), rtol=1e-6, atol=0)
    method = create_method("nacl", shape[1], kernel="gaussian_monai", sigma=sigma, lambda_nacl=lambda_nacl,
                           distance=distance)  # fmt: skip
    torch.testing.assert_close(method(logits, method.make_target({"label": labels})), monai(logits, labels))
    assert method.params["padding"] == "zeros"
