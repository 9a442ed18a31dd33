"""VLS stage 1: the generator's checkpoint, the per-case soft-label cache and the overlay made by the vls hook."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from softlabels.methods import RunContext
from softlabels.methods.targets import hard_labels
from softlabels.methods.vls_stage1 import GENERATOR_DEFAULTS, VLSOverlay, cache_soft_labels, load_generator
from softlabels.targets.vls import vls_soft_labels
from softlabels.training.checkpoint_io import load_checkpoint
from softlabels.training.config import config_from_dict
from tests.methods._runs import CONFIG, prepare_through_the_hook

PARAMS = {"m": 2, "tau": 1.0, "alpha": 0.3, "condition_on_raters": False}


def _entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(0)


def tiny_context(tmp_path: Path, **changes) -> RunContext:
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[:, 2:6, 2:6] = 1
    cases = [{"image": (label + 0.1 * k).float(), "label": label} for k in range(3)]
    dm = SimpleNamespace(train_set=cases, eval_batch_size=2, train_dataloader=lambda: DataLoader(cases, batch_size=2))
    values = {
        "datamodule": dm, "num_classes": 2, "spatial_dims": 2, "in_channels": 1, "seed": 0, "output_dir": tmp_path,
        "load_checkpoint": load_checkpoint, "load_network": None, "trainer": {"accelerator": "cpu"},
    }  # fmt: skip
    return RunContext(**{**values, **changes})


def test_the_cache_holds_what_the_generator_gives_for_each_case_in_order(tmp_path):
    context = tiny_context(tmp_path)
    base = context.datamodule.train_set
    folder = cache_soft_labels(context, PARAMS, key="soft", generator={"max_epochs": 1, "channels": [4, 8]})
    assert isinstance(context.datamodule.train_set, VLSOverlay) and len(context.datamodule.train_set) == 3
    generator = load_generator(next((tmp_path / "vls").glob("generator-*.ckpt")), load_checkpoint)
    L.seed_everything(0, verbose=False)  # the cache's posterior samples are drawn after seeding with the run's seed
    expected = []
    for batch in DataLoader(base, batch_size=2):
        expected += list(vls_soft_labels(generator, batch["image"], hard_labels(batch), m=2, tau=1.0, alpha=0.3))
    for index, soft in enumerate(expected):
        torch.testing.assert_close(context.datamodule.train_set[index]["soft"], soft)
        torch.testing.assert_close(torch.load(folder / f"{index:06d}.pt"), soft)
    assert folder.name.endswith("-m2-tau1-alpha0.3") and (folder / "complete.json").is_file()


def test_refusals_name_the_option(tmp_path):
    with pytest.raises(ValueError, match=r"data.train_transforms would misalign them"):
        cache_soft_labels(tiny_context(tmp_path, data={"train_transforms": [{"name": "RandFlipd"}]}), PARAMS, key="s")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['depth'\] in method.options.generator of 'vls'; valid:"):
        cache_soft_labels(tiny_context(tmp_path), PARAMS, key="s", generator={"depth": 3})
    torch.save({"x": 1}, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="not a VLS generator"):
        load_generator(tmp_path / "x.ckpt", load_checkpoint)
    with pytest.raises(ValueError, match="not a VLS generator"):
        cache_soft_labels(tiny_context(tmp_path), PARAMS, key="s", generator_checkpoint=str(tmp_path / "x.ckpt"))
    assert set(GENERATOR_DEFAULTS) == {"channels", "features", "latent_dim", "max_epochs", "lr", "weights"}


def test_generated_labels_are_more_uncertain_in_the_ambiguous_band_than_inside(tmp_path):
    generator = {"max_epochs": 30, "channels": [8, 16], "features": 8, "lr": 0.003}
    options = {"m": 8, "tau": 1.0, "alpha": 1.0, "generator": generator}  # τ = 1, α = 1: the generator's own labels
    config = config_from_dict({**CONFIG, "output_dir": str(tmp_path), "method": {"name": "vls", "options": options}})
    dm, task = prepare_through_the_hook(config)
    assert isinstance(dm.train_set, VLSOverlay) and task.method.is_ready
    band, inside = [], []
    for i in range(len(dm.train_set)):
        sample = dm.train_set[i]
        p_true = sample["true_probs"].max(0).values
        h = _entropy(sample["vls_soft_label"])
        band.append(h[(p_true > 0.55) & (p_true < 0.9)].mean())
        inside.append(h[p_true > 0.999].mean())
    band, inside = torch.stack(band), torch.stack(inside)
    keep = torch.isfinite(band) & torch.isfinite(inside)
    assert bool((band[keep] > inside[keep]).all())  # in every case
    assert float(band[keep].mean()) > 2 * float(inside[keep].mean())
    assert Path(task.method.params["soft_labels"], "complete.json").is_file()
