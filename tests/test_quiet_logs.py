"""The commands' output written to a file (not a terminal) is readable: no warnings, no carriage-return progress bars.

Each command of the suite's typical flow runs as ``python -m softlabels`` with stdout and stderr captured to pipes,
as a user's ``softlabels train ... > log 2>&1`` would, with the config's progress-bar default (unset: on only on a
terminal) and Python's default warning filters.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.test_cli_training import CONFIG as TRAINING_CONFIG

CONFIG = {**TRAINING_CONFIG, "trainer": {"accelerator": "cpu"}}  # no enable_progress_bar: the default is under test
# A Python warning prints "<file>.py:<line>: <message>" (Lightning's format) or "<file>.py:<line>: <Category>: ...".
WARNING_LINE = re.compile(r"\.py:\d+: |warning|deprecat", re.IGNORECASE)
# Kept on purpose (softlabels.training._console): actionable through data.num_workers, shown on machines with more
# than 2 cores only.
KEPT = ("does not have many workers",)


def run(*argv: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # a user's default warning filters
    proc = subprocess.run(
        [sys.executable, "-m", "softlabels", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def assert_quiet(proc: subprocess.CompletedProcess) -> None:
    lines = proc.stderr.splitlines()
    noisy = [line for line in lines if WARNING_LINE.search(line) and not any(kept in line for kept in KEPT)]
    assert not noisy, "\n".join(noisy)
    assert "\r" not in proc.stdout and "\r" not in proc.stderr, "a progress bar was drawn into a pipe"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("quiet")
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    proc = run("train", "--config", "config.yaml", "--output_dir", "run", "--trainer.max_epochs", "1", cwd=root)
    return root, proc


def test_train_log_is_readable(trained):
    _, proc = trained
    assert_quiet(proc)
    assert "final validation metrics:" in proc.stdout and "Total params" in proc.stderr  # the useful lines stay
    assert "GPU available:" in proc.stderr and "TPU available" not in proc.stderr and "Tip" not in proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--checkpoint", "run/checkpoints/last.ckpt", "--output", "report"],
        ["calibrate", "--checkpoint", "run/checkpoints/last.ckpt", "--output", "calibrated.ckpt"],
        ["predict", "--checkpoint", "run/checkpoints/last.ckpt", "--output", "predictions", "--split", "test"],
        ["score", "--example", "--output", "score"],
    ],
    ids=lambda argv: argv[0],
)
def test_other_commands_are_quiet(trained, argv):
    root, _ = trained
    assert_quiet(run(*argv, cwd=root))
