"""Soft targets in nnU-Net's training step: decoding, the method's target at every scale, the deep-supervised loss."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from softlabels.integrations.nnunet.encoding import LabelEncoding, encode_raters
from softlabels.integrations.nnunet.soft_targets import (
    DeepSupervisedMethodLoss,
    deep_supervision_targets,
    deep_supervision_weights,
    downsample_target,
    encoding_of_dataset,
    hard_label_map,
    method_batch,
)
from softlabels.methods import create_method
from softlabels.methods.targets import TrainingTarget

FAST = settings(max_examples=40, deadline=None)
LABEL_METHODS = ["hard", "ls", "boundary_ls", "svls", "mbls", "nacl", "focal", "flsd", "dml"]
RATER_METHODS = [
    ("raters_mean", {}),
    ("raters_svls", {}),
    ("raters_weighted", {}),
    ("raters_majority", {}),
    ("dml", {"source": "raters_mean"}),
    ("confidence_threshold", {}),
    ("confidence_soft", {}),
    ("confidence_weighted", {}),
]


# ------------------------------------------------------------------------------------------- independent reference
def _block_sum(x: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """Sum of ``x (N, C, *spatial)`` over blocks of ``factors`` voxels, by reshape (no pooling)."""
    n, c, *spatial = x.shape
    split = [n, c]
    for size, factor in zip(spatial, factors, strict=True):
        split += [size // factor, factor]
    return x.reshape(split).sum(dim=tuple(range(3, 3 + 2 * len(factors), 2)))


def _one_hot_rows(target: torch.Tensor, num_classes: int, keep: torch.Tensor | None) -> torch.Tensor:
    """The target as float64 rows ``(N, C, *spatial)``: a hard label as its one-hot row (dropped voxels: zeros)."""
    if target.is_floating_point():
        return target.double()
    labels = target if keep is None else torch.where(keep, target, 0)
    return F.one_hot(labels.long(), num_classes).movedim(-1, 1).double()


def _reference(
    target: TrainingTarget, factors: tuple[int, ...], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Block means over the kept voxels: (rows, weight, present cells); an empty cell gets a uniform row."""
    keep = target.keep_mask
    rows = _one_hot_rows(target.target, num_classes, keep)
    kept = torch.ones_like(rows[:, :1]) if keep is None else keep.double().unsqueeze(1)
    mass = _block_sum(kept, factors)
    present = mass > 0
    safe = torch.where(present, mass, torch.ones_like(mass))
    coarse = torch.where(present, _block_sum(rows * kept, factors) / safe, 1.0 / num_classes)
    weight = None
    if target.weight is not None:
        weight = (_block_sum(target.weight.double().unsqueeze(1) * kept, factors) / safe)[:, 0]
    return coarse, weight, present[:, 0]


