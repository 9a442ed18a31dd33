"""Top-k accuracy and embedding compactness against float64 NumPy references; ties, streaming, bad inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.metrics.classification import EmbeddingCompactness, TopKAccuracy
from softlabels.metrics.functional.classification import embedding_compactness, top_k_accuracy


# ---------------------------------------------------------------- NumPy references (written from the definitions)
def top_k_ref(probs: np.ndarray, target: np.ndarray, k: int) -> float:
    """Stable descending sort (ties: lower class first); correct if the target is among the first k."""
    if probs.shape[1] == 1:
        probs = np.concatenate([1 - probs, probs], axis=1)
    hits = [target[i] in np.argsort(-probs[i], kind="stable")[:k] for i in range(len(target))]
    return float(np.mean(hits))


def compactness_ref(features: np.ndarray, target: np.ndarray) -> float:
    f = features.astype(np.float64)
    present = sorted(set(target.tolist()))
    centroids = {c: f[target == c].mean(0) for c in present}
    intra = np.mean([np.mean(((f[target == c] - centroids[c]) ** 2).sum(1)) for c in present])
    inter = np.mean([((centroids[a] - centroids[b]) ** 2).sum() for a, b in itertools.combinations(present, 2)])
    return float(intra / inter)


# ---------------------------------------------------------------- inputs
def logits_probs(seed: int, n: int, c: int, levels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax of small integer logits: many exact ties."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randint(0, levels, (n, c), generator=g).float(), 1)
    return probs, torch.randint(0, c, (n,), generator=g)


# ---------------------------------------------------------------- top-k accuracy
@pytest.mark.parametrize("c", [2, 5, 10])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_matches_reference_with_ties(c, k):
    k = min(k, c)
    for levels in (2, 100):
        probs, target = logits_probs(c * 7 + k, 200, c, levels)
        want = top_k_ref(probs.numpy(), target.numpy(), k)
        assert top_k_accuracy(probs, target, k=k).item() == pytest.approx(want, abs=1e-15)


def test_top1_equals_argmax_and_binary_channel():
    probs, target = logits_probs(0, 300, 4, levels=2)
    assert top_k_accuracy(probs, target).item() == pytest.approx((probs.argmax(1) == target).double().mean().item())
    fg = torch.tensor([[0.5], [0.7], [0.2], [0.5]])  # C == 1: classes [1 − p, p]; p = 0.5 ties go to class 0
    target = torch.tensor([0, 1, 1, 1])
    assert top_k_accuracy(fg, target).item() == pytest.approx(top_k_ref(fg.numpy(), target.numpy(), 1))
    assert top_k_accuracy(fg, target).item() == 0.5


def test_tie_goes_to_lower_class_index():
    probs = torch.tensor([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]])
    assert top_k_accuracy(probs[:1], torch.tensor([0])).item() == 1.0
    assert top_k_accuracy(probs[:1], torch.tensor([1])).item() == 0.0
    assert top_k_accuracy(probs, torch.tensor([1, 2]), k=2).item() == 0.5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 30), c=st.integers(2, 6), cut=st.integers(0, 30))
def test_top_k_properties_and_streaming(seed, n, c, cut):
    probs, target = logits_probs(seed, n, c)
    values = [top_k_accuracy(probs, target, k=k).item() for k in range(1, c + 1)]
    assert values == sorted(values) and values[-1] == 1.0  # monotone in k; k = C always correct
    metric = TopKAccuracy(k=2)
    cut = min(cut, n)
    for lo, hi in ((0, cut), (cut, n)):
        if hi > lo:
            metric.update(probs[lo:hi], target[lo:hi])
    assert metric.compute().item() == pytest.approx(top_k_accuracy(probs, target, k=2).item(), abs=1e-15)
    assert metric.correct.dtype == metric.total.dtype == torch.int64


def test_top_k_bad_inputs():
    probs, target = logits_probs(0, 4, 3)
    with pytest.raises(ValueError, match=r"`target` of top_k_accuracy must be hard labels.*got a soft target"):
        top_k_accuracy(probs, probs)
    with pytest.raises(ValueError, match=r"`target` of TopKAccuracy must be hard labels"):
        TopKAccuracy().update(probs, probs)
    with pytest.raises(ValueError, match=r"`k` of top_k_accuracy must be an int >= 1; got 0"):
        top_k_accuracy(probs, target, k=0)
    with pytest.raises(ValueError, match=r"`k` of TopKAccuracy must be an int >= 1; got True"):
        TopKAccuracy(k=True)
    with pytest.raises(ValueError, match=r"`k` of top_k_accuracy must be <= the number of classes 3; got 4"):
        top_k_accuracy(probs, target, k=4)
    with pytest.raises(ValueError, match=r"`probs` of top_k_accuracy must have shape \(N, C\)"):
        top_k_accuracy(probs.view(4, 3, 1), target.view(4, 1))
    with pytest.raises(ValueError, match=r"`target` of top_k_accuracy must hold labels in \[0, 2\]"):
        top_k_accuracy(probs, target + 3)
    with pytest.raises(TypeError, match=r"`target` of top_k_accuracy .* must have an integer dtype"):
        top_k_accuracy(probs, target.float())
    with pytest.raises(ValueError, match=r"`probs` of top_k_accuracy must sum to 1"):
        top_k_accuracy(probs * 0.5, target)


# ---------------------------------------------------------------- embedding compactness
def clusters(seed: int, n: int, c: int, d: int, spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (n,), generator=g)
    centres = 4 * torch.randn(c, d, generator=g, dtype=torch.float64)
    features = centres[target] + spread * torch.randn(n, d, generator=g, dtype=torch.float64)
    return features.float(), target


@pytest.mark.parametrize("c,d", [(2, 1), (3, 8), (10, 16)])
def test_compactness_matches_reference(c, d):
    features, target = clusters(c * d, 300, c, d)
    want = compactness_ref(features.numpy(), target.numpy())
    assert embedding_compactness(features, target, num_classes=c).item() == pytest.approx(want, rel=1e-9)


def test_classes_without_samples_are_excluded():
    features, target = clusters(1, 50, 3, 4)
    spread_labels = torch.tensor([0, 4, 6])[target]  # only 3 of 8 classes have samples
    assert embedding_compactness(features, spread_labels, num_classes=8).item() == pytest.approx(
        embedding_compactness(features, target, num_classes=3).item(), rel=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(4, 40),
    c=st.integers(2, 5),
    d=st.integers(1, 6),
    cut=st.integers(0, 40),
    scale=st.floats(0.1, 10),
)
def test_compactness_properties_and_streaming(seed, n, c, d, cut, scale):
    features, target = clusters(seed, n, c, d)
    target[:2] = torch.tensor([0, 1])  # at least two classes present
    value = embedding_compactness(features, target, num_classes=c)
    assert value.item() == pytest.approx(compactness_ref(features.numpy(), target.numpy()), rel=1e-7)
    assert value.item() >= -1e-12
    f64 = features.double()
    assert embedding_compactness(f64 * scale + 3.0, target, num_classes=c).item() == pytest.approx(
        embedding_compactness(f64, target, num_classes=c).item(), rel=1e-6, abs=1e-9
    )  # invariant to a common scale and offset
    metric = EmbeddingCompactness(c, num_features=d)
    cut = min(cut, n)
    for lo, hi in ((0, cut), (cut, n)):
        if hi > lo:
            metric.update(features[lo:hi], target[lo:hi])
    assert metric.compute().item() == pytest.approx(value.item(), rel=1e-9, abs=1e-12)


def test_compactness_needs_two_classes():
    features = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"embedding_compactness needs samples of at least 2 classes; .* of 1 class"):
        embedding_compactness(features, torch.zeros(5, dtype=torch.long), num_classes=3)
    metric = EmbeddingCompactness(3, num_features=3)
    metric.update(features, torch.full((5,), 2))
    with pytest.raises(ValueError, match=r"EmbeddingCompactness needs samples of at least 2 classes; .* of 1 class"):
        metric.compute()


def test_compactness_bad_inputs():
    features, target = clusters(0, 10, 3, 4)
    with pytest.raises(ValueError, match=r"`num_classes` of embedding_compactness must be an int >= 2; got 1"):
        embedding_compactness(features, target, num_classes=1)
    with pytest.raises(ValueError, match=r"`num_features` of EmbeddingCompactness must be an int >= 1; got 0"):
        EmbeddingCompactness(3, num_features=0)
    with pytest.raises(ValueError, match=r"`features` of EmbeddingCompactness must have shape \(N, 5\); got \(10, 4\)"):
        EmbeddingCompactness(3, num_features=5).update(features, target)
    with pytest.raises(TypeError, match=r"`features` of embedding_compactness must be a floating tensor"):
        embedding_compactness(features.long(), target, num_classes=3)
    with pytest.raises(TypeError, match=r"`target` of embedding_compactness must be an integer label tensor"):
        embedding_compactness(features, target.float(), num_classes=3)
    with pytest.raises(ValueError, match=r"`target` of embedding_compactness must have shape \(10,\)"):
        embedding_compactness(features, target[:5], num_classes=3)
    with pytest.raises(ValueError, match=r"`target` of embedding_compactness must hold labels in \[0, 2\]; got"):
        embedding_compactness(features, target + 1, num_classes=3)
    bad = features.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"`features` of embedding_compactness must be finite; got 1 NaN/inf"):
        embedding_compactness(bad, target, num_classes=3)
