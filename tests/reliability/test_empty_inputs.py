"""Empty and extreme inputs (issue 13, item 5): no voxels is no data, 0 classes and an empty loss batch are errors.

The conventions under test (docs/metrics.md, "Empty inputs"):

- a metric input without voxels (``N = 0``, or a spatial size 0) holds no data: a functional metric returns its
  "no data" value (NaN; per case an ``(N, …)`` tensor of NaN, empty for ``N = 0``), and a streaming ``update`` is a
  no-op (the state, the per-case lists included, is left unchanged), so a stream with an empty batch anywhere gives
  exactly the result of the stream without it;
- ``compute()`` before any ``update()`` (or after empty batches only) is the "no data" result: pooled NaN and, with
  ``per_case=True``, an empty per-case tensor;
- ``probs`` with 0 classes and ``num_classes=0`` are one-line ``ValueError`` s naming the argument and the metric;
- a loss of an empty batch is a one-line ``ValueError`` naming ``input`` and the loss, for every reduction; a batch
  whose voxels are all masked out or ignored has loss 0 (``"mean"``/``"sum"``) with a zero gradient, never NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torchmetrics import Metric

from softlabels.losses import (
    FLSD53_BANDS,
    DiceCELoss,
    DiceLoss,
    DistillationLoss,
    FocalLoss,
    KLDivLoss,
    MarginLoss,
    NACLLoss,
    OnlineLabelSmoothingLoss,
    SoftCrossEntropyLoss,
    VirtualTeacherLoss,
)
from softlabels.methods import create_method
from softlabels.metrics import (
    AdaptiveCalibrationError,
    AverageSurfaceDistance,
    BrierScore,
    CalibrationError,
    DiceScore,
    EmbeddingCompactness,
    GeneralizedEnergyDistance,
    HausdorffDistance95,
    IoUScore,
    NegativeLogLikelihood,
    SoftDiceScore,
    ThresholdedDice,
    TopKAccuracy,
)
from softlabels.metrics.functional import (
    BoundedValue,
    LeaveOneRaterOut,
    ReliabilityDiagram,
    adaptive_calibration_error,
    average_surface_distance,
    brier_score,
    calibration_error,
    dice_per_threshold,
    dice_score,
    embedding_compactness,
    generalized_energy_distance,
    hausdorff_distance_95,
    iou_score,
    leave_one_rater_out,
    negative_log_likelihood,
    reliability_diagram,
    soft_dice_score,
    thresholded_dice,
    top_k_accuracy,
)
from softlabels.targets import virtual_teacher
from tests.metrics._reference import brier_ref, calibration_error_ref, nll_ref

C = 3  # classes of every test input
N_RATERS, N_SAMPLES = 3, 2

# the empty shapes of probs, by the layout they belong to
EMPTY = {
    "cls": [(0, C)],
    "2d": [(0, C, 4, 5), (2, C, 0, 5), (2, C, 4, 0)],
    "3d": [(0, C, 2, 4, 5), (2, C, 0, 4, 5), (2, C, 2, 4, 0)],
}
FULL = {"cls": (4, C), "2d": (2, C, 4, 5), "3d": (2, C, 2, 4, 5)}


def _probs(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.softmax(2.0 * torch.randn(shape, generator=torch.Generator().manual_seed(seed)), dim=1)


def _labels(shape: tuple[int, ...], seed: int, high: int = C) -> Tensor:
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed + 7919))


def hard(shape: tuple[int, ...], seed: int) -> tuple[Tensor, ...]:
    """``probs`` of ``shape`` and a label map."""
    return _probs(shape, seed), _labels(shape[:1] + shape[2:], seed)


def soft(shape: tuple[int, ...], seed: int) -> tuple[Tensor, ...]:
    """``probs`` of ``shape`` and a soft target of the same shape (a mean of 3 one-hot raters)."""
    raters = torch.stack([_labels(shape[:1] + shape[2:], seed + r) for r in range(N_RATERS)])
    return _probs(shape, seed), torch.nn.functional.one_hot(raters, C).movedim(-1, 2).float().mean(0)


def label_stacks(shape: tuple[int, ...], seed: int) -> tuple[Tensor, ...]:
    """GED: ``samples (M, N, *spatial)`` and ``raters (R, N, *spatial)`` label maps for probs of ``shape``."""
    maps = shape[:1] + shape[2:]
    return (
        torch.stack([_labels(maps, seed + m) for m in range(N_SAMPLES)]),
        torch.stack([_labels(maps, seed + 100 + r) for r in range(N_RATERS)]),
    )


def probs_and_raters(shape: tuple[int, ...], seed: int) -> tuple[Tensor, ...]:
    """Leave-one-rater-out: ``probs`` of ``shape`` and ``raters (R, N, *spatial)``."""
    return _probs(shape, seed), label_stacks(shape, seed)[1]


def features(shape: tuple[int, ...], seed: int) -> tuple[Tensor, ...]:
    """Compactness: ``features (N, D)`` (``D`` = the second axis of ``shape``) and labels ``(N,)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape[:2], generator=g), _labels(shape[:1], seed)


