"""A run killed at any point of a checkpoint save resumes with ``--resume`` and ends like the uninterrupted run.

A checkpoint save is: write ``.epoch=NNN.ckpt.<random>.tmp``, rename it to ``epoch=NNN.ckpt``, then the same for
``last.ckpt``. The killer process below SIGKILLs itself just before or just after one of those renames, so every
state a kill can leave is visited: an orphan temporary file, an epoch file newer than ``last.ckpt``, no ``last.ckpt``
at all (a kill in the first save). Each killed run is then resumed through the CLI and must end with the same final
metrics as a run that was never interrupted, with no temporary file left and checkpoints of the normal file mode.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import yaml

from softlabels.cli import main
from tests.reliability._corpus import snapshot, user_error

CONFIG = {
    "task": "classification",
    "seed": 5,
    "data": {"source": "synthetic_classification", "options": {"num_items": [24, 8, 8]}, "batch_size": 8},
    "model": {"name": "small_cnn"},
    "method": {"name": "ols"},  # state beyond the weights: the soft-label matrix and its accumulators
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "trainer": {"max_epochs": 3, "accelerator": "cpu", "enable_progress_bar": False, "deterministic": True,
                "log_every_n_steps": 1},
}  # fmt: skip

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from softlabels.cli import main

    target, when = sys.argv[1], sys.argv[2]
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        name = os.path.basename(dst)
        if name == target and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if name == target and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
    sys.exit(main(sys.argv[3:]))
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recovery")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    (root / "killer.py").write_text(KILLER)
    assert main(["train", "--config", str(config), "--output_dir", str(root / "straight")]) == 0
    straight = json.loads((root / "straight" / "final_metrics.json").read_text())
    return root, config, straight


# (file renamed, before/after the rename) -> what the kill leaves in checkpoints/
KILLS = [
    ("epoch=000.ckpt", "before", {"tmp"}),  # first save: only an orphan temporary file
    ("epoch=000.ckpt", "after", {"epoch=000.ckpt"}),  # first save: an epoch file, no last.ckpt yet
    ("last.ckpt", "before", {"epoch=000.ckpt", "tmp"}),
    ("epoch=001.ckpt", "before", {"epoch=000.ckpt", "last.ckpt", "tmp"}),
    ("epoch=001.ckpt", "after", {"epoch=000.ckpt", "epoch=001.ckpt", "last.ckpt"}),  # epoch file newer than last
    ("last.ckpt", "after", {"epoch=000.ckpt", "last.ckpt"}),
]


@pytest.mark.parametrize(("target", "when", "left"), KILLS)
def test_killed_during_a_checkpoint_save_resumes_to_the_uninterrupted_result(setup, tmp_path, capsys, target, when,
                                                                             left):  # fmt: skip
    root, config, straight = setup
    out = tmp_path / "run"
    argv = ["train", "--config", str(config), "--output_dir", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    killed = subprocess.run([sys.executable, str(root / "killer.py"), target, when, *argv], env=env,
                            capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    names = {p.name for p in (out / "checkpoints").iterdir()}
    assert {("tmp" if n.endswith(".tmp") else n) for n in names} == left
    if names <= {n for n in names if n.endswith(".tmp")}:  # nothing complete: a fresh start, no dead end
        before = snapshot(out)
        user_error([*argv, "--resume"], capsys, "nothing to resume", "train without --resume")
        assert snapshot(out) == before
        assert main(argv) == 0
    else:
        before = snapshot(out)
        user_error(argv, capsys, "holds an earlier run", "--resume")  # told to resume ...
        assert snapshot(out) == before
        assert main([*argv, "--resume"]) == 0  # ... and resuming works
    resumed = json.loads((out / "final_metrics.json").read_text())
    assert resumed.keys() == straight.keys()
    for key, value in straight.items():
        assert resumed[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    files = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in files] == ["epoch=000.ckpt", "epoch=001.ckpt", "epoch=002.ckpt", "last.ckpt"]
    assert not [p for p in out.rglob("*.tmp")]  # the orphan was cleaned up at the start
    umask = os.umask(0)
    os.umask(umask)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in files)  # not mkstemp's 0600
