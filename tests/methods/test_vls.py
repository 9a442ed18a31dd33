"""vls: refused until its prepare_run hook has made the soft labels; one config runs both stages and reuses caches."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml

from softlabels.cli import main
from softlabels.methods import VLS_KEY, create_method
from softlabels.methods.vls import VLSMethod
from softlabels.training.config import config_from_dict
from softlabels.training.run import build_run, check_run, train
from softlabels.training.task import SegmentationTask
from tests.methods._runs import CONFIG, SMALL, prepare_through_the_hook


def test_vls_is_refused_clearly_until_its_hook_has_run():
    method = create_method("vls", 2)
    assert isinstance(method, VLSMethod) and not method.is_ready
    with pytest.raises(KeyError, match=r"method 'vls' needs the batch key\(s\) \['vls_soft_label'\]"):
        method.make_target({"image": torch.zeros(1, 1, 4, 4), "label": torch.zeros(1, 4, 4, dtype=torch.long)})
    task = SegmentationTask(torch.nn.Conv2d(1, 2, 1), method, num_classes=2)
    with pytest.raises(ValueError, match=r"method 'vls' is not ready"):
        task.on_fit_start()
    with pytest.raises(ValueError, match=r"method 'vls' takes soft_labels= only; got resources \['teacher'\]"):
        method.prepare(teacher=torch.nn.Identity())
    method.prepare(soft_labels="cache")
    assert method.is_ready and method.params["soft_labels"] == "cache"


def test_check_run_accepts_the_key_the_hook_adds(tmp_path):
    config = config_from_dict({**CONFIG, "output_dir": str(tmp_path)})
    dm, task = build_run(config)
    assert VLS_KEY not in dm.train_set[0]
    check_run(config, dm, task)  # neither the missing key nor the unready method is refused: prepare_run makes both
    assert not (tmp_path / "vls").exists()  # building and checking the run trains nothing


def test_train_runs_both_stages_from_one_config_and_reuses_the_cache(tmp_path):
    args = ["train", "--config", str(tmp_path / "vls.yaml"), "--output_dir", str(tmp_path / "run")]
    (tmp_path / "vls.yaml").write_text(
        yaml.safe_dump({**CONFIG, "method": {"name": "vls", "options": {"m": 2, "generator": SMALL}}})
    )
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
    options = json.dumps({"m": 3, "generator": SMALL})
    assert main([*args, "--overwrite", "--method.options", options]) == 0
    assert len(list((vls / "soft_labels").glob("*/complete.json"))) == 2  # other m: a new cache, same generator
    assert list(vls.glob("generator-*.ckpt")) == generators


def test_a_given_generator_checkpoint_skips_stage_one_and_bad_options_raise(tmp_path):
    first = config_from_dict({**CONFIG, "output_dir": str(tmp_path / "a"),
                              "method": {"name": "vls", "options": {"generator": SMALL}}})  # fmt: skip
    prepare_through_the_hook(first)
    checkpoint = next((tmp_path / "a" / "vls").glob("generator-*.ckpt"))
    given = {"name": "vls", "options": {"generator_checkpoint": str(checkpoint)}}
    second = config_from_dict({**CONFIG, "output_dir": str(tmp_path / "b"), "method": given})
    _, task = prepare_through_the_hook(second)
    assert not list((tmp_path / "b" / "vls").glob("generator-*.ckpt")) and task.method.is_ready
    bad = config_from_dict({**CONFIG, "output_dir": str(tmp_path / "c"),
                            "method": {"name": "vls", "options": {"generator": {"depth": 3}}}})  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['depth'\] in method.options.generator of 'vls'"):
        prepare_through_the_hook(bad)
    three = config_from_dict({**CONFIG, "output_dir": str(tmp_path / "d"), "data": {**CONFIG["data"], "options": {
        "shape": [32, 32], "num_cases": [24, 6, 6], "num_classes": 3}}, "method": given})  # fmt: skip
    with pytest.raises(ValueError, match=r"generator '.*' has 2 classes; the data has 3"):
        prepare_through_the_hook(three)
    assert np.isfinite(train(second, overwrite=True)["val/ece"])