@dataclass(frozen=True)
class Spec:
    """One metric: how to build its inputs, its layouts, and the shape of its result per ``N`` (None: a scalar)."""

    inputs: Callable[[tuple[int, ...], int], tuple[Tensor, ...]]
    layouts: tuple[str, ...]
    cases: Callable[[int], tuple[int, ...]] | None = None
    no_data_error: str | None = None  # a metric whose documented "no data" result is this error (compactness)


SEG = ("2d", "3d")
ALL = ("cls", "2d", "3d")
KEPT = C - 1  # classes kept without the background
FUNCTIONAL: dict[str, tuple[Callable[..., object], Spec]] = {
    "calibration_error": (calibration_error, Spec(hard, ALL)),
    "calibration_error classwise l2": (
        lambda p, t: calibration_error(p, t, mode="classwise", norm="l2"),
        Spec(hard, ALL),
    ),
    "calibration_error marginal max soft": (
        lambda p, t: calibration_error(p, t, mode="marginal", norm="max"),
        Spec(soft, ALL),
    ),
    "calibration_error ace": (lambda p, t: calibration_error(p, t, norm="ace"), Spec(hard, ALL)),
    "reliability_diagram": (reliability_diagram, Spec(hard, ALL)),
    "adaptive_calibration_error": (adaptive_calibration_error, Spec(hard, ALL)),
    "adaptive_calibration_error classwise": (
        lambda p, t: adaptive_calibration_error(p, t, mode="classwise"),
        Spec(soft, ALL),
    ),
    "brier_score": (brier_score, Spec(hard, ALL)),
    "brier_score soft": (brier_score, Spec(soft, ALL)),
    "negative_log_likelihood": (negative_log_likelihood, Spec(hard, ALL)),
    "top_k_accuracy": (lambda p, t: top_k_accuracy(p, t, k=2), Spec(hard, ("cls",))),
    "dice_score": (dice_score, Spec(hard, SEG, lambda n: (n, KEPT))),
    "iou_score": (iou_score, Spec(hard, SEG, lambda n: (n, KEPT))),
    "soft_dice_score": (soft_dice_score, Spec(soft, SEG, lambda n: (n, KEPT))),
    "hausdorff_distance_95": (hausdorff_distance_95, Spec(hard, SEG, lambda n: (n, KEPT))),
    "average_surface_distance": (average_surface_distance, Spec(hard, SEG, lambda n: (n, KEPT))),
    "thresholded_dice": (thresholded_dice, Spec(soft, SEG, lambda n: (n, KEPT))),
    "dice_per_threshold": (dice_per_threshold, Spec(soft, SEG, lambda n: (n, 9, KEPT))),
    "generalized_energy_distance": (
        lambda s, r: generalized_energy_distance(s, r, num_classes=C),
        Spec(label_stacks, SEG, lambda n: (n,)),
    ),
    "leave_one_rater_out": (leave_one_rater_out, Spec(probs_and_raters, SEG, lambda n: (n,))),
    "embedding_compactness": (
        lambda f, t: embedding_compactness(f, t, num_classes=C),
        Spec(features, ("cls",), no_data_error=r"needs samples of at least 2 classes; got samples of 0 class"),
    ),
}


