import pytest
import torch

from softlabels.training.optim import build_optimizer


def test_optimizers_and_schedulers_by_name():
    params = list(torch.nn.Linear(3, 2).parameters())
    out = build_optimizer(params, {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4})
    assert isinstance(out["optimizer"], torch.optim.SGD) and out["optimizer"].defaults["nesterov"]
    cosine = build_optimizer(params, {"name": "adamw", "lr": 1e-3}, {"name": "cosine"}, max_epochs=5)
    assert isinstance(cosine["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    step = build_optimizer(params, {"name": "adam", "lr": 1e-3}, {"name": "step", "step_size": 2, "gamma": 0.5})
    assert step["lr_scheduler"]["interval"] == "epoch"


def test_bad_names_and_options_are_listed():
    params = list(torch.nn.Linear(3, 2).parameters())
    with pytest.raises(ValueError, match=r"`optimizer.name` of optimizer .*got 'adma' \(did you mean 'adam'\?\)"):
        build_optimizer(params, {"name": "adma"})
    with pytest.raises(ValueError, match=r"unknown optimizer option\(s\) \['momentum'\] for 'adamw'"):
        build_optimizer(params, {"name": "adamw", "momentum": 0.9})
    with pytest.raises(ValueError, match=r"scheduler 'cosine' needs trainer.max_epochs >= 1"):
        build_optimizer(params, {"name": "adamw"}, {"name": "cosine"})
