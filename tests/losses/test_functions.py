"""The fused NACL penalty gives the values and gradients of the plain autograd formula."""

import torch

from softlabels.losses._functions import mean_abs_difference


def test_mean_abs_difference_matches_autograd():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64)
    weights = torch.rand(2, 4, 4, generator=g, dtype=torch.float64)
    fused, plain = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    torch.testing.assert_close(mean_abs_difference(fused, t), (t - plain).abs().mean(1))
    (mean_abs_difference(fused, t) * weights).sum().backward()
    ((t - plain).abs().mean(1) * weights).sum().backward()
    torch.testing.assert_close(fused.grad, plain.grad)
    assert torch.autograd.gradcheck(lambda x: mean_abs_difference(x, t), (z.clone().requires_grad_(True),))
