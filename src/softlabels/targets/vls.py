r"""Variational label smoothing (CALSeg): a conditional-VAE soft-label generator and its soft labels.

Stage 1 trains :class:`VLSGenerator` on (image, label): a U-Net ``f_θ`` on the image gives decoder features; a
posterior encoder ``f_ω`` on ``concat(image, onehot(label))`` gives ``μ, log σ²`` of a latent ``z`` (size 3 by
default); ``z`` is broadcast over space and joined to the features; a segmentation head ``f_φ`` (CE against the
label) and a reconstruction head ``f_ψ`` (MSE against the image) follow. The loss (:func:`vls_loss`) is

.. math:: \mathcal{L} = w_{CE}\,\mathrm{CE}(v, y) + w_{MSE}\,\mathrm{MSE}(\hat x, x)
    + w_{KL}\,\mathrm{KL}\big(\mathcal{N}(\mu, \sigma^2) \,\|\, \mathcal{N}(0, I)\big)

with all weights 1, CE and MSE means over voxels and the KL summed over batch and latent dimensions (the authors'
``main.py``; the prior is N(0, I) as in the paper's figure, not the code's log-variance-1 prior).

Soft labels (:func:`vls_soft_labels`): ``m`` latents drawn from the posterior, the tempered softmax of each
``softmax(v_i / τ)``, averaged, then mixed with the one-hot label, ``(1 − α)·onehot(y) + α·mean``. With several raters
the generator can be conditioned on each rater's map and the results averaged.

Reference: Guo et al., "CALSeg: calibration-aware segmentation via variational label smoothing", ICASSP 2024.
Shapes: images ``(N, C_in, *spatial)``, labels ``(N, *spatial)`` integers, soft labels ``(N, C, *spatial)``; 2D or 3D,
any number of classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["VLSGenerator", "VLSOutput", "kl_diagonal_gaussian", "vls_loss", "vls_soft_labels"]


class VLSOutput(NamedTuple):
    """What :meth:`VLSGenerator.forward` returns: segmentation logits, reconstruction, posterior ``μ``, ``log σ²``.

    Example:
        >>> VLSOutput._fields
        ('logits', 'reconstruction', 'mu', 'logvar')
    """

    logits: Tensor
    reconstruction: Tensor
    mu: Tensor
    logvar: Tensor


def _encoder(spatial_dims: int, in_channels: int, channels: Sequence[int], latent_dim: int) -> nn.Sequential:
    """Posterior encoder: strided MONAI convolution blocks, global average pooling, a linear map to ``(μ, log σ²)``."""
    from monai.networks.blocks import Convolution

    layers: list[nn.Module] = []
    previous = in_channels
    for i, width in enumerate(channels):
        layers.append(
            Convolution(spatial_dims, previous, width, strides=1 if i == 0 else 2, norm="instance", act="leakyrelu")
        )
        layers.append(Convolution(spatial_dims, width, width, norm="instance", act="leakyrelu"))
        previous = width
    pool = nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(*layers, pool, nn.Flatten(), nn.Linear(previous, 2 * latent_dim))


class VLSGenerator(nn.Module):
    """The CALSeg soft-label generator: U-Net features + posterior latent → segmentation and reconstruction heads.

    Args:
        in_channels: image channels.
        num_classes: classes ``C`` (≥ 2).
        spatial_dims: 2 or 3.
        latent_dim: size of ``z`` (3 in the paper's code).
        channels: U-Net and encoder widths per level.
        features: channels of the U-Net's last decoder features (before ``z`` is joined).

    Example:
        >>> gen = VLSGenerator(1, 3, spatial_dims=2, channels=(8, 16), features=8)
        >>> out = gen(torch.randn(2, 1, 16, 16), torch.randint(0, 3, (2, 16, 16)))
        >>> tuple(out.logits.shape), tuple(out.reconstruction.shape), tuple(out.mu.shape)
        ((2, 3, 16, 16), (2, 1, 16, 16), (2, 3))
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        spatial_dims: int = 2,
        latent_dim: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        features: int = 16,
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        if spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` of VLSGenerator must be 2 or 3; got {spatial_dims!r}.")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` of VLSGenerator must be an int >= 2; got {num_classes!r}.")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"`latent_dim` of VLSGenerator must be an int >= 1; got {latent_dim!r}.")
        self.in_channels, self.num_classes, self.spatial_dims, self.latent_dim = (
            in_channels,
            num_classes,
            spatial_dims,
            latent_dim,
        )
        strides = (2,) * (len(channels) - 1)
        self.unet = UNet(
            spatial_dims,
            in_channels,
            features,
            channels=tuple(channels),
            strides=strides,
            norm="instance",
            act="leakyrelu",
        )
        self.encoder = _encoder(spatial_dims, in_channels + num_classes, channels, latent_dim)
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.segmentation_head = conv(features + latent_dim, num_classes, kernel_size=1)
        self.reconstruction_head = conv(features + latent_dim, in_channels, kernel_size=1)

    def posterior(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        """``μ, log σ²`` of ``q(z | x, y)``, each ``(N, latent_dim)``; ``label``: labels or a soft map."""
        target = label.float() if label.is_floating_point() and label.ndim == image.ndim else (
            torch.nn.functional.one_hot(label.long(), self.num_classes).movedim(-1, 1).float()
        )  # fmt: skip
        stats = self.encoder(torch.cat([image, target], dim=1))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar

    def decode(self, features: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """Segmentation logits and reconstruction from U-Net ``features`` and latents ``z (N, latent_dim)``."""
        tiled = z.reshape(*z.shape, *([1] * self.spatial_dims)).expand(-1, -1, *features.shape[2:])
        joined = torch.cat([features, tiled], dim=1)
        return self.segmentation_head(joined), self.reconstruction_head(joined)

    def forward(self, image: Tensor, label: Tensor) -> VLSOutput:
        """One posterior sample ``z = μ + σ·ε`` and both heads."""
        mu, logvar = self.posterior(image, label)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits, reconstruction = self.decode(self.unet(image), z)
        return VLSOutput(logits, reconstruction, mu, logvar)


def kl_diagonal_gaussian(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""``KL(N(μ, σ²) ‖ N(0, I))`` summed over batch and latent dimensions: ``½ Σ (μ² + σ² − log σ² − 1)``.

    Example:
        >>> float(kl_diagonal_gaussian(torch.zeros(2, 3), torch.zeros(2, 3)))
        0.0
        >>> round(float(kl_diagonal_gaussian(torch.ones(1, 1), torch.zeros(1, 1))), 4)
        0.5
    """
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum()


def vls_loss(
    output: VLSOutput,
    image: Tensor,
    label: Tensor,
    *,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> dict[str, Tensor]:
    """``{"loss", "ce", "mse", "kl"}``: the stage-1 loss ``w_CE·CE + w_MSE·MSE + w_KL·KL`` (weights 1: the code's).

    Example:
        >>> gen = VLSGenerator(1, 2, channels=(4, 8), features=4)
        >>> x, y = torch.randn(1, 1, 8, 8), torch.randint(0, 2, (1, 8, 8))
        >>> parts = vls_loss(gen(x, y), x, y)
        >>> sorted(parts), bool(parts["loss"] > 0)
        (['ce', 'kl', 'loss', 'mse'], True)
    """
    ce = torch.nn.functional.cross_entropy(output.logits, label.long())
    mse = torch.nn.functional.mse_loss(output.reconstruction, image)
    kl = kl_diagonal_gaussian(output.mu, output.logvar)
    loss = weights[0] * ce + weights[1] * mse + weights[2] * kl
    return {"loss": loss, "ce": ce.detach(), "mse": mse.detach(), "kl": kl.detach()}


def _check_options(m: int, tau: float, alpha: float) -> None:
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"`m` (latent samples) of vls_soft_labels must be an int >= 1; got {m!r}.")
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not tau > 0:
        raise ValueError(f"`tau` (softmax temperature) of vls_soft_labels must be > 0; got {tau!r}.")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` (mixing weight) of vls_soft_labels must be in [0, 1]; got {alpha!r}.")


@torch.no_grad()
def vls_soft_labels(
    generator: VLSGenerator,
    image: Tensor,
    label: Tensor,
    *,
    m: int = 8,
    tau: float = 2.0,
    alpha: float = 0.3,
    raters: Tensor | None = None,
) -> Tensor:
    r"""Soft labels ``(1 − α)·onehot(y) + α·\frac{1}{m}\sum_i softmax(v_i / τ)``, ``v_i`` from posterior samples.

    Args:
        generator: a trained :class:`VLSGenerator` (put in eval mode here; the posterior is still sampled).
        image: ``(N, C_in, *spatial)``.
        label: ``(N, *spatial)`` integer labels (the one-hot part of the mix).
        m: latent samples per case.
        tau: softmax temperature.
        alpha: weight of the generated part.
        raters: optional ``(N, R, *spatial)`` rater maps: the generator is conditioned on each rater's map and the
            R means are averaged (the one-hot part stays ``label``).

    Returns:
        Float32 ``(N, C, *spatial)``, a distribution at every voxel.

    Example:
        >>> gen = VLSGenerator(1, 2, channels=(4, 8), features=4)
        >>> y = torch.randint(0, 2, (1, 8, 8))
        >>> soft = vls_soft_labels(gen, torch.randn(1, 1, 8, 8), y, m=4, alpha=0.0)
        >>> torch.equal(soft, torch.nn.functional.one_hot(y, 2).movedim(-1, 1).float())
        True
    """
    _check_options(m, tau, alpha)
    c = generator.num_classes
    if label.ndim != image.ndim - 1 or label.shape[0] != image.shape[0] or label.shape[1:] != image.shape[2:]:
        raise ValueError(
            f"`label` must be (N, *spatial) = {(image.shape[0], *image.shape[2:])}; got {tuple(label.shape)}."
        )
    if label.is_floating_point() or int(label.min()) < 0 or int(label.max()) >= c:
        raise ValueError(
            f"`label` must hold integer labels in [0, {c - 1}]; got {label.dtype} in [{label.min()}, {label.max()}]."
        )
    onehot = torch.nn.functional.one_hot(label.long(), c).movedim(-1, 1).float()
    if alpha == 0:
        return onehot
    was_training = generator.training
    generator.eval()
    features = generator.unet(image)
    conditions = [label] if raters is None else [raters[:, r] for r in range(raters.shape[1])]
    total = torch.zeros_like(onehot)
    for condition in conditions:
        mu, logvar = generator.posterior(image, condition)
        for _ in range(m):
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits, _ = generator.decode(features, z)
            total += torch.softmax(logits.float() / tau, dim=1)
    generator.train(was_training)
    mean = total / (m * len(conditions))
    return (1.0 - alpha) * onehot + alpha * mean
