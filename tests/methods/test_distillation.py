"""tfkd and tfkd_self: the losses against the explicit teachers, and tfkd_self's teacher through its run hook."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from softlabels.losses import DistillationLoss
from softlabels.methods import RunContext, create_method, method_defaults
from softlabels.methods.distillation import SelfDistillationMethod, SelfTeacherTarget
from softlabels.targets import virtual_teacher
from tests.methods._batches import make_batch


def context(teacher_checkpoint, load_network) -> RunContext:
    return RunContext(
        None, num_classes=3, spatial_dims=0, in_channels=1, seed=0, output_dir=Path("unused"), load_checkpoint=dict,
        load_network=load_network, teacher_checkpoint=teacher_checkpoint,
    )  # fmt: skip


def test_tfkd_loss_equals_distillation_against_the_explicit_virtual_teacher():
    batch = make_batch((2, 5, 6), 4, 4)
    logits = 3 * torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(5))
    for kl_reduction in ("batchmean", "mean"):
        method = create_method("tfkd", 4, temperature=6.0, kl_reduction=kl_reduction)
        teacher = virtual_teacher(batch["label"], 4, temperature=6.0)
        expected = DistillationLoss(0.95, kl_reduction=kl_reduction)(logits, batch["label"], teacher=teacher)
        torch.testing.assert_close(method(logits, method.make_target(batch)), expected)


def test_defaults_are_the_authors_code():
    tfkd = method_defaults("tfkd")
    assert (tfkd["alpha"], tfkd["temperature"], tfkd["correct_probability"], tfkd["multiplier"]) == (
        0.95, 40.0, 0.99, 1.0,
    )  # fmt: skip
    assert method_defaults("tfkd_self")["temperature"] == 6.0
    # the authors' nn.KLDivLoss() default 'mean' (÷ N·C), for both variants, in the registry and the loss classes
    assert tfkd["kl_reduction"] == method_defaults("tfkd_self")["kl_reduction"] == "mean"
    assert create_method("tfkd", 3).loss.kl_reduction == create_method("tfkd_self", 3).loss.kl_reduction == "mean"
    assert DistillationLoss().kl_reduction == "mean"


def test_tfkd_self_needs_a_teacher_that_is_not_trained_with_the_student():
    method = create_method("tfkd_self", 3)
    batch = {"label": torch.tensor([0, 2]), "image": torch.randn(2, 1)}
    assert isinstance(method, SelfDistillationMethod)
    assert not method.is_ready and create_method("ls", 3).is_ready
    with pytest.raises(ValueError, match=r"needs a trained teacher network"):
        method.make_target(batch)
    teacher = torch.nn.Linear(1, 3)
    method.prepare(teacher=teacher)
    assert method.is_ready and method.description.startswith("Teacher-free KD, self-training variant")
    target = method.make_target(batch)
    torch.testing.assert_close(target.teacher, torch.softmax(teacher(batch["image"]).detach() / 6.0, 1))
    assert list(method.parameters()) == [] and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match=r"method 'tfkd_self' takes teacher= only; got resources \['soft_labels'\]"):
        method.prepare(soft_labels="x")
    with pytest.raises(TypeError, match=r"`teacher` of method 'tfkd_self' must be an nn.Module; got str"):
        method.prepare(teacher="t.ckpt")


def test_the_setup_run_hook_loads_the_teacher_of_the_config_and_says_what_is_missing_without_one():
    loaded = []

    def load_network(path: str, what: str) -> torch.nn.Module:
        loaded.append((path, what))
        return torch.nn.Linear(1, 3)

    method = create_method("tfkd_self", 3)
    method.setup_run(context(None, load_network))
    assert loaded == [] and not method.is_ready
    assert method.missing_before_training() == (
        "needs a trained teacher: set `method.teacher_checkpoint` to a checkpoint of `softlabels train`."
    )
    method.setup_run(context("runs/teacher/last.ckpt", load_network))
    assert loaded == [("runs/teacher/last.ckpt", "method.teacher_checkpoint")]
    assert method.is_ready and method.missing_before_training() is None
    assert isinstance(method.build_target, SelfTeacherTarget) and method.build_target.teacher is not None
    method.prepare_run(context(None, load_network))  # nothing more to do before fitting


def test_a_teacher_of_another_class_count_is_refused_at_the_first_batch():
    method = create_method("tfkd_self", 3, teacher=torch.nn.Linear(1, 2))
    with pytest.raises(ValueError, match=r"the teacher of 'tfkd_self' gives 2 classes; expected 3"):
        method.make_target({"label": torch.tensor([0]), "image": torch.zeros(1, 1)})