def _soft_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Random distributions ``(N, C, *spatial)`` along axis 1."""
    rows = rng.dirichlet(np.ones(shape[1]), size=(shape[0], *shape[2:]))
    return torch.from_numpy(np.moveaxis(rows, -1, 1)).float()


# ---------------------------------------------------------------------------------------------- downsample_target
@FAST
@given(
    dims=st.sampled_from([2, 3]),
    coarse=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    factors=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    num_classes=st.integers(2, 4),
    soft=st.booleans(),
    with_weight=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_downsample_target_is_the_block_mean(dims, coarse, factors, num_classes, soft, with_weight, seed):
    rng = np.random.default_rng(seed)
    factors, coarse = tuple(factors[:dims]), tuple(coarse[:dims])
    assume(any(f > 1 for f in factors))  # the same grid is the target itself (tested below)
    spatial = tuple(c * f for c, f in zip(coarse, factors, strict=True))
    n = int(rng.integers(1, 3))
    full = (
        _soft_rows(rng, (n, num_classes, *spatial))
        if soft
        else torch.from_numpy(rng.integers(0, num_classes, size=(n, *spatial)))
    )
    weight = torch.from_numpy(rng.random((n, *spatial))).float() if with_weight else None
    target = TrainingTarget(full, weight=weight)
    out = downsample_target(target, coarse, num_classes)
    expected, expected_weight, _ = _reference(target, factors, num_classes)
    assert out.target.dtype == torch.float32 and tuple(out.target.shape) == (n, num_classes, *coarse)
    torch.testing.assert_close(out.target.double(), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.target.double().sum(1), torch.ones(n, *coarse, dtype=torch.float64), atol=1e-6,
                               rtol=0)  # fmt: skip
    assert out.keep_mask is None
    if with_weight:
        assert out.weight is not None and tuple(out.weight.shape) == (n, *coarse)
        torch.testing.assert_close(out.weight.double(), expected_weight, atol=1e-6, rtol=0)
    else:
        assert out.weight is None


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("spatial", [(4, 6), (2, 4, 6)])
def test_downsample_target_on_the_same_grid_is_the_target_itself(soft, spatial):
    rng = np.random.default_rng(3)
    full = _soft_rows(rng, (2, 3, *spatial)) if soft else torch.from_numpy(rng.integers(0, 3, size=(2, *spatial)))
    target = TrainingTarget(full, weight=torch.ones(2, *spatial), keep_mask=torch.ones(2, *spatial, dtype=torch.bool))
    assert downsample_target(target, spatial, 3) is target
    assert downsample_target(target, list(spatial), 3) is target


@FAST
@given(
    dims=st.sampled_from([2, 3]),
    coarse=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    factors=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    num_classes=st.integers(2, 4),
    soft=st.booleans(),
    drop=st.sampled_from([0.3, 0.7, 0.95]),
    seed=st.integers(0, 2**31 - 1),
)
def test_downsample_target_averages_over_kept_voxels_only(dims, coarse, factors, num_classes, soft, drop, seed):
    rng = np.random.default_rng(seed)
    factors, coarse = tuple(factors[:dims]), tuple(coarse[:dims])
    assume(any(f > 1 for f in factors))  # the same grid is the target itself (tested below)
    spatial = tuple(c * f for c, f in zip(coarse, factors, strict=True))
    keep = torch.from_numpy(rng.random((2, *spatial)) >= drop)
    keep.view(-1)[0] = False  # the first cell always holds a dropped voxel
    if soft:
        full = _soft_rows(rng, (2, num_classes, *spatial))
    else:  # a dropped voxel holds an ignore value, as a method with ignore_index gives
        full = torch.where(keep, torch.from_numpy(rng.integers(0, num_classes, size=(2, *spatial))), 255)
    weight = torch.from_numpy(rng.random((2, *spatial))).float()
    target = TrainingTarget(full, weight=weight, keep_mask=keep)
    out = downsample_target(target, coarse, num_classes)
    expected, expected_weight, present = _reference(target, factors, num_classes)
    assert out.keep_mask is not None and out.keep_mask.dtype == torch.bool
    assert torch.equal(out.keep_mask, present)
    torch.testing.assert_close(out.target.double(), expected, atol=1e-6, rtol=0)
    empty = ~present
    assert torch.equal(out.target.movedim(1, -1)[empty], torch.full((int(empty.sum()), num_classes), 1 / num_classes))
    torch.testing.assert_close(out.target.double().sum(1), torch.ones(2, *coarse, dtype=torch.float64), atol=1e-6,
                               rtol=0)  # fmt: skip
    assert out.weight is not None and bool(torch.isfinite(out.weight).all())
    torch.testing.assert_close(out.weight.double()[present], expected_weight[present], atol=1e-6, rtol=0)


def test_downsample_target_drops_a_cell_without_kept_voxels_by_hand():
    labels = torch.tensor([[[1, 0, 255, 255], [1, 1, 255, 255]]])
    keep = labels != 255
    out = downsample_target(TrainingTarget(labels, weight=torch.tensor([[[1.0, 3.0, 9.0, 9.0]] * 2]), keep_mask=keep),
                            (1, 2), 2)  # fmt: skip
    assert out.keep_mask is not None and out.keep_mask.tolist() == [[[True, False]]]
    assert out.target[0, :, 0].tolist() == [[0.25, 0.5], [0.75, 0.5]]
    assert out.weight is not None and out.weight[0, 0, 0].item() == pytest.approx(2.0)


@FAST
@given(
    full=st.sampled_from([(5, 7), (7, 5), (3, 5, 7), (6, 5, 3)]),
    num_classes=st.integers(2, 4),
    soft=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_downsample_target_non_integer_factors_give_distributions(full, num_classes, soft, seed):
    rng = np.random.default_rng(seed)
    coarse = tuple(int(rng.integers(1, s)) for s in full)  # smaller on every axis, mostly not a divisor
    target = (
        _soft_rows(rng, (2, num_classes, *full)) if soft else torch.from_numpy(rng.integers(0, num_classes, (2, *full)))
    )
    out = downsample_target(TrainingTarget(target), coarse, num_classes)
    assert tuple(out.target.shape) == (2, num_classes, *coarse)
    assert bool((out.target >= 0).all()) and bool((out.target <= 1 + 1e-6).all())
    torch.testing.assert_close(out.target.sum(1), torch.ones(2, *coarse), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------- method_batch
def _layout(codes: np.ndarray, channel: bool) -> torch.Tensor:
    seg = torch.from_numpy(codes)
    return seg.unsqueeze(1) if channel else seg


@FAST
@given(
    num_raters=st.integers(1, 8),
    spatial=st.sampled_from([(3, 4), (2, 3, 4), (4, 2)]),
    channel=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_method_batch_of_rater_bits(num_raters, spatial, channel, seed):
    rng = np.random.default_rng(seed)
    raters = rng.integers(0, 2, size=(2, num_raters, *spatial))
    seg = _layout(np.stack([encode_raters(r) for r in raters]), channel)
    batch = method_batch(seg, LabelEncoding("rater_bits", num_raters, "raters"), ("label", "raters", "confidence"))
    assert sorted(batch) == ["confidence", "label", "raters"]
    assert batch["raters"].dtype == torch.int64 and torch.equal(batch["raters"], torch.from_numpy(raters))
    votes = raters.sum(1)
    label = (2 * votes > num_raters).astype(np.int64)
    assert batch["label"].dtype == torch.int64 and torch.equal(batch["label"], torch.from_numpy(label))
    agree = (raters == label[:, None]).mean(1)  # the share of raters agreeing with the majority label
    assert batch["confidence"].dtype == torch.float32 and tuple(batch["confidence"].shape) == (2, *spatial)
    np.testing.assert_allclose(batch["confidence"].numpy(), agree, atol=1e-6, rtol=0)
    only_label = method_batch(seg, LabelEncoding("rater_bits", num_raters, "raters"))
    assert sorted(only_label) == ["label"] and torch.equal(only_label["label"], batch["label"])


@FAST
@given(
    levels=st.sampled_from([1, 2, 3, 4, 10, 255]),
    spatial=st.sampled_from([(3, 4), (2, 3, 4), (4, 2)]),
    channel=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_method_batch_of_foreground_levels(levels, spatial, channel, seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, levels + 1, size=(2, *spatial)).astype(np.uint8)
    batch = method_batch(_layout(v, channel), LabelEncoding("foreground_levels", levels, "confidence"),
                         ("label", "confidence"))  # fmt: skip
    q = v.astype(np.float64) / levels
    assert torch.equal(batch["label"], torch.from_numpy((q > 0.5).astype(np.int64)))
    assert batch["confidence"].dtype == torch.float32
    np.testing.assert_allclose(batch["confidence"].numpy(), np.maximum(q, 1 - q), atol=1e-6, rtol=0)


@pytest.mark.parametrize("channel", [False, True])
@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 4)])
def test_method_batch_of_labels_is_the_map(channel, spatial):
    labels = np.random.default_rng(0).integers(0, 4, size=(2, *spatial)).astype(np.uint8)
    batch = method_batch(_layout(labels, channel), LabelEncoding("labels", 3, "labels", 4))
    assert list(batch) == ["label"] and batch["label"].dtype == torch.int64
    assert torch.equal(batch["label"], torch.from_numpy(labels).long())


@pytest.mark.parametrize(
    ("encoding", "keys", "gives"),
    [
        (LabelEncoding("foreground_levels", 4, "confidence"), ("label", "raters"), "['label', 'confidence']"),
        (LabelEncoding("labels", 2, "labels", 3), ("confidence",), "['label']"),
        (LabelEncoding("labels", 1, "labels"), ("label", "raters"), "['label']"),
    ],
)
def test_method_batch_refuses_keys_the_encoding_cannot_give(encoding, keys, gives):
    with pytest.raises(ValueError, match="gives no") as info:
        method_batch(torch.zeros(1, 1, 2, 2, dtype=torch.long), encoding, keys)
    message = str(info.value)
    assert "\n" not in message and gives in message and repr(encoding.kind) in message
    assert all(key in message for key in keys if key not in gives)


@pytest.mark.parametrize(
    ("encoding", "bad"),
    [
        (LabelEncoding("foreground_levels", 4, "confidence"), 5),
        (LabelEncoding("foreground_levels", 4, "confidence"), -1),
        (LabelEncoding("rater_bits", 3, "raters"), 8),
        (LabelEncoding("rater_bits", 3, "raters"), -1),
    ],
)
def test_method_batch_refuses_values_outside_the_levels(encoding, bad):
    seg = torch.tensor([[[[0, 1], [2, bad]]]])
    with pytest.raises(ValueError, match=str(bad)) as info:
        method_batch(seg, encoding, ("label", "confidence"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "encoding",
    [LabelEncoding("rater_bits", 3, "raters"), LabelEncoding("foreground_levels", 3, "confidence"),
     LabelEncoding("labels", 3, "labels", 4)],
)  # fmt: skip
@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 4)])
def test_hard_label_map_keeps_the_layout(encoding, spatial):
    codes = torch.from_numpy(np.random.default_rng(1).integers(0, encoding.levels + 1, size=(2, *spatial)))
    for seg in (codes, codes.unsqueeze(1)):
        hard = hard_label_map(seg, encoding)
        assert hard.shape == seg.shape and hard.dtype == seg.dtype
        expected = method_batch(seg, encoding)["label"]
        assert torch.equal(hard.reshape(expected.shape), expected.to(seg.dtype))
    assert hard_label_map(codes, LabelEncoding("labels", 3, "labels", 4)) is codes


# ------------------------------------------------------------------------------------------- encoding_of_dataset
def test_encoding_of_dataset_softlabels_encoding_wins():
    stored = LabelEncoding("rater_bits", 3, "raters")
    labels, _ = stored.dataset_labels()
    assert encoding_of_dataset({"labels": labels, "softlabels_encoding": stored.to_dict()}) == stored


@pytest.mark.parametrize(
    ("labels", "names"),
    [
        ({"background": 0, "liver": 1}, ("background", "liver")),
        ({"tumour": 2, "background": 0, "liver": 1}, ("background", "liver", "tumour")),
        ({"background": 0, "a": 1, "c": 3, "b": 2}, ("background", "a", "b", "c")),
    ],
)
def test_encoding_of_dataset_plain_labels(labels, names):
    encoding = encoding_of_dataset({"labels": labels, "channel_names": {"0": "CT"}})
    assert encoding.kind == "labels" and encoding.source == "labels"
    assert encoding.num_classes == len(labels) and encoding.levels == len(labels) - 1
    assert encoding.class_names == names


@pytest.mark.parametrize(
    ("dataset", "says"),
    [
        ({"labels": {"background": 0, "a": [1, 2], "b": 2}, "regions_class_order": [1, 2]}, "regions"),
        ({"labels": {"background": 0, "liver": 1, "ignore": 2}}, "ignore"),
        ({"labels": {"background": 0, "liver": 2}}, "0..C-1"),
        ({"labels": {"background": 1, "liver": 2}}, "0..C-1"),
        ({"labels": {"background": 0}}, "C >= 2"),
        ({"labels": {}}, "labels"),
        ({"name": "x"}, "labels"),
    ],
)
def test_encoding_of_dataset_refuses_what_a_softmax_cannot_train(dataset, says):
    with pytest.raises(ValueError, match=r"dataset\.json") as info:
        encoding_of_dataset(dataset)
    message = str(info.value)
    assert "\n" not in message and says in message


# -------------------------------------------------------------------------------------- deep_supervision_targets
GRIDS = {2: [(8, 8), (4, 4), (2, 2), (1, 1)], 3: [(4, 8, 8), (4, 4, 4), (2, 2, 2)]}


def _factors(full: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(f // s for f, s in zip(full, shape, strict=True))


def _check_scales(targets: list[TrainingTarget], expected: TrainingTarget, grid: list, num_classes: int) -> None:
    """Target 0 is ``expected`` exactly; every coarser one is its independent block mean (rows sum to 1)."""
    first = targets[0]
    assert len(targets) == len(grid)
    assert first.target.dtype == expected.target.dtype and torch.equal(first.target, expected.target)
    for name in ("weight", "keep_mask", "teacher"):
        mine, theirs = getattr(first, name), getattr(expected, name)
        assert (mine is None and theirs is None) or torch.equal(mine, theirs), name
    for shape, coarse in zip(grid[1:], targets[1:], strict=True):
        rows, weight, present = _reference(expected, _factors(grid[0], shape), num_classes)
        torch.testing.assert_close(coarse.target.double(), rows, atol=1e-6, rtol=0)
        torch.testing.assert_close(coarse.target.double().sum(1), torch.ones_like(rows[:, 0]), atol=1e-6, rtol=0)
        assert coarse.keep_mask is None if expected.keep_mask is None else torch.equal(coarse.keep_mask, present)
        if weight is None:
            assert coarse.weight is None
        else:
            assert coarse.weight is not None
            torch.testing.assert_close(coarse.weight.double(), weight, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", LABEL_METHODS)
def test_deep_supervision_targets_of_label_methods(name, dims):
    grid = GRIDS[dims]
    labels = torch.from_numpy(np.random.default_rng(dims).integers(0, 3, size=(2, *grid[0])))
    encoding = LabelEncoding("labels", 2, "labels", 3)
    targets = deep_supervision_targets(create_method(name, 3), labels.unsqueeze(1).to(torch.uint8), grid, encoding)
    expected = create_method(name, 3).make_target({"label": labels})
    _check_scales(targets, expected, grid, 3)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("name", "params"), RATER_METHODS)
def test_deep_supervision_targets_of_rater_methods(name, params, dims):
    grid, num_raters = GRIDS[dims], dims + 1  # 3 raters (no ties) and 4 (ties go to background)
    raters = np.random.default_rng(10 + dims).integers(0, 2, size=(2, num_raters, *grid[0]))
    seg = torch.from_numpy(np.stack([encode_raters(r) for r in raters])).unsqueeze(1)
    encoding = LabelEncoding("rater_bits", num_raters, "raters")
    targets = deep_supervision_targets(create_method(name, 2, **params), seg, grid, encoding)
    label = (2 * raters.sum(1) > num_raters).astype(np.int64)
    batch = {
        "raters": torch.from_numpy(raters),
        "label": torch.from_numpy(label),
        "confidence": torch.from_numpy((raters == label[:, None]).mean(1)).float(),
    }
    expected = create_method(name, 2, **params).make_target(batch)
    _check_scales(targets, expected, grid, 2)


def test_deep_supervision_targets_of_a_thresholded_confidence_that_ignores():
    seg = torch.tensor([[[[0, 1, 2, 3], [3, 3, 2, 2]]]])  # L = 3: confidence 2/3 < tau at levels 1 and 2
    method = create_method("confidence_threshold", 2, below="ignore", tau=0.7)
    encoding = LabelEncoding("foreground_levels", 3, "confidence")
    targets = deep_supervision_targets(method, seg, [(2, 4), (1, 2)], encoding)
    assert targets[1].keep_mask is not None and targets[1].keep_mask.tolist() == [[[True, True]]]
    expected = torch.tensor([[1 / 3, 0.0], [2 / 3, 1.0]])  # the kept voxels: labels 0, 1, 1 | 1
    torch.testing.assert_close(targets[1].target[0, :, 0], expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------- deep_supervision_weights
@pytest.mark.parametrize("scales", range(1, 7))
def test_deep_supervision_weights(scales):
    raw = [Fraction(1, 2**i) for i in range(scales)]
    if scales > 1:
        raw[-1] = Fraction(0)
    expected = [w / sum(raw) for w in raw]
    weights = deep_supervision_weights(scales)
    assert len(weights) == scales and all(isinstance(w, float) for w in weights)
    assert weights == pytest.approx([float(w) for w in expected], abs=1e-12)
    assert math.isclose(sum(weights), 1.0, abs_tol=1e-12) and (scales == 1 or weights[-1] == 0.0)
    for i in range(scales - 2):
        assert weights[i] == pytest.approx(2 * weights[i + 1], abs=1e-12)


# --------------------------------------------------------------------------------------- DeepSupervisedMethodLoss
def _outputs(grid: list, num_classes: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, num_classes, *shape, generator=g, requires_grad=True) for shape in grid]


def _hand_loss(method, outputs, expected: TrainingTarget, weights, grid, num_classes) -> torch.Tensor:
    """``Σ_i w_i · method(out_i, target_i)`` with the targets re-derived by reshape/mean (weight-0 scales skipped)."""
    total = torch.zeros(())
    for i, (w, out) in enumerate(zip(weights, outputs, strict=True)):
        if w == 0:
            continue
        if i == 0:
            target = expected
        else:
            rows, weight, present = _reference(expected, _factors(grid[0], grid[i]), num_classes)
            keep = None if expected.keep_mask is None else present
            target = TrainingTarget(rows.float(), weight=None if weight is None else weight.float(), keep_mask=keep)
        total = total + w * method(out, target)
    return total


@pytest.mark.parametrize(("name", "params"), [("svls", {}), ("hard", {}), ("nacl", {}), ("dml", {})])
def test_deep_supervised_loss_is_the_weighted_sum_over_scales(name, params):
    grid, weights = GRIDS[2][:3], deep_supervision_weights(3)
    labels = torch.from_numpy(np.random.default_rng(5).integers(0, 3, size=(2, *grid[0])))
    seg = labels.unsqueeze(1).to(torch.uint8)
    method = create_method(name, 3, **params)
    loss = DeepSupervisedMethodLoss(method, LabelEncoding("labels", 2, "labels", 3), weights)
    outputs = _outputs(grid, 3, 0)
    value = loss(outputs, seg)
    expected = _hand_loss(method, outputs, method.make_target({"label": labels}), weights, grid, 3)
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)
    nearest = [seg] + [seg[..., :: 2**i, :: 2**i] for i in range(1, 3)]  # nnU-Net's list: the first entry is used
    torch.testing.assert_close(loss(outputs, nearest), value, atol=0, rtol=0)
    value.backward()
    for w, out in zip(weights, outputs, strict=True):
        if w:
            assert out.grad is not None and bool(torch.isfinite(out.grad).all()) and bool(out.grad.abs().sum() > 0)
        else:
            assert out.grad is None


def test_deep_supervised_loss_of_rater_bits_with_weights():
    grid, weights = GRIDS[3], [0.5, 0.3, 0.2]
    raters = np.random.default_rng(7).integers(0, 2, size=(2, 3, *grid[0]))
    seg = torch.from_numpy(np.stack([encode_raters(r) for r in raters])).unsqueeze(1)
    method = create_method("confidence_weighted", 2)
    loss = DeepSupervisedMethodLoss(method, LabelEncoding("rater_bits", 3, "raters"), weights)
    outputs = _outputs(grid, 2, 1)
    label = (2 * raters.sum(1) > 3).astype(np.int64)
    batch = {"label": torch.from_numpy(label), "confidence": torch.from_numpy((raters == label[:, None]).mean(1))}
    expected = _hand_loss(method, outputs, method.make_target({**batch, "confidence": batch["confidence"].float()}),
                          weights, grid, 2)  # fmt: skip
    value = loss(outputs, seg)
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)
    value.backward()
    assert all(out.grad is not None and bool(out.grad.abs().sum() > 0) for out in outputs)


def test_deep_supervised_loss_held_replaces_the_target_and_one_output_works():
    method = create_method("svls", 2)
    encoding = LabelEncoding("foreground_levels", 4, "confidence")
    rng = np.random.default_rng(2)
    seg, other = (torch.from_numpy(rng.integers(0, 5, size=(1, 1, 4, 4))) for _ in range(2))
    loss = DeepSupervisedMethodLoss(method, encoding, [1.0])
    logits = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    direct = loss(logits, seg)
    expected = method(logits, method.make_target(method_batch(seg, encoding)))
    torch.testing.assert_close(direct, expected, atol=0, rtol=0)
    torch.testing.assert_close(loss([logits], [seg]), direct, atol=0, rtol=0)
    loss.held = other
    held = loss(logits, hard_label_map(seg, encoding))
    torch.testing.assert_close(held, method(logits, method.make_target(method_batch(other, encoding))), atol=0, rtol=0)
    assert not torch.equal(held, direct)
    loss.held = None
    torch.testing.assert_close(loss(logits, seg), direct, atol=0, rtol=0)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_deep_supervised_loss_refuses_a_wrong_number_of_outputs(count):
    loss = DeepSupervisedMethodLoss(create_method("hard", 2), LabelEncoding("labels", 1, "labels"), [0.6, 0.4, 0.0])
    outputs = [torch.zeros(1, 2, 8 // 2**i, 8 // 2**i) for i in range(count)]
    with pytest.raises(ValueError, match=f"{count} outputs") as info:
        loss(outputs, torch.zeros(1, 1, 8, 8, dtype=torch.long))
    assert "\n" not in str(info.value) and "3 weights" in str(info.value)
