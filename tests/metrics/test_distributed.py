"""Two CPU processes (gloo) give the same metric values as one process: the states add up exactly."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from softlabels.metrics.calibration import AdaptiveCalibrationError, CalibrationError
from softlabels.metrics.proper_scoring import BrierScore, NegativeLogLikelihood

pytestmark = pytest.mark.distributed


def metric_factories() -> dict[str, Callable]:
    """Every streaming metric with the options that change its state."""
    factories: dict[str, Callable] = {
        "ece_top": lambda: CalibrationError(3, per_case=True),
        "ece_classwise_l2": lambda: CalibrationError(3, mode="classwise", norm="l2", per_case=True),
        "ece_marginal_max": lambda: CalibrationError(3, mode="marginal", norm="max"),
        "ace": lambda: CalibrationError(3, norm="ace", include_background=False, mode="classwise"),
        "adaptive": lambda: AdaptiveCalibrationError(3, n_bins=10),
        "brier": lambda: BrierScore(3, per_case=True),
        "nll": lambda: NegativeLogLikelihood(3, per_case=True),
    }
    factories.update(_optional_factories())
    return factories


def _optional_factories() -> dict[str, Callable]:
    """Segmentation and multi-rater metrics with label-map inputs (same (probs, target) update signature)."""
    out: dict[str, Callable] = {}
    from softlabels.metrics.segmentation import (
        AverageSurfaceDistance,
        DiceScore,
        HausdorffDistance95,
        IoUScore,
        SoftDiceScore,
    )

    out["dice"] = lambda: DiceScore(3, include_background=True)
    out["iou"] = lambda: IoUScore(3, empty="nan")
    out["soft_dice"] = lambda: SoftDiceScore(3, include_background=True)
    out["hd95"] = lambda: HausdorffDistance95(3, spacing=(1.0, 0.5))
    out["assd"] = lambda: AverageSurfaceDistance(3)
    return out


def data():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(5, 3, 8, 7, generator=g), dim=1)
    target = torch.randint(0, 3, (5, 8, 7), generator=g)
    mask = torch.rand(5, 8, 7, generator=g) > 0.2
    return probs, target, mask


def other_data():
    """Inputs of the multi-rater and classification metrics, 5 items each."""
    g = torch.Generator().manual_seed(1)
    raters = torch.randint(0, 3, (4, 5, 8, 7), generator=g)
    samples = torch.randint(0, 3, (2, 5, 8, 7), generator=g)
    rater_mean = torch.nn.functional.one_hot(raters, 3).double().mean(0).movedim(-1, 1)
    probs = torch.softmax(torch.randn(5, 3, 8, 7, generator=g, dtype=torch.float64), dim=1)
    cls_probs = torch.softmax(torch.randn(5, 6, generator=g), dim=1)
    cls_target = torch.randint(0, 6, (5,), generator=g)
    features = torch.randn(5, 4, generator=g)
    feat_target = torch.tensor([0, 1, 2, 0, 1])
    return {
        "thresholded_dice": (probs, rater_mean),
        "ged": (samples, raters),
        "top2": (cls_probs, cls_target),
        "compactness": (features, feat_target),
    }


def other_metrics(lo: int, hi: int) -> dict:
    """Multi-rater and classification metrics on items [lo, hi); item axis 1 for the rater/sample stacks."""
    from softlabels.metrics.classification import EmbeddingCompactness, TopKAccuracy
    from softlabels.metrics.multirater import GeneralizedEnergyDistance, ThresholdedDice

    makers = {
        "thresholded_dice": lambda: ThresholdedDice(3),
        "ged": lambda: GeneralizedEnergyDistance(3),
        "top2": lambda: TopKAccuracy(k=2),
        "compactness": lambda: EmbeddingCompactness(3, num_features=4),
    }
    results = {}
    for name, (a, b) in other_data().items():
        metric = makers[name]()
        if name == "ged":
            metric.update(a[:, lo:hi], b[:, lo:hi])
        else:
            metric.update(a[lo:hi], b[lo:hi])
        results[name] = metric.compute()
        if name == "thresholded_dice":
            results["thresholded_dice_curve"] = metric.compute_curve()
    return results


def run_metrics(probs, target, mask) -> dict:
    results = {}
    for name, make in metric_factories().items():
        metric = make()
        if name in {"dice", "iou", "soft_dice", "hd95", "assd"}:
            metric.update(probs, target)
        else:
            metric.update(probs, target, mask=mask)
        results[name] = metric.compute()
        if name == "ece_top":
            results["diagram_counts"] = metric.reliability_diagram().counts
        if name in {"iou", "hd95"}:
            results[f"{name}_counts"] = metric.compute_counts()
    return results


def run_all(lo: int, hi: int) -> dict:
    probs, target, mask = data()
    return {**run_metrics(probs[lo:hi], target[lo:hi], mask[lo:hi]), **other_metrics(lo, hi)}


def _worker(rank: int, world: int, port: int, out_dir: str, split: int = 3) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    lo, hi = (0, split) if rank == 0 else (split, 5)  # uneven split: 3 cases and 2 cases by default
    results = run_all(lo, hi)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return torch.allclose(
        torch.as_tensor(a).double(), torch.as_tensor(b).double(), rtol=1e-12, atol=1e-12, equal_nan=True
    )


@pytest.mark.parametrize("split", [3, 5], ids=["3+2 cases", "5 cases + an empty batch"])
def test_two_processes_equal_one_process(tmp_path, split):
    """With ``split=5`` process 1 sees only an empty batch (N = 0): its no-op update must not disturb the sync."""
    single = run_all(0, 5)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), split), nprocs=2, join=True)
    for rank in range(2):
        synced = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert synced.keys() == single.keys()
        for name in single:
            assert _equal(synced[name], single[name]), (rank, name, synced[name], single[name])
