"""The Lightning tasks: sliding windows, embeddings, logged metrics, hooks once, the scaler kept out of training."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from softlabels.methods import create_method
from softlabels.training.callbacks import MethodHooks
from softlabels.training.task import ClassificationTask, SegmentationTask, SoftLabelTask

SEGMENTATION_METRICS = ("dice", "hd95", "ece", "ece_classwise", "ece_boundary", "brier", "nll", "thresholded_dice")
CLASSIFICATION_METRICS = ("top1", "top5", "ece", "ece_classwise", "brier", "nll", "compactness")
QUIET = {"accelerator": "cpu", "enable_progress_bar": False, "logger": False, "enable_checkpointing": False}
QUIET |= {"enable_model_summary": False}


def seg_samples(n: int, shape=(16, 16), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        label = torch.randint(0, classes, (1, *shape), generator=g)
        image = label.float() + 0.3 * torch.randn(1, *shape, generator=g)
        soft = torch.nn.functional.one_hot(label[0], classes).movedim(-1, 0).float() * 0.8 + 0.2 / classes
        samples.append({"image": image, "label": label, "soft_label": soft})
    return samples


def cls_samples(n: int, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.randn(n, 3, 8, 8, generator=g) + labels[:, None, None, None]
    return [{"image": images[i], "label": labels[i]} for i in range(n)]


class TinyClassifier(nn.Module):
    """Pooled features and a head, like ours; ``pooled=False`` returns a timm-like unpooled map."""

    def __init__(self, classes: int, pooled: bool = True) -> None:
        super().__init__()
        self.conv, self.fc, self.pooled, self.num_features = (
            nn.Conv2d(3, 6, 3, padding=1),
            nn.Linear(6, classes),
            pooled,
            6,
        )

    def forward_features(self, x):
        maps = torch.relu(self.conv(x))
        return maps.mean((2, 3)) if self.pooled else maps

    def forward_head(self, features, pre_logits: bool = False):
        pooled = features if features.ndim == 2 else features.mean((2, 3))
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@pytest.mark.parametrize("dims", [2, 3])
def test_sliding_window_inference_equals_the_direct_pass_for_a_pointwise_network(dims):
    net = nn.Conv3d(1, 3, 1) if dims == 3 else nn.Conv2d(1, 3, 1)
    shape = (20, 18, 13) if dims == 3 else (37, 29)
    task = SegmentationTask(
        net, create_method("hard", 3), num_classes=3, spatial_dims=dims,
        inference={"roi_size": [8] * dims, "sw_batch_size": 3, "overlap": 0.5},
    )  # fmt: skip
    image = torch.randn(2, 1, *shape)
    with torch.no_grad():
        windowed, direct = task.predict_logits(image), net(image)
    assert windowed.shape == direct.shape
    torch.testing.assert_close(windowed, direct, atol=1e-5, rtol=1e-5)


def test_sliding_window_is_used_only_beyond_the_roi_and_the_temperature_divides_the_logits(monkeypatch):
    import monai.inferers

    calls = []
    real = monai.inferers.sliding_window_inference
    monkeypatch.setattr(monai.inferers, "sliding_window_inference", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = nn.Conv2d(1, 2, 1)
    task = SegmentationTask(net, create_method("hard", 2), num_classes=2, inference={"roi_size": [16, 16]})
    task.scaler.log_temperature.data.fill_(torch.tensor(2.0).log())
    image = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(task.predict_logits(image), net(image) / 2)
        assert not calls
        task.predict_logits(torch.randn(1, 1, 24, 16))
    assert calls == [1]


def test_segmentation_fit_logs_every_metric_per_epoch_and_keeps_the_temperature_fixed():
    loader = DataLoader(seg_samples(8), batch_size=4)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    task = SegmentationTask(net, create_method("svls", 3), num_classes=3, optimizer={"name": "adam", "lr": 0.01})
    before = [p.detach().clone() for p in net.parameters()]
    trainer = L.Trainer(max_epochs=2, log_every_n_steps=1, **QUIET)
    trainer.fit(task, loader, loader)
    logged = set(trainer.callback_metrics)
    assert {f"val/{m}" for m in SEGMENTATION_METRICS} | {"val/loss", "train/loss_epoch"} <= logged
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))  # trained
    assert task.scaler.temperature_ == 1.0 and not task.scaler.log_temperature.requires_grad
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in net.parameters()}
    test = trainer.test(task, loader, verbose=False)[0]
    assert {f"test/{m}" for m in SEGMENTATION_METRICS} <= set(test)
    assert 0 <= test["test/dice"] <= 1 and test["test/nll"] > 0
    hard_only = DataLoader([{k: v for k, v in s.items() if k != "soft_label"} for s in seg_samples(4)], batch_size=4)
    without = trainer.test(task, hard_only, verbose=False)[0]
    assert "test/thresholded_dice" not in without and "test/ece" in without  # QUBIQ Dice needs a soft reference


@pytest.mark.parametrize("pooled", [True, False], ids=["pooled", "timm-like"])
def test_classification_metrics_include_compactness_from_the_pooled_embedding(pooled):
    net = TinyClassifier(4, pooled=pooled)
    task = ClassificationTask(net, create_method("ls", 4), num_classes=4)
    assert set(CLASSIFICATION_METRICS) <= set(task.val_metrics.names)
    image = torch.randn(5, 3, 8, 8)
    features, logits = task.features_and_logits(image)
    assert features.shape == (5, 6)
    torch.testing.assert_close(logits, net(image))
    trainer = L.Trainer(max_epochs=1, **QUIET)
    trainer.fit(task, DataLoader(cls_samples(16), batch_size=8), DataLoader(cls_samples(8, seed=1), batch_size=8))
    values = trainer.callback_metrics
    assert {f"val/{m}" for m in CLASSIFICATION_METRICS} <= set(values)
    assert 0 <= values["val/top1"] <= values["val/top5"] <= 1 and values["val/compactness"] > 0


def test_method_hooks_are_installed_once_and_ols_updates_its_soft_labels():
    # seeded: OLS moves a class's row only when the epoch had correct predictions of it, and an unlucky random
    # initialisation (the global RNG state depends on which tests ran before in the worker) may have none
    L.seed_everything(0, verbose=False)
    task = ClassificationTask(TinyClassifier(4), create_method("ols", 4), num_classes=4)
    own = MethodHooks()
    trainer = L.Trainer(max_epochs=2, callbacks=[own], **QUIET)
    before = task.method.state_dict()["loss.smoother.soft_labels"].clone()
    trainer.fit(task, DataLoader(cls_samples(16), batch_size=8))
    assert sum(isinstance(c, MethodHooks) for c in trainer.callbacks) == 1
    after = task.method.state_dict()["loss.smoother.soft_labels"]
    assert not torch.equal(before, after)  # the epoch-end update ran


def test_task_argument_errors():
    with pytest.raises(TypeError, match=r"`model` of SegmentationTask must be an nn\.Module"):
        SegmentationTask("unet", create_method("hard", 2), num_classes=2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`method` of ClassificationTask must be a softlabels Method"):
        ClassificationTask(nn.Linear(2, 2), "ls", num_classes=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task"):
        SoftLabelTask(nn.Linear(2, 2), create_method("hard", 2), task="detection", num_classes=2)  # type: ignore[arg-type]


class StepLosses(L.Callback):
    def __init__(self):
        self.losses, self.sizes = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.sizes.append(len(batch["image"]))


def test_epoch_loss_is_the_sample_weighted_mean_and_step_loss_follows_the_logging_interval():
    task = ClassificationTask(TinyClassifier(4), create_method("ls", 4), num_classes=4)
    steps, logged, log = StepLosses(), [], task.log

    def spy(name, value, **kwargs):
        logged.append((name, task.global_step))
        return log(name, value, **kwargs)

    task.log = spy  # type: ignore[method-assign]
    trainer = L.Trainer(max_epochs=1, callbacks=[steps], log_every_n_steps=2, **QUIET)
    trainer.fit(task, DataLoader(cls_samples(19), batch_size=8))  # batches of 8, 8 and 3
    assert steps.sizes == [8, 8, 3]
    weighted = sum(v * n for v, n in zip(steps.losses, steps.sizes, strict=True)) / 19
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(weighted, rel=1e-6)
    assert [step for name, step in logged if name == "train/loss_step"] == [1]  # steps 0, 1, 2: every 2nd logged
    assert task.pending_batch_hook is None  # ls has no batch hook: nothing kept between steps