def _nan_of_shape(value: Tensor, shape: tuple[int, ...]) -> None:
    assert value.dtype == torch.float64, value.dtype
    assert tuple(value.shape) == shape, (tuple(value.shape), shape)
    assert bool(value.isnan().all()), value


def assert_no_data(result: object, spec: Spec, n: int) -> None:
    """``result`` is the documented "no data" value for a batch of ``n`` cases."""
    if isinstance(result, BoundedValue):
        _nan_of_shape(result.value, ())
        _nan_of_shape(result.error_bound, ())
    elif isinstance(result, ReliabilityDiagram):
        assert int(result.counts.sum()) == 0
        assert bool(result.confidence.isnan().all()) and bool(result.outcome.isnan().all())
    elif isinstance(result, LeaveOneRaterOut):
        _nan_of_shape(result.model, (n,))
        _nan_of_shape(result.raters, (N_RATERS, n))
    else:
        assert isinstance(result, Tensor)
        _nan_of_shape(result, () if spec.cases is None else spec.cases(n))


FUNCTIONAL_CASES = [
    pytest.param(name, shape, id=f"{name}-{shape}")
    for name, (_, spec) in FUNCTIONAL.items()
    for layout in spec.layouts
    for shape in EMPTY[layout]
]


@pytest.mark.parametrize(("name", "shape"), FUNCTIONAL_CASES)
def test_functional_metric_of_an_empty_input_is_nan(name, shape):
    fn, spec = FUNCTIONAL[name]
    if spec.no_data_error is not None:
        with pytest.raises(ValueError, match=rf"{name} {spec.no_data_error}"):
            fn(*spec.inputs(shape, 0))
        return
    assert_no_data(fn(*spec.inputs(shape, 0)), spec, shape[0])


def test_empty_input_with_a_mask_is_nan():
    probs, target = hard((0, C, 4, 5), 0)
    mask = torch.zeros(0, 4, 5, dtype=torch.bool)
    for fn in (calibration_error, brier_score, negative_log_likelihood):
        value = fn(probs, target, mask=mask)
        assert value.shape == () and math.isnan(float(value)), fn.__name__
    assert dice_score(probs, target, mask=mask).shape == (0, KEPT)


def test_a_case_without_voxels_is_nan_whatever_the_empty_structure_option():
    probs, target = hard((2, C, 0, 5), 0)
    for empty in ("one", "nan"):
        _nan_of_shape(dice_score(probs, target, empty=empty), (2, KEPT))
        _nan_of_shape(thresholded_dice(probs, target, empty=empty), (2, KEPT))


# ---------------------------------------------------------------------------------------------- streaming metrics

