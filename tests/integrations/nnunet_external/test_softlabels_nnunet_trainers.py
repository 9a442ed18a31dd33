"""nnU-Net's own trainer lookup finds softlabels' trainers through ``nnUNet_extTrainer`` (the nnU-Net environment)."""

from __future__ import annotations

import pytest

pytest.importorskip("nnunetv2")

from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from softlabels.integrations.nnunet import trainers_folder
from softlabels.integrations.nnunet.trainers import TRAINERS


def test_nnunet_finds_every_trainer_in_the_printed_folder(monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers_folder()))
    for name, trainer in TRAINERS.items():
        found = recursive_find_trainer_class_by_name(name)
        assert found.__name__ == name
        assert (found.method_name, found.method_params) == (trainer.method_name, trainer.method_params)


def test_without_the_variable_nnunet_does_not_find_them(monkeypatch):
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    with pytest.raises(RuntimeError, match="Could not find requested nnunet trainer nnUNetTrainerSVLS"):
        recursive_find_trainer_class_by_name("nnUNetTrainerSVLS")
