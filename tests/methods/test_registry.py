"""The method registry: a contract test over every registered name (timm-style), defaults, errors, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from softlabels.losses import DiceCELoss, SoftCrossEntropyLoss
from softlabels.methods import Method, create_method, list_methods, method_defaults, register_method
from softlabels.methods.registry import _REGISTRY
from softlabels.targets import boundary_label_smoothing
from tests.methods._batches import build, make_batch

REQUIRED = {
    "hard", "ls", "boundary_ls", "ols", "tfkd", "svls", "raters_mean", "raters_svls", "confidence_threshold",
    "confidence_soft", "confidence_weighted", "focal", "flsd", "mbls", "nacl", "dml",
}  # fmt: skip

CASES = [("segmentation", (2, 6, 7)), ("segmentation", (2, 3, 4, 5)), ("classification", (6,))]


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


@pytest.mark.parametrize("name", list_methods())
def test_every_entry_is_a_method_with_its_registry_name_tasks_and_description(name):
    method = create_method(name, 3)
    assert isinstance(method, Method) and method.name == name and method.num_classes == 3
    assert method.tasks == _REGISTRY[name][1] and method.description
    assert set(method_defaults(name)) <= set(method.params)


def test_defaults_and_params_record_the_resolved_values_for_provenance():
    assert method_defaults("ls") == {"epsilon": 0.1, "convention": "uniform", "ignore_index": None}
    assert method_defaults("boundary_ls")["epsilon"] == 0.5
    assert method_defaults("svls") == {"sigma": 1.0, "kernel_size": 3, "spacing": None}
    assert method_defaults("confidence_threshold")["tau"] == 0.6
    assert method_defaults("ols")["alpha"] == 0.5 and method_defaults("ols")["init"] == "uniform"
    method = create_method("ls", 4, epsilon=0.3)
    assert method.params == {"epsilon": 0.3, "convention": "uniform", "ignore_index": None}
    assert method.name == "ls" and method.tasks == ("classification", "segmentation")
    teacher_method = create_method("tfkd_self", 2, teacher=torch.nn.Linear(1, 2))
    assert teacher_method.params["teacher"] == "<Linear>"
    dml = create_method("dml", 3).loss
    assert isinstance(dml, DiceCELoss) and (dml.lambda_ce, dml.lambda_dice) == (0.25, 0.75)
    assert isinstance(create_method("hard", 3).loss, SoftCrossEntropyLoss)


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
    with pytest.raises(ValueError, match=r"`task` of list_methods .*got 'detection'"):
        list_methods("detection")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`sigma` of svls must be a finite float > 0; got -1"):
        create_method("svls", 3, sigma=-1.0).make_target(make_batch((1, 4, 4), 3, 0))
    with pytest.raises(KeyError, match=r"method 'raters_mean' needs the batch key\(s\) \['raters'\]"):
        create_method("raters_mean", 3).make_target({"label": torch.zeros(1, 4, 4, dtype=torch.long)})


def test_a_name_registers_once_and_a_new_entry_needs_only_its_decorator():
    with pytest.raises(ValueError, match=r"method 'svls' is already registered"):
        register_method("svls")(lambda num_classes, *, task=None: None)
    from softlabels.methods.targets import LabelTarget

    @register_method("_test_only_ce")
    def _entry(num_classes: int, *, task=None, weightless: bool = True) -> Method:
        """Plain CE, registered by this test."""
        return Method("_test_only_ce", SoftCrossEntropyLoss(), LabelTarget(num_classes))

    try:
        method = create_method("_test_only_ce", 2)
        assert "_test_only_ce" in list_methods() and method.description == "Plain CE, registered by this test."
        assert method_defaults("_test_only_ce") == {"weightless": True}
    finally:
        del _REGISTRY["_test_only_ce"]


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
    results = Path(__file__).parents[2] / "benchmarks" / "results" / "vls_sweep.json"
    chosen = json.loads(results.read_text())["chosen"]
    defaults = method_defaults("vls")
    assert {key: defaults[key] for key in ("m", "tau", "alpha")} == chosen