CLASSES: dict[str, tuple[Callable[[], Metric], Spec]] = {
    "CalibrationError": (lambda: CalibrationError(C, n_bins=10), Spec(hard, ALL)),
    "CalibrationError per_case": (lambda: CalibrationError(C, per_case=True), Spec(hard, ALL)),
    "CalibrationError classwise per_case soft": (
        lambda: CalibrationError(C, mode="classwise", norm="max", per_case=True),
        Spec(soft, ALL),
    ),
    "AdaptiveCalibrationError": (lambda: AdaptiveCalibrationError(C, n_fine_bins=100), Spec(hard, ALL)),
    "BrierScore": (lambda: BrierScore(C), Spec(hard, ALL)),
    "BrierScore per_case": (lambda: BrierScore(C, per_case=True), Spec(soft, ALL)),
    "NegativeLogLikelihood per_case": (lambda: NegativeLogLikelihood(C, per_case=True), Spec(hard, ALL)),
    "TopKAccuracy": (lambda: TopKAccuracy(k=2), Spec(hard, ("cls",))),
    "EmbeddingCompactness": (
        lambda: EmbeddingCompactness(C, num_features=C),
        Spec(features, ("cls",), no_data_error=FUNCTIONAL["embedding_compactness"][1].no_data_error),
    ),
    "DiceScore": (lambda: DiceScore(C), Spec(hard, SEG)),
    "IoUScore": (lambda: IoUScore(C, empty="nan"), Spec(hard, SEG)),
    "SoftDiceScore": (lambda: SoftDiceScore(C), Spec(soft, SEG)),
    "HausdorffDistance95": (lambda: HausdorffDistance95(C), Spec(hard, SEG)),
    "AverageSurfaceDistance": (lambda: AverageSurfaceDistance(C), Spec(hard, SEG)),
    "ThresholdedDice": (lambda: ThresholdedDice(C), Spec(soft, SEG)),
    "GeneralizedEnergyDistance": (lambda: GeneralizedEnergyDistance(C), Spec(label_stacks, SEG)),
}
PER_CASE = [name for name in CLASSES if "per_case" in name]


def state_of(metric: Metric) -> dict[str, object]:
    """A copy of every state: tensors cloned, per-case lists as lists of clones."""
    return {
        key: [t.clone() for t in value] if isinstance(value, list) else value.clone()
        for key, value in metric.metric_state.items()
    }


def assert_same_state(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, list):
            assert isinstance(y, list) and len(x) == len(y), key
            assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True)), key
        else:
            assert torch.equal(x, y), key


def assert_same_result(a: object, b: object) -> None:
    """Bit-identical results (NaN equal to NaN), for tensors, dicts of tensors and named tuples."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            assert_same_result(a[key], b[key])
    elif isinstance(a, tuple):
        assert type(a) is type(b)
        for x, y in zip(a, b, strict=True):
            assert_same_result(x, y)
    else:
        torch.testing.assert_close(a, b, rtol=0.0, atol=0.0, equal_nan=True)


def compute(metric: Metric) -> object:
    """``metric.compute()``, quiet about torchmetrics' "compute before update" warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return metric.compute()


CLASS_CASES = [
    pytest.param(name, shape, id=f"{name}-{shape}")
    for name, (_, spec) in CLASSES.items()
    for layout in spec.layouts
    for shape in EMPTY[layout]
]


@pytest.mark.parametrize(("name", "shape"), CLASS_CASES)
def test_empty_batch_leaves_the_state_unchanged(name, shape):
    make, spec = CLASSES[name]
    metric = make()
    layout = next(layout for layout in spec.layouts if shape in EMPTY[layout])
    metric.update(*spec.inputs(FULL[layout], 1))
    before = state_of(metric)
    metric.update(*spec.inputs(shape, 2))
    assert_same_state(state_of(metric), before)


@pytest.mark.parametrize(("name", "shape"), CLASS_CASES)
def test_stream_with_an_empty_batch_in_the_middle_equals_the_stream_without(name, shape):
    make, spec = CLASSES[name]
    layout = next(layout for layout in spec.layouts if shape in EMPTY[layout])
    first, second = spec.inputs(FULL[layout], 1), spec.inputs(FULL[layout], 2)
    with_empty, without = make(), make()
    for batch in (first, spec.inputs(shape, 3), second):
        with_empty.update(*batch)
    for batch in (first, second):
        without.update(*batch)
    assert_same_result(compute(with_empty), compute(without))


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(CLASSES)),
    position=st.integers(0, 2),
    n_empty=st.integers(1, 2),
    which=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
def test_empty_batches_anywhere_in_a_stream_change_nothing(name, position, n_empty, which, seed):
    make, spec = CLASSES[name]
    layout = spec.layouts[seed % len(spec.layouts)]
    batches = [spec.inputs(FULL[layout], seed), spec.inputs(FULL[layout], seed + 1)]
    empty = EMPTY[layout][which % len(EMPTY[layout])]
    stream = batches[:position] + [spec.inputs(empty, seed + 2)] * n_empty + batches[position:]
    with_empty, without = make(), make()
    for batch in stream:
        with_empty.update(*batch)
    for batch in batches:
        without.update(*batch)
    assert_same_result(compute(with_empty), compute(without))


