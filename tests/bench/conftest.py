"""A tiny benchmark (two suites, two seeds, small models, one epoch) shared by the bench tests of one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from softlabels.bench.suites import Cell, Suite

_TRAINER = {"max_epochs": 1, "accelerator": "cpu", "deterministic": True, "log_every_n_steps": 1}
_UNET = {"name": "unet", "options": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}


def tiny_suites() -> list[Suite]:
    """A segmentation suite with known p* and raters, and a classification suite, at test size."""
    seg = Suite(
        "tiny_seg", "Tiny segmentation", "segmentation",
        {"task": "segmentation", "model": _UNET, "trainer": _TRAINER, "optimizer": {"name": "adamw", "lr": 0.01},
         "data": {"source": "synthetic_segmentation", "options": {"shape": [24, 24], "num_cases": [8, 6, 20]},
                  "batch_size": 4}},
        (Cell("hard", "hard"), Cell("svls", "svls"), Cell("raters_mean", "raters_mean")), seeds=(0, 1),
        description="test suite",
        claims=({"method": "svls", "metric": "ece", "better": "lower", "source": "SVLS"},), shifts=("noise_3",),
    )  # fmt: skip
    cls = Suite(
        "tiny_cls", "Tiny classification", "classification",
        {"task": "classification", "model": {"name": "small_cnn"}, "trainer": _TRAINER,
         "data": {"source": "synthetic_classification", "options": {"num_items": [16, 12, 12], "size": 28},
                  "batch_size": 8}},
        (Cell("hard", "hard"), Cell("ls", "ls")), seeds=(0, 1), description="test suite",
    )  # fmt: skip
    return [seg, cls]


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Suite], Path]:
    """The tiny benchmark, run once per test process (about 15 s), with its report."""
    from softlabels.bench.grid_runner import run_benchmark

    root = tmp_path_factory.mktemp("bench")
    suites = tiny_suites()
    run_benchmark(suites, root, workers=1)
    return suites, root
