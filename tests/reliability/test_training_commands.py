"""Reliability corpus: `train`, `evaluate`, `calibrate` and `predict` refuse bad input in one line and touch nothing.

Each case: a snapshot of every folder the command could write, the command (exit 2, one stderr line naming the file
or value), the same snapshot afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from softlabels.cli import main
from tests.reliability._corpus import snapshot, user_error

QUIET = {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 1}
CLASSIFICATION = {
    "task": "classification",
    "data": {"source": "synthetic_classification", "options": {"num_items": [16, 8, 8]}, "batch_size": 8},
    "model": {"name": "small_cnn"},
    "trainer": QUIET,
}
SEGMENTATION = {
    "task": "segmentation",
    "data": {"source": "synthetic_segmentation", "options": {"shape": [16, 16], "num_cases": [4, 2, 2]},
             "batch_size": 2},
    "model": {"name": "small_unet"},
    "trainer": QUIET,
}  # fmt: skip


def write_config(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained classification and segmentation run (module-wide; tests copy what they modify)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, values in (("cls", CLASSIFICATION), ("seg", SEGMENTATION)):
        config = write_config(root / f"{name}.yaml", values)
        assert main(["train", "--config", str(config), "--output_dir", str(root / name)]) == 0
        out[name] = (config, root / name)
    return out


@pytest.fixture
def cls_run(runs, tmp_path):
    """A private copy of the trained classification run and its config."""
    config, run = runs["cls"]
    copy = tmp_path / "run"
    shutil.copytree(run, copy, symlinks=True)
    return config, copy


# --- train: a refused run leaves an earlier run byte for byte --------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (["--optimizer", '{"name": "adamww", "lr": 0.1}'], ["optimizer.name", "did you mean 'adamw'"]),
        (["--optimizer", '{"name": "sgd", "lr": "fast"}'], ["optimizer.lr", "'fast'"]),
        (["--optimizer", '{"name": "sgd", "lr": 0.1, "momentum": 2}'], ["optimizer.momentum", "2"]),
        (["--scheduler", '{"name": "multistep", "milestones": [8, 4]}'], ["scheduler.milestones", "[8, 4]"]),
        (["--scheduler", '{"name": "step", "step_size": 0}'], ["scheduler.step_size", "0"]),
        (["--method.name", "ls", "--method.options", '{"epsilon": 2}'], ["epsilon", "2"]),
        (["--method.name", "raters_mean", "--data.options", '{"num_items": [8, 4, 4], "num_raters": 0}'], ["raters"]),
        (["--model.options", '{"channels": []}'], ["channels"]),
        (["--data.options", '{"num_items": [0, 4, 4]}'], ["num_items"]),
    ],
)
def test_overwrite_with_a_bad_config_leaves_the_earlier_run_intact(cls_run, capsys, options, needles):
    config, run = cls_run
    before = snapshot(run)
    argv = ["train", "--config", str(config), "--output_dir", str(run), "--overwrite", *options]
    user_error(argv, capsys, *needles)
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "options",
    [
        ["--optimizer", '{"name": "sgd", "lr": "fast"}'],
        ["--scheduler", '{"name": "cosine", "eta_min": -1}'],
        ["--method.name", "svls"],  # a segmentation method on classification data
        ["--method.name", "tfkd_self"],  # needs a teacher checkpoint
        ["--trainer.precision", "17"],
    ],
)
def test_config_errors_found_at_training_start_leave_no_run_folder(runs, tmp_path, capsys, options):
    config, _ = runs["cls"]
    out = tmp_path / "new-run"
    user_error(["train", "--config", str(config), "--output_dir", str(out), *options], capsys)
    assert not out.exists()


def test_a_method_reading_keys_the_data_lacks_is_refused_before_training(runs, tmp_path, capsys):
    config, _ = runs["cls"]
    out = tmp_path / "run"
    argv = ["train", "--config", str(config), "--output_dir", str(out), "--method.name", "raters_mean",
            "--data.options", '{"num_items": [8, 4, 4], "num_raters": 0}']  # fmt: skip
    user_error(argv, capsys, "method 'raters_mean' needs the data key(s) ['raters']", "synthetic_classification")
    assert not out.exists()


def test_resume_with_a_config_that_no_longer_fits_refuses_before_writing(cls_run, capsys):
    config, run = cls_run
    before = snapshot(run)
    argv = ["train", "--config", str(config), "--output_dir", str(run), "--resume", "--trainer.max_epochs", "2"]
    user_error([*argv, "--model.options", '{"channels": [4, 8]}'], capsys, "--resume", "last.ckpt", "does not fit")
    user_error([*argv, "--method.name", "ols"], capsys, "--resume", "missing key(s)", "smoother")
    user_error([*argv, "--optimizer", '{"name": "adamw", "lr": 0.1, "betas": [0.9]}'], capsys, "optimizer.betas")
    assert snapshot(run) == before


def test_resume_and_overwrite_together_are_refused(cls_run, capsys):
    config, run = cls_run
    before = snapshot(run)
    user_error(["train", "--config", str(config), "--output_dir", str(run), "--resume", "--overwrite"], capsys,
               "--resume", "--overwrite")  # fmt: skip
    assert snapshot(run) == before


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("", ["empty.yaml", "is empty"]),
        ("# only a comment\n", ["empty.yaml", "is empty"]),
        ("- a\n- b\n", ["empty.yaml", "must hold a mapping"]),
        ("task: classification\ndata: {batch_size: 4}\nmodel: {name: small_cnn}\ndata: {batch_size: 8}\n",
         ["empty.yaml", "duplicate key 'data' on lines 2 and 4"]),
        ("task: classification\ntrainer:\n  max_epochs: 1\n  max_epochs: 2\n", ["duplicate key 'max_epochs'"]),
        ("task: [classification\n", ["empty.yaml", "is not valid", "line"]),
        ("optimizer: {name: sgd, lr: fast}\n", ["optimizer.lr", "'fast'"]),
    ],
)  # fmt: skip
def test_bad_config_files_are_one_line_and_create_nothing(tmp_path, capsys, content, needles):
    config = tmp_path / "empty.yaml"
    config.write_text(content)
    out = tmp_path / "run"
    user_error(["train", "--config", str(config), "--output_dir", str(out), "--data.source",
                "synthetic_classification", "--model.name", "small_cnn", "--task", "classification"], capsys,
               *needles)  # fmt: skip
    assert not out.exists()


def test_a_config_file_that_is_a_folder_or_missing(tmp_path, capsys):
    user_error(["train", "--config", str(tmp_path)], capsys, str(tmp_path), "is a folder")
    user_error(["train", "--config", str(tmp_path / "nope.yaml")], capsys, "nope.yaml")


def test_output_dir_that_is_a_file_or_lies_under_a_file(runs, tmp_path, capsys):
    config, _ = runs["cls"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = snapshot(tmp_path)
    user_error(["train", "--config", str(config), "--output_dir", str(blocker)], capsys, "output_dir", "not a folder")
    user_error(["train", "--config", str(config), "--output_dir", str(blocker / "run")], capsys,
               "output_dir", "is a file")  # fmt: skip
    assert snapshot(tmp_path) == before


# --- evaluate / calibrate / predict -----------------------------------------------------------------------------------


def flip_a_weight_byte(source: Path, target: Path) -> None:
    """Copy a checkpoint with one byte of a weight tensor flipped (the zip entry's data, not its header)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # the local header is 30 B
    data[start + info.file_size // 2] ^= 0x01
    target.write_bytes(bytes(data))


def test_bad_checkpoints_are_one_line(runs, tmp_path, capsys):
    _, run = runs["cls"]
    out = tmp_path / "out"
    damaged = tmp_path / "damaged.ckpt"
    flip_a_weight_byte(run / "checkpoints" / "last.ckpt", damaged)
    before = snapshot(tmp_path)
    user_error(["evaluate", "--checkpoint", str(damaged), "--output", str(out)], capsys, "damaged.ckpt", "CRC")
    user_error(["predict", "--checkpoint", str(damaged), "--output", str(out)], capsys, "damaged.ckpt")
    folder = run / "checkpoints"
    for command in (["evaluate", "--output", str(out)], ["calibrate"], ["predict", "--output", str(out)]):
        argv = [command[0], "--checkpoint", str(folder), *command[1:]]
        user_error(argv, capsys, str(folder), "is a folder", "last.ckpt")
    assert snapshot(tmp_path) == before


def test_weights_that_no_longer_fit_the_stored_model(runs, tmp_path, capsys):
    _, run = runs["cls"]
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    state["softlabels_config"]["model"]["options"] = {"channels": [4, 8]}  # the stored model is now another network
    edited = tmp_path / "edited.ckpt"
    torch.save(state, edited)
    before = snapshot(tmp_path)
    user_error(["evaluate", "--checkpoint", str(edited), "--output", str(tmp_path / "o")], capsys,
               "edited.ckpt", "does not fit the model", "other shapes")  # fmt: skip
    user_error(["calibrate", "--checkpoint", str(edited)], capsys, "edited.ckpt", "does not fit the model")
    assert snapshot(tmp_path) == before


def test_evaluation_data_with_another_number_of_classes(runs, tmp_path, capsys):
    _, run = runs["seg"]
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"data": {**SEGMENTATION["data"],
                                             "options": {**SEGMENTATION["data"]["options"], "num_classes": 3}}}))
    before = snapshot(tmp_path)
    argv = ["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--output", str(tmp_path / "o"),
            "--data-config", str(data)]  # fmt: skip
    user_error(argv, capsys, "num_classes 3 (trained on 2)", "last.ckpt")
    assert snapshot(tmp_path) == before