@pytest.mark.parametrize("layout", ALL)
def test_stream_with_an_empty_batch_matches_the_float64_reference(layout):
    first, second = hard(FULL[layout], 1), hard(FULL[layout], 2)
    probs = torch.cat([first[0], second[0]]).numpy()
    target = torch.cat([first[1], second[1]]).numpy()
    expected = {
        "ece": calibration_error_ref(probs, target, n_bins=10),
        "brier": brier_ref(probs, target),
        "nll": nll_ref(probs, target),
    }
    metrics = {"ece": CalibrationError(C, n_bins=10), "brier": BrierScore(C), "nll": NegativeLogLikelihood(C)}
    for empty in EMPTY[layout]:
        for metric in metrics.values():
            metric.reset()
            for batch in (first, hard(empty, 3), second):
                metric.update(*batch)
        for key, metric in metrics.items():
            np.testing.assert_allclose(float(metric.compute()), expected[key], rtol=1e-9, err_msg=f"{key} {empty}")


@pytest.mark.parametrize("name", list(CLASSES))
def test_compute_before_update_and_after_empty_batches_is_the_no_data_result(name):
    make, spec = CLASSES[name]
    fresh, emptied = make(), make()
    for layout in spec.layouts:
        for shape in EMPTY[layout]:
            emptied.update(*spec.inputs(shape, 0))
    if spec.no_data_error is not None:
        for metric in (fresh, emptied):
            with pytest.raises(ValueError, match=rf"{type(metric).__name__} {spec.no_data_error}"):
                compute(metric)
        return
    for metric in (fresh, emptied):
        result = compute(metric)
        if isinstance(result, BoundedValue):
            assert math.isnan(float(result.value)) and math.isnan(float(result.error_bound))
            continue
        pooled = result["pooled"] if isinstance(result, dict) else result
        assert pooled.dtype == torch.float64 and bool(pooled.isnan().all()), name
        if isinstance(result, dict):
            assert result["per_case"].dtype == torch.float64 and result["per_case"].shape == (0,), name
    assert_same_result(compute(emptied), compute(fresh))


@pytest.mark.parametrize("name", PER_CASE)
def test_per_case_empty_batch_adds_no_case(name):
    make, spec = CLASSES[name]
    metric = make()
    metric.update(*spec.inputs((2, C, 4, 5), 1))
    for shape in EMPTY["2d"] + EMPTY["3d"]:
        metric.update(*spec.inputs(shape, 2))
    metric.update(*spec.inputs((1, C, 3), 3))
    assert compute(metric)["per_case"].shape == (3,)


# ------------------------------------------------------------------------------------------------------ 0 classes


def _zero_class_probs(name: str, shape: tuple[int, ...]) -> Callable[[], object]:
    fn, _ = FUNCTIONAL[name]
    return lambda: fn(torch.zeros(shape), torch.zeros(shape[:1] + shape[2:], dtype=torch.long))


ZERO_CLASSES = [
    pytest.param(
        _zero_class_probs(name, shape), rf"`probs` of {name} must .*C >= 1.*; got \({shape[0]}, 0", id=f"{name}{shape}"
    )
    for name, (_, spec) in FUNCTIONAL.items()
    if spec.inputs in (hard, soft) and " " not in name
    for shape in [(2, 0), (2, 0, 4, 5), (2, 0, 2, 4, 5), (0, 0, 4, 5)]
] + [
    pytest.param(
        lambda: leave_one_rater_out(torch.zeros(2, 0, 4, 5), torch.zeros(3, 2, 4, 5, dtype=torch.long)),
        r"`probs` of leave_one_rater_out must .*C >= 1.*; got \(2, 0, 4, 5\)",
        id="leave_one_rater_out",
    ),
    pytest.param(
        lambda: dice_score(*hard((2, C, 4, 5), 0), num_classes=0),
        r"`num_classes` of dice_score must be an int >= 1 or None; got 0\.",
        id="dice_score num_classes=0",
    ),
    pytest.param(
        lambda: generalized_energy_distance(*label_stacks((2, C, 4, 5), 0), num_classes=0),
        r"`num_classes` of generalized_energy_distance must be an int >= 2; got 0\.",
        id="generalized_energy_distance num_classes=0",
    ),
    pytest.param(
        lambda: embedding_compactness(*features((4, C), 0), num_classes=0),
        r"`num_classes` of embedding_compactness must be an int >= 2; got 0\.",
        id="embedding_compactness num_classes=0",
    ),
]


