"""Batches holding every key a method may read, and a teacher network per task, for the method tests."""

from __future__ import annotations

import torch

from softlabels.methods import Method, create_method


def make_batch(shape: tuple[int, ...], num_classes: int, seed: int, raters: int = 3) -> dict[str, torch.Tensor]:
    """A batch with every key a method may read; ``shape`` is (N, *spatial) (``(N,)`` for classification)."""
    g = torch.Generator().manual_seed(seed)
    n, spatial = shape[0], shape[1:]
    return {
        "image": torch.randn(n, 1, *spatial, generator=g),
        "label": torch.randint(0, num_classes, shape, generator=g),
        "raters": torch.randint(0, num_classes, (n, raters, *spatial), generator=g),
        "confidence": torch.rand(shape, generator=g),
        "soft_label": torch.softmax(torch.randn(n, num_classes, *spatial, generator=g), 1),
        "vls_soft_label": torch.softmax(torch.randn(n, num_classes, *spatial, generator=g), 1),  # cached by VLS
    }


def teacher_for(spatial_dims: int, num_classes: int) -> torch.nn.Module:
    if spatial_dims == 0:
        return torch.nn.Linear(1, num_classes)
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    return conv(1, num_classes, 1)


def build(name: str, num_classes: int, task: str, spatial_dims: int) -> Method:
    extra = {"teacher": teacher_for(spatial_dims, num_classes)} if name == "tfkd_self" else {}
    return create_method(name, num_classes, task=task, **extra)
