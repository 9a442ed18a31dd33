"""Scale-out: `softlabels train` on 2 CPU processes (Lightning DDP, gloo) matches 1 process with the doubled batch.

The 2-process run uses per-process batch ``b``, the 1-process run ``2b``; split sizes are multiples of ``2b`` so
no sampler pads. Lightning's ``DistributedSampler`` draws the permutation of the run's ``EpochShuffleSampler``
(seed + epoch), so the 2 processes see exactly the 1-process batches split in two; DDP averages the gradients, the
metrics' states and OLS's accumulators are summed across processes. The networks normalise per sample (instance /
layer norm): BatchNorm statistics would differ per process (SyncBatchNorm, ``trainer.sync_batchnorm``, needs GPUs).

Stated tolerance: every final validation metric within ``METRIC_TOL`` (absolute), every weight and the OLS matrix
within ``STATE_TOL``; float32 reduction order is the only difference (measured: 2.3e-6 on compactness, 0 on the
others; weights within 8.2e-8). The runs use SGD: Adam divides by the gradient's root mean square, which turns the
float noise of the (zero) gradient of a convolution bias before instance norm into full-size steps of that bias
(harmless, but not comparable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.distributed

METRIC_TOL = 1e-4
STATE_TOL = 1e-5
SETUPS = {
    "classification_ols": {
        "task": "classification", "seed": 0,
        "data": {"source": "synthetic_classification", "options": {"num_items": [64, 32, 32], "size": 28}},
        "model": {"name": "small_cnn", "options": {"norm": "layer"}}, "method": {"name": "ols"},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "batch": 16,
    },
    "segmentation_svls": {
        "task": "segmentation", "seed": 1,
        "data": {"source": "synthetic_segmentation", "options": {"shape": [24, 24], "num_cases": [16, 8, 8]}},
        "model": {"name": "small_unet"}, "method": {"name": "svls"},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "batch": 4,
    },
}  # fmt: skip


def run(config: Path, out: Path, devices: int, batch: int) -> tuple[dict, dict]:
    args = [sys.executable, "-m", "softlabels", "train", "--config", str(config), "--output_dir", str(out)]
    args += ["--data.batch_size", str(batch), "--trainer.devices", str(devices)]
    args += ["--trainer.strategy", "ddp" if devices > 1 else "auto"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    if devices > 1:
        assert "Starting with 2 processes" in done.stderr + done.stdout
    metrics = json.loads((out / "final_metrics.json").read_text())
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return metrics, state


def flat(state: dict) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        out |= {f"{key}{'.' + k if k else ''}": v.double() for k, v in items}
    return out


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_two_processes_match_one_process_with_the_doubled_batch(name, tmp_path):
    setup = dict(SETUPS[name])
    batch = setup.pop("batch")
    setup["trainer"] = {"max_epochs": 2, "accelerator": "cpu", "deterministic": True, "log_every_n_steps": 1,
                        "enable_progress_bar": False}  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(setup))
    one, one_state = run(config, tmp_path / "one", 1, batch)
    two, two_state = run(config, tmp_path / "two", 2, batch // 2)
    assert set(one) == set(two) and len(one) >= 6
    for key in one:
        assert abs(one[key] - two[key]) <= METRIC_TOL, (key, one[key], two[key])
    a, b = flat(one_state), flat(two_state)
    assert set(a) == set(b)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=STATE_TOL, rtol=0), (key, (a[key] - b[key]).abs().max())
    if name == "classification_ols":  # the epoch-end update used both processes' accumulators
        soft = a["method.loss.smoother.soft_labels"]
        assert not torch.allclose(soft, torch.full_like(soft, 1 / soft.shape[0]))
