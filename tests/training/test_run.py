"""Configured runs end to end: files written, final metrics, resume after a kill, bad checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from softlabels.training.config import config_from_dict
from softlabels.training.run import build_run, load_run, train

QUIET = {"accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 1, "deterministic": True}


def seg_config(out, **changes):
    values = {
        "task": "segmentation",
        "seed": 3,
        "output_dir": str(out),
        "data": {"source": "synthetic_segmentation", "options": {"shape": [24, 24], "num_cases": [16, 8, 8]},
                 "batch_size": 4},
        "model": {"name": "small_unet"},
        "method": {"name": "svls"},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "trainer": {"max_epochs": 3, **QUIET},
        "evaluation": {"metrics": ["dice", "ece", "nll", "brier"]},
    }  # fmt: skip
    values.update(changes)
    return config_from_dict(values)


def test_train_writes_checkpoints_logs_config_and_final_metrics(tmp_path):
    metrics = train(seg_config(tmp_path / "run", trainer={"max_epochs": 2, **QUIET}))
    out = tmp_path / "run"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch=000.ckpt", "epoch=001.ckpt", "last.ckpt"]
    assert (out / "config.yaml").is_file() and list((out / "logs").glob("version_*/metrics.csv"))
    stored = json.loads((out / "final_metrics.json").read_text())
    assert stored == pytest.approx(metrics) and {"val/dice", "val/ece", "val/nll", "val/loss"} <= set(stored)
    assert all(0 <= stored[k] <= 1 for k in ("val/dice", "val/ece"))


def test_an_empty_training_split_is_one_clear_error_and_writes_nothing(tmp_path):
    import numpy as np

    from tests.data.test_folders import make_folder

    make_folder(tmp_path / "seg", np.random.default_rng(0), dims=2, cases=["a", "b", "c", "d"])
    data = {"source": "folder", "options": {"root": str(tmp_path / "seg"), "num_classes": 3, "fractions": [0, 0, 1]}}
    with pytest.raises(ValueError, match="training split is empty"):
        train(seg_config(tmp_path / "run", data=data))
    assert not (tmp_path / "run").exists()


def test_load_model_rebuilds_the_trained_model_without_its_data(tmp_path):
    from softlabels.training.run import load_model

    train(seg_config(tmp_path / "run", trainer={"max_epochs": 1, **QUIET}))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    _, _, with_data = load_run(checkpoint)
    config, alone = load_model(checkpoint)
    assert config.method.name == "svls" and alone.data_shape == with_data.data_shape
    assert alone.input_pipeline == with_data.input_pipeline == {**alone.input_pipeline, "spatial_dims": 2}
    image = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(alone.predict_logits(image), with_data.predict_logits(image))


def test_classification_run_and_ols_state_in_the_checkpoint(tmp_path):
    config = config_from_dict({
        "task": "classification", "seed": 1, "output_dir": str(tmp_path / "cls"),
        "data": {"source": "synthetic_classification", "options": {"num_items": [32, 16, 16]}, "batch_size": 8},
        "model": {"name": "small_cnn"}, "method": {"name": "ols"}, "trainer": {"max_epochs": 2, **QUIET},
    })  # fmt: skip
    metrics = train(config)
    assert {"val/top1", "val/top5", "val/ece", "val/nll", "val/brier"} <= set(metrics)
    _, _, task = load_run(tmp_path / "cls" / "checkpoints" / "last.ckpt")
    rows = task.method.loss.smoother.soft_labels
    assert not torch.allclose(rows, torch.full_like(rows, 1 / 8))  # updated by the epoch hook, saved, restored
    torch.testing.assert_close(rows.sum(1), torch.ones(8, dtype=torch.float64))


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    from softlabels.training.config import config_from_dict
    from softlabels.training.run import train
    import json

    class Kill(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    train(config_from_dict(json.loads(open(sys.argv[1]).read())), callbacks=[Kill()])
    """
)


def test_a_run_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_run(tmp_path):
    uninterrupted = train(seg_config(tmp_path / "straight"))
    killed = seg_config(tmp_path / "killed")
    values = json.loads(json.dumps({**vars(killed)}, default=vars))
    (tmp_path / "cfg.json").write_text(json.dumps(values))
    (tmp_path / "killer.py").write_text(KILLER)
    # 4 steps per epoch: step 6 is in the middle of the second epoch
    done = subprocess.run([sys.executable, str(tmp_path / "killer.py"), str(tmp_path / "cfg.json"), "6"], timeout=300)
    assert done.returncode == -9
    checkpoints = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert checkpoints == ["epoch=000.ckpt", "last.ckpt"]  # epoch 2 never finished: no partial file either
    resumed = train(killed, resume=True)
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        assert resumed[key] == pytest.approx(uninterrupted[key], rel=1e-5, abs=1e-7), key


