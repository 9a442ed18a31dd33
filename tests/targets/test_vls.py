import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.targets.vls import VLSGenerator, kl_diagonal_gaussian, vls_loss, vls_soft_labels


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 10_000))
def test_kl_is_the_closed_form_of_diagonal_gaussians(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    mu, logvar = (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, d, generator=g, dtype=torch.float64),
    )
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum()  # summed over batch and latent dimensions
    assert float(kl_diagonal_gaussian(mu, logvar)) == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("dims", [2, 3])
def test_alpha_zero_gives_the_one_hot_labels(dims):
    gen = VLSGenerator(1, 3, spatial_dims=dims, channels=(4, 8), features=4)
    shape = (8,) * dims
    y = torch.randint(0, 3, (2, *shape))
    soft = vls_soft_labels(gen, torch.randn(2, 1, *shape), y, alpha=0.0)
    assert torch.equal(soft, torch.nn.functional.one_hot(y, 3).movedim(-1, 1).float())


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 4), st.sampled_from([2, 3]), st.integers(1, 4), st.floats(0.25, 4.0), st.floats(0.0, 1.0),
       st.booleans(), st.integers(0, 1000))  # fmt: skip
def test_every_soft_label_is_a_distribution(c, dims, m, tau, alpha, with_raters, seed):
    torch.random.manual_seed(seed)
    gen = VLSGenerator(2, c, spatial_dims=dims, channels=(4, 8), features=4, latent_dim=2)
    shape = (8,) * dims
    y = torch.randint(0, c, (2, *shape))
    raters = torch.randint(0, c, (2, 3, *shape)) if with_raters else None
    soft = vls_soft_labels(gen, torch.randn(2, 2, *shape), y, m=m, tau=tau, alpha=alpha, raters=raters)
    assert soft.shape == (2, c, *shape) and bool((soft >= 0).all())
    assert torch.allclose(soft.sum(1), torch.ones(2, *shape), atol=1e-6)
    onehot = torch.nn.functional.one_hot(y, c).movedim(-1, 1).float()
    assert bool(((soft - (1 - alpha) * onehot) >= -1e-6).all())  # the label keeps at least 1 − α


def test_loss_terms_and_gradients():
    gen = VLSGenerator(1, 2, channels=(4, 8), features=4)
    x, y = torch.randn(2, 1, 16, 16), torch.randint(0, 2, (2, 16, 16))
    out = gen(x, y)
    parts = vls_loss(out, x, y)
    assert float(parts["ce"]) == pytest.approx(float(torch.nn.functional.cross_entropy(out.logits, y)))
    assert float(parts["mse"]) == pytest.approx(float(torch.nn.functional.mse_loss(out.reconstruction, x)))
    assert float(parts["loss"]) == pytest.approx(float(parts["ce"] + parts["mse"] + parts["kl"]), rel=1e-6)
    parts["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen.parameters() if p.requires_grad)
    weighted = vls_loss(out, x, y, weights=(1.0, 0.0, 2.0))
    assert float(weighted["loss"]) == pytest.approx(float(parts["ce"] + 2 * parts["kl"]), rel=1e-6)


def test_bad_inputs_raise():
    gen = VLSGenerator(1, 2, channels=(4, 8), features=4)
    x, y = torch.randn(1, 1, 8, 8), torch.randint(0, 2, (1, 8, 8))
    for kwargs, match in (({"m": 0}, "m"), ({"tau": 0.0}, "tau"), ({"alpha": 1.5}, "alpha")):
        with pytest.raises(ValueError, match=match):
            vls_soft_labels(gen, x, y, **kwargs)
    with pytest.raises(ValueError, match="integer labels"):
        vls_soft_labels(gen, x, y + 2)
    with pytest.raises(ValueError, match="spatial"):
        vls_soft_labels(gen, x, y[:, :4])
    with pytest.raises(ValueError, match="num_classes"):
        VLSGenerator(1, 1)
    with pytest.raises(ValueError, match="spatial_dims"):
        VLSGenerator(1, 2, spatial_dims=1)
    assert math.isfinite(float(kl_diagonal_gaussian(torch.zeros(1, 1), torch.zeros(1, 1))))
