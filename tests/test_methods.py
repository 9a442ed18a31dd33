"""The method registry: a contract test over every registered name (timm-style), defaults, errors, hooks, state."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.losses import DiceCELoss, DistillationLoss, FocalLoss, MarginLoss, NACLLoss, SoftCrossEntropyLoss
from softlabels.methods import Method, create_method, list_methods, method_defaults
from softlabels.targets import boundary_label_smoothing, fuse_raters, label_smoothing, svls, virtual_teacher

REQUIRED = {
    "hard", "ls", "boundary_ls", "ols", "tfkd", "svls", "raters_mean", "raters_svls", "confidence_threshold",
    "confidence_soft", "confidence_weighted", "focal", "flsd", "mbls", "nacl", "dml",
}  # fmt: skip


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


def assert_valid_target(target, num_classes: int, logits: torch.Tensor) -> None:
    t = target.target
    if t.is_floating_point():
        assert t.shape == logits.shape
        assert (t >= 0).all() and torch.allclose(t.sum(1), torch.ones(()), atol=1e-6)
    else:
        assert t.shape == logits.shape[:1] + logits.shape[2:]
        kept = t[t != 255]
        assert ((kept >= 0) & (kept < num_classes)).all()
    if target.weight is not None:
        assert (target.weight >= 0).all()
    if target.teacher is not None:
        assert torch.allclose(target.teacher.sum(1), torch.ones(()), atol=1e-6)


CASES = [("segmentation", (2, 6, 7)), ("segmentation", (2, 3, 4, 5)), ("classification", (6,))]


def test_required_names_are_registered():
    assert set(list_methods()) >= REQUIRED
    assert set(list_methods("classification")) >= {"hard", "ls", "ols", "tfkd", "tfkd_self", "focal", "flsd", "mbls"}
    assert {"svls", "nacl", "boundary_ls", "dml"}.isdisjoint(list_methods("classification"))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), case=st.sampled_from(CASES), num_classes=st.integers(2, 4))
def test_every_method_builds_a_valid_target_and_a_finite_loss_with_gradients(seed, case, num_classes):
    task, shape = case
    batch = make_batch(shape, num_classes, seed)
    spatial_dims = len(shape) - 1
    g = torch.Generator().manual_seed(seed + 1)
    for name in list_methods(task):
        method = build(name, num_classes, task, spatial_dims)
        logits = (3 * torch.randn(shape[0], num_classes, *shape[1:], generator=g)).requires_grad_(True)
        target = method.make_target(batch)
        assert_valid_target(target, num_classes, logits)
        loss = method(logits, target)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss), name
        assert logits.grad is not None and torch.isfinite(logits.grad).all(), name
        method.on_train_batch_end(logits.detach(), target)
        method.on_train_epoch_end()


def test_targets_are_what_the_target_functions_give():
    batch = make_batch((2, 5, 6), 3, 0)
    label = batch["label"]
    torch.testing.assert_close(create_method("svls", 3).make_target(batch).target, svls(label, 3))
    rater_mean = fuse_raters(batch["raters"].movedim(1, 0), 3)
    torch.testing.assert_close(create_method("raters_mean", 3).make_target(batch).target, rater_mean)
    torch.testing.assert_close(create_method("raters_svls", 3).make_target(batch).target, svls(rater_mean, 3))
    weighted = create_method("confidence_weighted", 3).make_target(batch)
    assert torch.equal(weighted.target, label) and torch.equal(weighted.weight, batch["confidence"])
    thresholded = create_method("confidence_threshold", 3, tau=0.5).make_target(batch).target
    assert torch.equal(thresholded, torch.where(batch["confidence"] >= 0.5, label, torch.zeros_like(label)))
    dml = create_method("dml", 3, source="raters_mean").make_target(batch)
    torch.testing.assert_close(dml.target, rater_mean)


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("epsilon", [0.2, 0.9])
def test_ls_loss_is_soft_ce_on_the_smoothed_target(convention, epsilon):
    batch = make_batch((2, 5, 6), 3, 2)
    batch["label"][0, 0] = 255
    logits = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    method = create_method("ls", 3, epsilon=epsilon, convention=convention, ignore_index=255)
    smoothed = label_smoothing(batch["label"], 3, epsilon=epsilon, convention=convention, ignore_index=255)
    keep = batch["label"] != 255
    expected = -(smoothed * torch.log_softmax(logits, 1)).sum(1)[keep].mean()
    torch.testing.assert_close(method(logits, method.make_target(batch)), expected)


def test_tfkd_loss_equals_distillation_against_the_explicit_virtual_teacher():
    batch = make_batch((2, 5, 6), 4, 4)
    logits = 3 * torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(5))
    for kl_reduction in ("batchmean", "mean"):
        method = create_method("tfkd", 4, temperature=6.0, kl_reduction=kl_reduction)
        teacher = virtual_teacher(batch["label"], 4, temperature=6.0)
        expected = DistillationLoss(0.95, kl_reduction=kl_reduction)(logits, batch["label"], teacher=teacher)
        torch.testing.assert_close(method(logits, method.make_target(batch)), expected)


def test_non_finite_logits_and_wrong_class_count_raise_clear_errors():
    method = create_method("svls", 3)
    batch = make_batch((1, 4, 4), 3, 6)
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"the loss of method 'svls' is not finite; got 1 NaN/inf logit"):
        method(logits, method.make_target(batch))
    with pytest.raises(ValueError, match=r"`logits` of method 'svls' must have C=3 channels"):
        method(torch.zeros(1, 2, 4, 4), method.make_target(batch))
    with pytest.raises(
        ValueError, match=r"`batch\['label'\]` of make_target must hold class indices in \[0, 3\); got 3"
    ):
        create_method("hard", 3).make_target({"label": torch.full((1, 4, 4), 3)})
    soft = torch.full((1, 3, 4, 4), 0.5)
    with pytest.raises(ValueError, match=r"`soft_label` of batch\['soft_label'\] must sum to 1"):
        create_method("soft_label", 3).make_target({"soft_label": soft})


def test_channel_first_labels_as_monai_collates_them():
    batch = make_batch((2, 5, 6), 3, 1)
    channel_first = {**batch, "label": batch["label"].unsqueeze(1), "confidence": batch["confidence"].unsqueeze(1)}
    for name in ("hard", "svls", "confidence_soft"):
        method = create_method(name, 3)
        torch.testing.assert_close(method.make_target(channel_first).target, method.make_target(batch).target)


def test_defaults_are_the_spec_defaults():
    assert method_defaults("ls") == {"epsilon": 0.1, "convention": "uniform", "ignore_index": None}
    assert method_defaults("boundary_ls")["epsilon"] == 0.5
    assert method_defaults("svls") == {"sigma": 1.0, "kernel_size": 3, "spacing": None}
    assert method_defaults("confidence_threshold")["tau"] == 0.6
    assert method_defaults("ols")["alpha"] == 0.5 and method_defaults("ols")["init"] == "uniform"
    tfkd = method_defaults("tfkd")
    assert (tfkd["alpha"], tfkd["temperature"], tfkd["correct_probability"], tfkd["multiplier"]) == (
        0.95,
        40.0,
        0.99,
        1.0,
    )
    assert method_defaults("tfkd_self")["temperature"] == 6.0
    # the authors' nn.KLDivLoss() default 'mean' (÷ N·C), for both variants, in the registry and the loss classes
    assert tfkd["kl_reduction"] == method_defaults("tfkd_self")["kl_reduction"] == "mean"
    assert create_method("tfkd", 3).loss.kl_reduction == create_method("tfkd_self", 3).loss.kl_reduction == "mean"
    assert DistillationLoss().kl_reduction == "mean"
    focal = create_method("focal", 3).loss
    assert isinstance(focal, FocalLoss) and focal.gamma == 3.0 and focal.gamma_bands == ()
    assert create_method("flsd", 3).loss.gamma_bands == ((0.2, 5.0), (0.5, 3.0))
    mbls_cls, mbls_seg = create_method("mbls", 3, task="classification"), create_method("mbls", 3, task="segmentation")
    assert isinstance(mbls_cls.loss, MarginLoss) and mbls_cls.loss.margin == 10.0 and mbls_seg.loss.margin == 5.0
    assert mbls_cls.loss.lambda_margin == 0.1 and mbls_seg.params["margin"] == 5.0
    nacl = create_method("nacl", 3).loss
    assert isinstance(nacl, NACLLoss) and nacl.lambda_nacl == 0.1 and nacl.window["kernel_size"] == 3
    assert (nacl.window["kernel"], nacl.window["padding"]) == ("mean", "background")
    assert method_defaults("nacl")["padding"] is None and create_method("nacl", 3).params["padding"] == "background"
    dml = create_method("dml", 3).loss
    assert isinstance(dml, DiceCELoss) and (dml.lambda_ce, dml.lambda_dice) == (0.25, 0.75)
    assert isinstance(create_method("hard", 3).loss, SoftCrossEntropyLoss)


def test_params_record_the_resolved_values_for_provenance():
    method = create_method("ls", 4, epsilon=0.3)
    assert method.params == {"epsilon": 0.3, "convention": "uniform", "ignore_index": None}
    assert method.name == "ls" and method.tasks == ("classification", "segmentation")
    teacher_method = create_method("tfkd_self", 2, teacher=torch.nn.Linear(1, 2))
    assert teacher_method.params["teacher"] == "<Linear>"


def test_unknown_names_and_parameters_give_clear_errors():
    with pytest.raises(
        ValueError, match=r"`name` of create_method must be one of .*'svls'.*got 'svsl' \(did you mean 'svls'\?\)"
    ):
        create_method("svsl", 3)
    with pytest.raises(
        ValueError,
        match=r"unknown parameter\(s\) \['sigmaa'\] of method 'svls' .*valid: \['kernel_size', 'sigma', 'spacing'\]",
    ):
        create_method("svls", 3, sigmaa=2.0)
    with pytest.raises(ValueError, match=r"method 'nacl' of create_method is defined for \['segmentation'\]"):
        create_method("nacl", 3, task="classification")
    with pytest.raises(ValueError, match=r"`task` of create_method .*got 'detection'"):
        create_method("hard", 3, task="detection")
    with pytest.raises(ValueError, match=r"`sigma` of svls must be a finite float > 0; got -1"):
        create_method("svls", 3, sigma=-1.0).make_target(make_batch((1, 4, 4), 3, 0))
    with pytest.raises(KeyError, match=r"method 'raters_mean' needs the batch key\(s\) \['raters'\]"):
        create_method("raters_mean", 3).make_target({"label": torch.zeros(1, 4, 4, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"`source` of method 'dml' .*got 'raters'"):
        create_method("dml", 3, source="raters")


def test_ols_state_lives_in_the_state_dict_of_a_holder_and_is_updated_by_the_hooks():
    holder = torch.nn.Module()
    holder.method = create_method("ols", 3)
    assert "method.loss.smoother.soft_labels" in holder.state_dict()
    batch = {"label": torch.tensor([0, 1, 2, 0])}
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    target = holder.method.make_target(batch)
    holder.method.on_train_batch_end(logits, target)
    holder.method.on_train_epoch_end()
    rows = holder.method.loss.smoother.soft_labels
    assert rows[0].argmax() == 0 and rows[1].argmax() == 1
    torch.testing.assert_close(rows[2], torch.full((3,), 1 / 3, dtype=torch.float64))  # class 2: never correct


def test_tfkd_self_needs_a_teacher_that_is_not_trained_with_the_student():
    method = create_method("tfkd_self", 3)
    batch = {"label": torch.tensor([0, 2]), "image": torch.randn(2, 1)}
    assert not method.is_ready and create_method("ls", 3).is_ready
    with pytest.raises(ValueError, match=r"needs a trained teacher network"):
        method.make_target(batch)
    teacher = torch.nn.Linear(1, 3)
    method.prepare(teacher=teacher)
    assert method.is_ready and method.description.startswith("Teacher-free KD, self-training variant")
    target = method.make_target(batch)
    torch.testing.assert_close(target.teacher, torch.softmax(teacher(batch["image"]).detach() / 6.0, 1))
    assert list(method.parameters()) == [] and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match=r"method 'ls' needs no preparation"):
        create_method("ls", 3).prepare(teacher=teacher)


def test_ignore_index_drops_ignored_voxels():
    labels = torch.tensor([[[0, 1, 255]]])
    logits = torch.randn(1, 2, 1, 3)
    for name in ("ls", "hard", "focal", "tfkd", "boundary_ls", "ols", "dml"):
        method = create_method(name, 2, ignore_index=255)
        cropped = create_method(name, 2)
        expected = cropped(logits[..., :2], cropped.make_target({"label": labels[..., :2]}))
        if name == "boundary_ls":  # the window of voxel 1 touches the ignored voxel: no smoothing there
            q = boundary_label_smoothing(labels, 2, epsilon=0.5, ignore_index=255)[..., :2]
            expected = -(q * torch.log_softmax(logits[..., :2], 1)).sum(1).mean()
        torch.testing.assert_close(method(logits, method.make_target({"label": labels})), expected, msg=name)


def test_vls_defaults_are_the_validation_sweeps_choice():
    """The paper gives no m, τ, α: the registry uses what benchmarks/vls_sweep.py chose on validation data."""
    import json
    from pathlib import Path

    chosen = json.loads((Path(__file__).parents[1] / "benchmarks" / "results" / "vls_sweep.json").read_text())["chosen"]
    defaults = method_defaults("vls")
    assert {key: defaults[key] for key in ("m", "tau", "alpha")} == chosen