def test_resume_without_checkpoint_and_foreign_checkpoints_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing to resume: no complete checkpoint in '.*checkpoints'"):
        train(seg_config(tmp_path / "none"), resume=True)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match=r"was not written by `softlabels train`"):
        load_run(foreign)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"checkpoint '.*broken.ckpt' could not be read"):
        load_run(broken)


def test_tfkd_self_loads_its_teacher_from_a_checkpoint_and_refuses_to_train_without_one(tmp_path):
    teacher_run = seg_config(tmp_path / "teacher", trainer={"max_epochs": 1, **QUIET})
    train(teacher_run)
    teacher = str(tmp_path / "teacher/checkpoints/last.ckpt")
    student = seg_config(
        tmp_path / "student",
        method={"name": "tfkd_self", "teacher_checkpoint": teacher},
        trainer={"max_epochs": 1, **QUIET},
    )
    _, task = build_run(student)
    assert task.method.is_ready
    assert "val/loss" in train(student)
    no_teacher = seg_config(tmp_path / "alone", method={"name": "tfkd_self"}, trainer={"max_epochs": 1, **QUIET})
    with pytest.raises(ValueError, match=r"'tfkd_self' needs a trained teacher: set `method.teacher_checkpoint`"):
        train(no_teacher)
    assert not (tmp_path / "alone").exists()  # refused before anything was written


@pytest.mark.parametrize("terminal", [True, False])
def test_make_trainer_shows_a_plain_progress_bar_on_a_terminal_only(tmp_path, monkeypatch, terminal):
    import lightning.pytorch.trainer.connectors.callback_connector as connector
    from lightning.pytorch.callbacks import ModelSummary, TQDMProgressBar

    from softlabels.training.config import RunConfig
    from softlabels.training.run import make_trainer

    monkeypatch.setattr(connector, "_RICH_AVAILABLE", True)  # a user environment with rich: still plain text
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    trainer = make_trainer(RunConfig(output_dir=str(tmp_path)))
    assert RunConfig().trainer.enable_progress_bar is None
    assert type(trainer.progress_bar_callback) is (TQDMProgressBar if terminal else type(None))
    assert [type(c) for c in trainer.callbacks if isinstance(c, ModelSummary)] == [ModelSummary]
    forced = make_trainer(RunConfig(output_dir=str(tmp_path)), enable_progress_bar=True, enable_model_summary=False)
    assert type(forced.progress_bar_callback) is TQDMProgressBar
    assert not any(isinstance(c, ModelSummary) for c in forced.callbacks)


def test_make_trainer_silences_exactly_the_lightning_noise(tmp_path):
    import logging
    import warnings

    from lightning.fabric.utilities.warnings import PossibleUserWarning

    from softlabels.training.config import RunConfig
    from softlabels.training.run import make_trainer

    make_trainer(RunConfig(output_dir=str(tmp_path)), enable_progress_bar=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # what a plain `python -m softlabels` starts with, before make_trainer
        make_trainer(RunConfig(output_dir=str(tmp_path)), enable_progress_bar=False)
        leaf = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
        warnings.warn_explicit(leaf, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities._pytree")
        warnings.warn_explicit(leaf, FutureWarning, "mine.py", 1, module="mine")  # the same text elsewhere: kept
        interval = "The number of training batches (2) is smaller than the logging interval Trainer(...)."
        warnings.warn_explicit(interval, PossibleUserWarning, "fit_loop.py", 321, module="lightning.pytorch.loops")
        warnings.warn_explicit("does not have many workers", PossibleUserWarning, "x.py", 1, module="lightning")
    assert [(str(w.message)[:26], w.filename) for w in seen] == [
        (leaf[:26], "mine.py"),
        ("does not have many workers", "x.py"),
    ]
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    lines = ["💡 Tip: try litlogger", "TPU available: False, using: 0 TPU cores", "GPU available: False, used: False"]
    kept = [
        line
        for line in lines
        if all(f.filter(logger.makeRecord("x", 20, "f", 1, line, (), None)) for f in logger.filters)
    ]
    assert kept == ["GPU available: False, used: False"]
