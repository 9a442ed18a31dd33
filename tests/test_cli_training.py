"""The training commands of the CLI: every bad option, file or checkpoint is one line on stderr and exit status 2."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from softlabels.cli import main

CONFIG = {
    "task": "segmentation",
    "data": {
        "source": "synthetic_segmentation",
        "options": {"shape": [16, 16], "num_cases": [4, 2, 2]},
        "batch_size": 2,
    },
    "model": {"name": "small_unet"},
    "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["train", "--config", str(config), "--output_dir", str(root / "run")]) == 0
    return config, root / "run"


def error_of(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"softlabels {argv[0]}: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (["--trainer.max_epochs", "x"], 'key "trainer.max_epochs"'),
        (["--trainer.max_epoch", "3"], "unrecognized arguments: --trainer.max_epoch 3"),  # no silent abbreviation
        (["--task", "detection"], "task"),
        (["--method.name", "lss"], "did you mean 'ls'"),
        (["--model.name", "unte"], "`name` of create_model .*did you mean 'unet'"),
        (["--data.source", "foo"], "`data.source` of the run config must be one of"),
        (["--optimizer", '{"name": "sgdd", "lr": 0.1}'], "did you mean 'sgd'"),
        (["--trainer.devices", "0"], "trainer options: .*devices=0"),
        (["--trainer.accelerator", "tpu"], "trainer options: "),
        (["--trainer.precision", "17"], "Precision '17' is invalid"),
        (["--method.options", '{"sigma": -1}', "--method.name", "svls"], "sigma"),
    ],
)
def test_bad_train_options_exit_2_naming_the_key(options, match, trained, tmp_path, capsys):
    config, _ = trained
    err = error_of(["train", "--config", str(config), "--output_dir", str(tmp_path / "new"), *options], capsys)
    assert re.search(match, err), err


def test_missing_config_and_resume_without_checkpoint(tmp_path, capsys, trained):
    assert "missing.yaml" in error_of(["train", "--config", str(tmp_path / "missing.yaml")], capsys)
    config, _ = trained
    err = error_of(["train", "--config", str(config), "--output_dir", str(tmp_path / "none"), "--resume"], capsys)
    assert "nothing to resume" in err


def test_an_earlier_run_is_neither_mixed_in_nor_replaced_silently(trained, tmp_path, capsys):
    config, _ = trained
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--output_dir", str(out), "--trainer.max_epochs", "2"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch=000.ckpt", "epoch=001.ckpt", "last.ckpt"]
    err = error_of(["train", "--config", str(config), "--output_dir", str(out)], capsys)
    assert "holds an earlier run (epoch=000.ckpt" in err and "--resume" in err and "--overwrite" in err
    assert main(["train", "--config", str(config), "--output_dir", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch=000.ckpt", "last.ckpt"]  # no stale epoch


def test_train_help_lists_the_config_keys(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--trainer.max_epochs" in out and "--method.name" in out and "--config" in out


def test_bad_checkpoints_and_arguments_of_evaluate_calibrate_predict(trained, tmp_path, capsys):
    _, run = trained
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    out = str(tmp_path / "out")
    assert "corrupt.ckpt" in error_of(["evaluate", "--checkpoint", str(corrupt), "--output", out], capsys)
    assert "missing.ckpt" in error_of(["calibrate", "--checkpoint", str(tmp_path / "missing.ckpt")], capsys)
    assert "not written by `softlabels train`" in error_of(
        ["predict", "--checkpoint", str(foreign), "--output", out], capsys
    )
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    err = error_of(["predict", "--checkpoint", checkpoint, "--output", out, "--thresholds", "0,0.5"], capsys)
    assert "`thresholds` of predict must be numbers in (0, 1]" in err
    bad = tmp_path / "data.yaml"
    bad.write_text("batch_size: 3\n")
    err = error_of(["evaluate", "--checkpoint", checkpoint, "--output", out, "--data-config", str(bad)], capsys)
    assert "must hold a `data:` section" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own errors: also status 2
        main(["predict", "--checkpoint", checkpoint, "--output", out, "--thresholds", "a,b"])
    assert exit_info.value.code == 2 and "must be numbers separated by commas" in capsys.readouterr().err
