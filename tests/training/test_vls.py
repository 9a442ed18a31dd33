import json
import os

import numpy as np
import pytest
import torch

from softlabels.cli import main
from softlabels.training.config import config_from_dict
from softlabels.training.run import build_run, train
from softlabels.training.vls import VLSOverlay, load_generator, prepare_vls

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


def _entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(0)


def test_train_runs_both_stages_from_one_config_and_reuses_the_cache(tmp_path, capsys):
    args = ["train", "--config", str(tmp_path / "vls.yaml"), "--output_dir", str(tmp_path / "run")]
    import yaml

    (tmp_path / "vls.yaml").write_text(yaml.safe_dump({**CONFIG, "method": {"name": "vls", "options": {
        "m": 2, "generator": {"max_epochs": 1, "channels": [4, 8], "features": 4}}}}))  # fmt: skip
    assert main(args) == 0
    vls = tmp_path / "run" / "vls"
    generators = list(vls.glob("generator-*.ckpt"))
    caches = [p.parent for p in (vls / "soft_labels").glob("*/complete.json")]
    assert len(generators) == 1 and len(caches) == 1
    assert json.loads((caches[0] / "complete.json").read_text())["cases"] == 24
    stamps = {p: os.stat(p).st_mtime_ns for p in [generators[0], *caches[0].iterdir()]}
    assert main([*args, "--overwrite"]) == 0  # stage 2 again: the generator and the soft labels are reused
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps
    assert list(vls.glob("generator-*.ckpt")) == generators
    assert (
        main(
            [
                *args,
                "--overwrite",
                "--method.options",
                '{"m": 3, "generator": {"max_epochs": 1, "channels": [4, 8], "features": 4}}',
            ]
        )
        == 0
    )
    assert len(list((vls / "soft_labels").glob("*/complete.json"))) == 2  # other m: a new cache, same generator
    assert list(vls.glob("generator-*.ckpt")) == generators


def test_generated_labels_are_more_uncertain_in_the_ambiguous_band_than_inside(tmp_path):
    generator = {"max_epochs": 30, "channels": [8, 16], "features": 8, "lr": 0.003}
    options = {"m": 8, "tau": 1.0, "alpha": 1.0, "generator": generator}  # τ = 1, α = 1: the generator's own labels
    config = config_from_dict({**CONFIG, "output_dir": str(tmp_path), "method": {"name": "vls", "options": options}})
    dm, task = build_run(config)
    folder = prepare_vls(config, dm, task.method, (2, 2, 1))
    assert isinstance(dm.train_set, VLSOverlay)
    band, inside = [], []
    for i in range(len(dm.train_set)):
        sample = dm.train_set[i]
        p_true = sample["true_probs"].max(0).values
        h = _entropy(sample["vls_soft_label"])
        band.append(h[(p_true > 0.55) & (p_true < 0.9)].mean())
        inside.append(h[p_true > 0.999].mean())
    band, inside = torch.stack(band), torch.stack(inside)
    keep = torch.isfinite(band) & torch.isfinite(inside)
    print(float(band[keep].mean()), float(inside[keep].mean()))
    assert bool((band[keep] > inside[keep]).all())  # in every case
    assert float(band[keep].mean()) > 2 * float(inside[keep].mean())
    assert (folder / "complete.json").is_file()


def test_a_given_generator_checkpoint_skips_stage_one_and_bad_options_raise(tmp_path):
    first = config_from_dict({**CONFIG, "output_dir": str(tmp_path / "a"), "method": {"name": "vls", "options": {
        "generator": {"max_epochs": 1, "channels": [4, 8], "features": 4}}}})  # fmt: skip
    dm, task = build_run(first)
    prepare_vls(first, dm, task.method, (2, 2, 1))
    checkpoint = next((tmp_path / "a" / "vls").glob("generator-*.ckpt"))
    assert load_generator(checkpoint).num_classes == 2
    given = {"name": "vls", "options": {"generator_checkpoint": str(checkpoint)}}
    second = config_from_dict({**CONFIG, "output_dir": str(tmp_path / "b"), "method": given})
    dm, task = build_run(second)
    prepare_vls(second, dm, task.method, (2, 2, 1))
    assert not list((tmp_path / "b" / "vls").glob("generator-*.ckpt")) and task.method.is_ready
    bad = config_from_dict({**CONFIG, "output_dir": str(tmp_path / "c"),
                            "method": {"name": "vls", "options": {"generator": {"depth": 3}}}})  # fmt: skip
    dm, task = build_run(bad)
    with pytest.raises(ValueError, match="depth"):
        prepare_vls(bad, dm, task.method, (2, 2, 1))
    with pytest.raises(ValueError, match="not a VLS generator"):
        torch.save({"x": 1}, tmp_path / "x.ckpt")
        load_generator(tmp_path / "x.ckpt")
    assert np.isfinite(train(second, overwrite=True)["val/ece"])