def test_a_duplicated_key_in_a_data_config(runs, tmp_path, capsys):
    _, run = runs["seg"]
    data = tmp_path / "data.yaml"
    data.write_text("data: {batch_size: 2}\ndata: {batch_size: 4}\n")
    argv = ["evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--output", str(tmp_path / "o"),
            "--data-config", str(data)]  # fmt: skip
    user_error(argv, capsys, "data.yaml", "duplicate key 'data'")
    assert not (tmp_path / "o").exists()


def test_output_paths_that_cannot_be_written(runs, tmp_path, capsys):
    _, run = runs["seg"]
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = snapshot(tmp_path, run)
    for command in ("evaluate", "predict"):
        user_error([command, "--checkpoint", checkpoint, "--output", str(blocker)], capsys, str(blocker))
        user_error([command, "--checkpoint", checkpoint, "--output", str(blocker / "o")], capsys, "is a file")
    user_error(["calibrate", "--checkpoint", checkpoint, "--output", str(tmp_path)], capsys, "is a folder")
    user_error(["calibrate", "--checkpoint", checkpoint, "--output", str(blocker / "c.ckpt")], capsys, "is a file")
    user_error(["calibrate", "--checkpoint", checkpoint, "--output", checkpoint], capsys, "is the input checkpoint")
    assert snapshot(tmp_path, run) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_output_folders_without_write_permission(runs, tmp_path, capsys):
    _, run = runs["seg"]
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    for command in ("evaluate", "predict"):
        user_error([command, "--checkpoint", checkpoint, "--output", str(locked / "o")], capsys, "not writable")