@pytest.mark.parametrize(("call", "pattern"), ZERO_CLASSES)
def test_zero_classes_of_a_functional_metric_is_a_clear_error(call, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", list(CLASSES))
def test_zero_classes_of_a_streaming_metric_is_a_clear_error(name):
    make, spec = CLASSES[name]
    metric = make()
    where = type(metric).__name__
    if spec.inputs in (hard, soft):  # probs with C = 0
        shape = (2, 0) if spec.layouts == ("cls",) else (2, 0, 4, 5)
        with pytest.raises(ValueError, match=rf"`probs` of {where} must .*C >= 1.*; got \(2, 0") as info:
            metric.update(torch.zeros(shape), torch.zeros(shape[:1] + shape[2:], dtype=torch.long))
        assert "\n" not in str(info.value)
    if where == "TopKAccuracy":
        return  # no num_classes option: the classes are those of probs
    kwargs = {"num_features": 2} if where == "EmbeddingCompactness" else {}
    with pytest.raises(ValueError, match=rf"`num_classes` of {where} must be an int >= [12]( or None)?; got 0\."):
        type(metric)(0, **kwargs)


# ----------------------------------------------------------------------------------------------------------- losses

LOSSES: dict[str, Callable[..., torch.nn.Module]] = {
    "SoftCrossEntropyLoss": SoftCrossEntropyLoss,
    "KLDivLoss": KLDivLoss,
    "DiceLoss": DiceLoss,
    "DiceLoss smooth=0 per image": lambda **kw: DiceLoss(smooth=0.0, batch=False, **kw),
    "DiceLoss smooth=0": lambda **kw: DiceLoss(smooth=0.0, **kw),
    "DiceLoss probabilities": lambda **kw: DiceLoss(activation=None, **kw),
    "DiceCELoss": DiceCELoss,
    "DiceCELoss smooth=0": lambda **kw: DiceCELoss(smooth=0.0, batch=False, **kw),
    "FocalLoss": FocalLoss,
    "FocalLoss FLSD-53": lambda **kw: FocalLoss(gamma_bands=FLSD53_BANDS, **kw),
    "MarginLoss": MarginLoss,
    "NACLLoss": NACLLoss,
    "DistillationLoss": lambda **kw: DistillationLoss(temperature=2.0, **kw),
    "VirtualTeacherLoss": lambda **kw: VirtualTeacherLoss(C, **kw),
    "OnlineLabelSmoothingLoss": lambda **kw: OnlineLabelSmoothingLoss(C, **kw),
}
LOSS_SHAPES = [(0, C), (0, C, 4, 5), (2, C, 0, 5), (0, C, 2, 4, 5), (2, C, 2, 0, 5), (2, C, 2, 4, 0)]


def loss_call(name: str, loss: torch.nn.Module, logits: Tensor, target: Tensor, **kwargs: object) -> Tensor:
    """Call ``loss``; probabilities in for ``activation=None``, a teacher for distillation."""
    if name == "DiceLoss probabilities":
        logits = torch.softmax(logits, dim=1)
    if name == "DistillationLoss" and "teacher" not in kwargs:
        kwargs["teacher"] = virtual_teacher(target, C, temperature=4.0)
    return loss(logits, target, **kwargs)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_of_an_empty_batch_is_a_clear_error(name, shape, reduction):
    logits = torch.zeros(shape, requires_grad=True)
    target = torch.zeros(shape[:1] + shape[2:], dtype=torch.long)
    loss = LOSSES[name]() if name.startswith("DiceCELoss") else LOSSES[name](reduction=reduction)
    where = name.split(" ")[0]
    pattern = rf"`input` of {where} is empty \(shape {re_shape(shape)}\): .*no loss"
    with pytest.raises(ValueError, match=pattern) as info:
        loss_call(name, loss, logits, target)
    assert "\n" not in str(info.value)


def re_shape(shape: tuple[int, ...]) -> str:
    return r"\(" + ", ".join(map(str, shape)) + (r",\)" if len(shape) == 1 else r"\)")


@pytest.mark.parametrize("shape", [(0, C), (0, C, 4, 5), (2, C, 2, 0, 5)], ids=str)
def test_training_method_on_an_empty_batch_says_the_batch_is_empty(shape):
    method = create_method("hard", C)
    target = method.make_target({"label": torch.zeros(shape[:1] + shape[2:], dtype=torch.long)})
    with pytest.raises(ValueError, match=r"`input` of SoftCrossEntropyLoss is empty") as info:
        method(torch.zeros(shape), target)
    assert "not finite" not in str(info.value)


@pytest.mark.parametrize("how", ["keep_mask", "weight", "ignore_index"])
@pytest.mark.parametrize("shape", [(4, C), (2, C, 4, 5), (1, C, 2, 3, 4)], ids=str)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_of_a_batch_with_every_voxel_left_out_is_zero_with_zero_gradient(name, shape, how):
    if name == "NACLLoss" and len(shape) == 2:
        return  # NACL is 2D/3D only
    maps = shape[:1] + shape[2:]
    logits = (3.0 * torch.randn(shape, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    target = torch.full(maps, 255) if how == "ignore_index" else _labels(maps, 0)
    options = {"ignore_index": 255} if how == "ignore_index" else {}
    kwargs: dict[str, object] = {"teacher": torch.full(shape, 1.0 / C)} if name == "DistillationLoss" else {}
    if how == "keep_mask":
        kwargs["keep_mask"] = torch.zeros(maps, dtype=torch.bool)
    elif how == "weight":
        kwargs["weight"] = torch.zeros(maps)
    composite = name.startswith("DiceCELoss")  # no reduction option: always the mean
    for reduction in ("mean",) if composite else ("mean", "sum"):
        loss = LOSSES[name](**options) if composite else LOSSES[name](**options, reduction=reduction)
        value = loss_call(name, loss, logits, target, **kwargs)
        (grad,) = torch.autograd.grad(value, logits)
        assert value.ndim == 0 and value.item() == 0.0, (name, reduction, value.item())
        assert torch.equal(grad, torch.zeros_like(grad)), (name, reduction)


def test_dice_loss_without_smoothing_and_a_masked_out_image_has_a_finite_gradient():
    logits = torch.randn(2, C, 4, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    target = _labels((2, 4, 5), 1)
    keep = torch.ones(2, 4, 5, dtype=torch.bool)
    keep[0] = False  # image 0 has no kept voxel: its classes are 0/0, left out of the mean
    value = DiceLoss(smooth=0.0, batch=False)(logits, target, keep_mask=keep)
    (grad,) = torch.autograd.grad(value, logits)
    assert bool(torch.isfinite(grad).all())
    assert torch.equal(grad[0], torch.zeros_like(grad[0]))
    # the value is the per-class Dice loss of image 1 alone, computed here in float64
    p = torch.softmax(logits[1].detach().double(), 0).reshape(C, -1).numpy()
    y = np.eye(C)[target[1].reshape(-1).numpy()].T
    tp = (p + y - np.abs(p - y)).sum(1) / 2
    expected = np.mean(1.0 - tp / (tp + 0.5 * (p.sum(1) - tp) + 0.5 * (y.sum(1) - tp)))
    assert value.item() == pytest.approx(expected, rel=1e-5)
