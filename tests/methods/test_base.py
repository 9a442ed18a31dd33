"""The Method base: loss checks, epoch hooks and state, and the run hooks every method gets (RunContext)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import softlabels.training.run as run_module
from softlabels.losses import SoftCrossEntropyLoss
from softlabels.methods import VLS_KEY, Method, RunContext, create_method, list_methods
from softlabels.methods.targets import LabelTarget
from tests.methods._batches import make_batch


def context(**changes) -> RunContext:
    values = {
        "datamodule": None, "num_classes": 3, "spatial_dims": 2, "in_channels": 1, "seed": 0,
        "output_dir": Path("unused"), "load_checkpoint": dict, "load_network": lambda path, what: torch.nn.Identity(),
    }  # fmt: skip
    return RunContext(**{**values, **changes})


class NeedsWarmup(Method):
    """A method that needs a resource no run hook supplies."""

    def __init__(self) -> None:
        super().__init__("warmup", SoftCrossEntropyLoss(), LabelTarget(3))
        self.warm = False

    def prepare(self, **resources) -> None:
        self.warm = bool(resources.pop("warm"))

    @property
    def is_ready(self) -> bool:
        return self.warm


def test_non_finite_logits_and_wrong_class_count_raise_clear_errors():
    method = create_method("svls", 3)
    batch = make_batch((1, 4, 4), 3, 6)
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"the loss of method 'svls' is not finite; got 1 NaN/inf logit"):
        method(logits, method.make_target(batch))
    with pytest.raises(ValueError, match=r"`logits` of method 'svls' must have C=3 channels"):
        method(torch.zeros(1, 2, 4, 4), method.make_target(batch))
    with pytest.raises(TypeError, match=r"`batch` of method 'svls' must be a dict of tensors; got list"):
        method.make_target([batch["label"]])


def test_ols_state_lives_in_the_state_dict_of_a_holder_and_is_updated_by_the_hooks():
    holder = torch.nn.Module()
    holder.method = create_method("ols", 3)
    assert "method.loss.smoother.soft_labels" in holder.state_dict() and holder.method.has_batch_hook
    batch = {"label": torch.tensor([0, 1, 2, 0])}
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    target = holder.method.make_target(batch)
    holder.method.on_train_batch_end(logits, target)
    holder.method.on_train_epoch_end()
    rows = holder.method.loss.smoother.soft_labels
    assert rows[0].argmax() == 0 and rows[1].argmax() == 1
    torch.testing.assert_close(rows[2], torch.full((3,), 1 / 3, dtype=torch.float64))  # class 2: never correct
    assert not create_method("hard", 3).has_batch_hook


def test_a_method_without_preparation_has_no_op_run_hooks_and_refuses_resources():
    method = create_method("ls", 3)
    assert method.is_ready and method.missing_before_training() is None and method.provides == ()
    method.setup_run(context())
    method.prepare_run(context())  # nothing to do, nothing written
    assert method.missing_keys({"label"}) == [] and method.missing_keys({"image"}) == ["label"]
    with pytest.raises(ValueError, match=r"method 'ls' needs no preparation; got resources \['teacher'\]"):
        method.prepare(teacher=torch.nn.Identity())
    with pytest.raises(ValueError, match=r"method 'ls' needs no preparation; got `method.teacher_checkpoint` 't.ckpt'"):
        method.setup_run(context(teacher_checkpoint="t.ckpt"))  # refused, not ignored


def test_a_method_that_needs_what_no_hook_supplies_is_refused_by_its_own_query():
    method = NeedsWarmup()
    assert method.missing_before_training() == "is not ready: it needs `method.prepare(...)` first."
    method.prepare(warm=True)
    assert method.missing_before_training() is None


def test_keys_added_by_prepare_run_are_not_asked_of_the_data():
    vls = create_method("vls", 2)
    assert vls.provides == (VLS_KEY,) and vls.missing_keys({"image", "label"}) == []
    assert create_method("raters_mean", 2).missing_keys({"image", "label"}) == ["raters"]


def test_the_training_run_names_no_method():
    """training/run.py asks the method (hooks, missing_keys, missing_before_training); it never names one."""
    text = Path(run_module.__file__).read_text()
    named = [name for name in list_methods() if f'"{name}"' in text or f"'{name}'" in text]
    assert named == [] and "VLS_KEY" not in text and "tfkd" not in text
