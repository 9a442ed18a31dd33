"""A small VLS run config and the preparation `train` does before fitting, for the VLS tests."""

from __future__ import annotations

from softlabels.training.run import build_run, run_context

CONFIG = {
    "task": "segmentation",
    "model": {"name": "unet", "options": {"channels": [4, 8], "strides": [2], "num_res_units": 0}},
    "data": {
        "source": "synthetic_segmentation",
        "options": {"shape": [32, 32], "num_cases": [24, 6, 6]},
        "batch_size": 8,
    },
    "method": {"name": "vls", "options": {"m": 4, "generator": {"max_epochs": 25, "channels": [8, 16], "features": 8}}},
    "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False, "log_every_n_steps": 1},
}
SMALL = {"max_epochs": 1, "channels": [4, 8], "features": 4}


def prepare_through_the_hook(config):
    """What `train` does before fitting: build the run, then the method's prepare_run hook with the run's context."""
    dm, task = build_run(config)
    shape = task.data_shape
    data_shape = (shape["num_classes"], shape["spatial_dims"], shape["in_channels"])
    task.method.prepare_run(run_context(config, dm, data_shape))
    return dm, task
