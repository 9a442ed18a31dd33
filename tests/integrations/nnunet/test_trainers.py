"""softlabels' nnUNetTrainer subclasses on real nnU-Net batches: the targets fed to the loss, refusals, tiny runs.

Runs in the nnU-Net environment (``.venv-nnunet``, ``scripts/test.sh``); skipped where nnunetv2 is not installed.
The reference targets here are built independently of :mod:`softlabels.integrations.nnunet.soft_targets`: the label
map is decoded with NumPy bit arithmetic and the deep-supervision targets are block means computed by reshaping.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2")

from softlabels.integrations.nnunet.trainers import TRAINERS, nnUNetTrainerSoftLabels
from softlabels.methods import create_method

LABEL_MAP_TRAINERS = ["Hard", "LS", "BoundaryLS", "SVLS", "MbLS", "NACL", "Focal", "FLSD", "DML"]
RATER_TRAINERS = ["RatersMean", "RatersSVLS", "RatersWeighted", "RatersMajority", "RatersDML"]
CONFIDENCE_TRAINERS = ["ConfidenceThreshold", "ConfidenceSoft", "ConfidenceWeighted"]


def build(name: str, preprocessed: Path) -> nnUNetTrainerSoftLabels:
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # what nnUNetv2_train's run_training adds
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    trainer = TRAINERS[f"nnUNetTrainer{name}"](plans, "2d", 0, dataset, device=torch.device("cpu"))
    trainer.initialize()
    return trainer


def reference_batch(seg: np.ndarray, dataset: dict) -> dict[str, torch.Tensor]:
    """The batch keys decoded by hand: bit r of a rater code is rater r; majority and agreement; or the labels."""
    encoding = dataset["softlabels_encoding"]
    codes = seg[:, 0].astype(np.int64)
    if encoding["kind"] == "labels":
        return {"label": torch.from_numpy(codes)}
    raters = np.stack([(codes >> r) & 1 for r in range(encoding["levels"])], axis=1)
    votes = raters.sum(axis=1)
    label = 2 * votes > encoding["levels"]
    share = votes / encoding["levels"]
    confidence = np.where(label, share, 1 - share).astype(np.float32)
    return {"raters": torch.from_numpy(raters), "label": torch.from_numpy(label.astype(np.int64)),
            "confidence": torch.from_numpy(confidence)}  # fmt: skip


def block_mean(target: torch.Tensor, num_classes: int, factor: tuple[int, int]) -> torch.Tensor:
    """Rows (one-hot for hard labels) averaged over non-overlapping ``factor`` blocks, by reshaping."""
    if target.is_floating_point():
        rows = target.double()
    else:
        rows = torch.nn.functional.one_hot(target, num_classes).movedim(-1, 1).double()
    n, c, h, w = rows.shape
    fy, fx = factor
    return rows.reshape(n, c, h // fy, fy, w // fx, fx).mean(dim=(3, 5))


def fed_targets(trainer: nnUNetTrainerSoftLabels, batch: dict) -> list[tuple[torch.Size, object]]:
    """Run one real training step, recording what the loss hands the method at every output scale."""
    calls = []
    forward = trainer.method.forward

    def spy(logits, target):
        calls.append((logits.shape, target))
        return forward(logits, target)

    trainer.method.forward = spy
    out = trainer.train_step(batch)
    assert np.isfinite(out["loss"])
    return calls


def check_targets(name: str, preprocessed: Path) -> None:
    trainer = build(name, preprocessed)
    dataset = json.loads((preprocessed / "dataset.json").read_text())
    loader, _ = trainer.get_dataloaders()
    batch = next(loader)
    seg = batch["target"][0].numpy()
    calls = fed_targets(trainer, batch)
    classes = trainer.encoding.num_classes
    method = create_method(trainer.method_name, classes, task="segmentation", **trainer.method_params)
    full = method.make_target(reference_batch(seg, dataset))
    scales = trainer._get_deep_supervision_scales()
    assert len(calls) == len(scales) - 1  # nnU-Net gives the coarsest output weight 0: no target
    for (shape, target), scale in zip(calls, scales, strict=False):
        factor = tuple(round(1 / s) for s in scale)
        assert tuple(shape[2:]) == tuple(n // f for n, f in zip(seg.shape[2:], factor, strict=True))
        if factor == (1, 1):
            assert torch.equal(target.target, full.target)
            got, want = target.target, full.target
        else:
            got, want = target.target.double(), block_mean(full.target, classes, factor)
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
            torch.testing.assert_close(got.sum(1), torch.ones_like(got.sum(1)), atol=1e-6, rtol=0)
        if full.weight is not None:
            expected = full.weight if factor == (1, 1) else block_mean(full.weight[:, None].double(), 1, factor)[:, 0]
            torch.testing.assert_close(target.weight.double(), expected.double(), atol=1e-6, rtol=0)
        if got.is_floating_point():
            torch.testing.assert_close(got.sum(1).double(), torch.ones_like(got.sum(1)).double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", LABEL_MAP_TRAINERS + RATER_TRAINERS + CONFIDENCE_TRAINERS)
def test_targets_fed_to_the_loss_equal_make_target_at_every_scale_on_the_rater_dataset(name, raters_dataset):
    check_targets(name, raters_dataset)


@pytest.mark.parametrize("name", LABEL_MAP_TRAINERS)
def test_targets_fed_to_the_loss_equal_make_target_at_every_scale_on_three_classes(name, labels_dataset):
    check_targets(name, labels_dataset)


def test_every_listed_trainer_exists_and_names_its_method():
    names = {f"nnUNetTrainer{n}" for n in LABEL_MAP_TRAINERS + RATER_TRAINERS + CONFIDENCE_TRAINERS}
    assert names == set(TRAINERS)
    for trainer in TRAINERS.values():
        create_method(trainer.method_name, 2, task="segmentation", **trainer.method_params)


@pytest.mark.parametrize("name", RATER_TRAINERS + CONFIDENCE_TRAINERS)
def test_recipes_needing_raters_or_confidence_are_refused_on_plain_labels(name, labels_dataset):
    with pytest.raises(ValueError, match=r"cannot train on this dataset: a 'labels' dataset .* gives no") as error:
        build(name, labels_dataset)
    assert "\n" not in str(error.value)


def test_the_results_folder_gets_a_softmax_dataset_json_and_the_encoding(raters_dataset):
    trainer = build("RatersMean", raters_dataset)
    assert trainer.dataset_json["labels"] == {"background": 0, "foreground": 1}
    assert "regions_class_order" not in trainer.dataset_json
    assert trainer.dataset_json["softlabels_encoding"]["kind"] == "rater_bits"
    assert not trainer.label_manager.has_regions and trainer.label_manager.num_segmentation_heads == 2


def test_tiny_run_variables_set_epochs_and_iterations(raters_dataset, monkeypatch):
    monkeypatch.setenv("SOFTLABELS_NNUNET_EPOCHS", "3")
    monkeypatch.setenv("SOFTLABELS_NNUNET_ITERATIONS", "7")
    trainer = build("SVLS", raters_dataset)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (3, 7, 7)
    monkeypatch.setenv("SOFTLABELS_NNUNET_EPOCHS", "zero")
    with pytest.raises(ValueError, match="SOFTLABELS_NNUNET_EPOCHS must be a positive integer; got 'zero'"):
        build("SVLS", raters_dataset)


def test_a_region_dataset_without_the_softlabels_encoding_is_refused(raters_dataset):
    plans = json.loads((raters_dataset / "nnUNetPlans.json").read_text()) | {"continue_training": False}
    dataset = json.loads((raters_dataset / "dataset.json").read_text())
    del dataset["softlabels_encoding"]
    with pytest.raises(ValueError, match="declares regions or an ignore label"):
        TRAINERS["nnUNetTrainerSVLS"](plans, "2d", 0, dataset, device=torch.device("cpu"))


def test_validation_step_scores_the_hard_label_and_takes_the_loss_from_the_codes(raters_dataset):
    trainer = build("RatersMean", raters_dataset)
    _, loader = trainer.get_dataloaders()
    batch = next(loader)
    trainer.network.eval()
    with torch.no_grad():
        out = trainer.validation_step(batch)
        logits = trainer.network(batch["data"])
        expected = trainer.loss(logits, batch["target"])
    assert trainer.loss.held is None
    np.testing.assert_allclose(out["loss"], expected.numpy(), rtol=1e-5)
    codes = batch["target"][0][:, 0].numpy().astype(np.int64)
    majority = np.stack([(codes >> r) & 1 for r in range(3)]).sum(0) >= 2
    prediction = logits[0].argmax(1).numpy() == 1
    tp = np.sum(prediction & majority)
    assert out["tp_hard"].tolist() == [tp]
    assert out["fn_hard"].tolist() == [np.sum(~prediction & majority)]