def test_predict_refuses_a_folder_with_foreign_files(runs, tmp_path, capsys):
    _, run = runs["seg"]
    out = tmp_path / "pred"
    (out / "masks" / "mine").mkdir(parents=True)
    (out / "masks" / "mine" / "notes.txt").write_text("keep me")
    before = snapshot(out)
    user_error(["predict", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--output", str(out)], capsys,
               str(out), "masks/mine/notes.txt")  # fmt: skip
    assert snapshot(out) == before


def test_predict_into_its_own_earlier_output_replaces_exactly_it(runs, tmp_path, capsys):
    _, run = runs["seg"]
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", checkpoint, "--output", str(out), "--thresholds", "0.1,0.5"]) == 0
    assert main(["predict", "--checkpoint", checkpoint, "--output", str(out), "--thresholds", "0.9",
                 "--split", "val"]) == 0  # fmt: skip
    manifest = json.loads((out / "predictions.json").read_text())
    on_disk = sorted(str(p) for p in out.rglob("*") if p.is_file() and p.name != "predictions.json")
    assert on_disk == sorted(manifest["files"]) and manifest["thresholds"] == [0.9]
    assert all(Path(f).name.startswith("t0.90") or "/probs/" in f for f in on_disk)  # no t0.10 / t0.50 left behind
    assert [p.name for p in tmp_path.iterdir()] == ["pred"]  # no staging folder left
