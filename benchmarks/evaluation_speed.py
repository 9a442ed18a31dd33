"""Evaluation speed of the default segmentation metrics: softlabels vs torchmetrics + MONAI on 3-D volumes.

Test set: ``--volumes`` (default 10) synthetic BraTS-sized cases, 4×240×240×155 float32 softmax probabilities and an
int64 reference label map, generated one volume at a time from ``torch.Generator().manual_seed(seed * 1000 + v)``:
a tumour-like structure of three nested classes (core 1, enhancing rim 3, oedema 2, background 0) whose radius field
is deformed by smooth noise, and a prediction from a second, shifted and rescaled, noisier radius field plus one
spurious small oedema blob elsewhere, so prediction and reference agree imperfectly (Dice ≈ 0.6–0.8). Generating is
not timed.

The metrics (``n_bins`` = 15, boundary band half-width 2 voxels, spacing 1 mm):

* ``ece`` top-label ECE, ``ece_classwise`` (mean over the 4 classes of the one-vs-rest ECE), ``ece_boundary``
  (top-label ECE over the voxels within 2 voxels of a reference boundary), all pooled over the voxels of every
  volume; ``brier`` and ``nll`` (voxel means); ``dice`` and ``hd95`` per foreground class (means over volumes).

The sides, all fed one volume at a time in one process, in an order rotated per volume:

* **softlabels** (``_softlabels_side``, judged): ``softlabels.evaluation.Evaluator("segmentation", 4,
  spatial_dims=3, n_bins=15, boundary_width=2.0, metrics=METRICS).update(probs, References(hard=labels),
  spacing=...)``, then ``compute()`` / ``compute_per_class()``. Without the evaluation layer (older checkouts) it
  falls back to the kernels below.
* **softlabels_kernels** (not judged; the per-group breakdown): ``boundary_band`` → ``calibration_pass`` (every
  histogram and both scores in one pass; inputs validated once) → ``dice_score`` → ``hausdorff_distance_95``.
* **torchmetrics + MONAI** (judged): ``MulticlassCalibrationError(norm="l1")`` (top-label), one
  ``BinaryCalibrationError`` per class (classwise), ``MulticlassCalibrationError`` on the band voxels selected before
  the call (the band built with MONAI's distance transform per label over the whole volume), MONAI ``DiceMetric``
  and ``HausdorffDistanceMetric(percentile=95)`` (``include_background=False``) on one-hot maps of the argmax and the
  labels, and Brier and NLL in plain torch (torchmetrics has neither for probabilities). Default arguments, so the
  torchmetrics input validation is on, as softlabels' is.

Before timing, both sides evaluate volume 0 alone and their values are compared (tolerances in ``TOLERANCE``); the
top-label ECE difference is split into the bin-edge convention (torchmetrics bins ``[e, e')`` with float32 edges and a
separate bin for 1.0; softlabels ``(m−1)/M < r ≤ m/M`` exact) and torchmetrics' float32 sums, by a float64 ECE with
torchmetrics' bins. Recorded: seconds per volume of each side and metric group, compute time, the floor (one read of
the probabilities, ``probs.sum()``, best of 3, and the bandwidth it implies), peak RSS increase during each side's
calls (sampled every 5 ms), load average, and the ratio with the band's construction left out of both sides. Goal
(exit status 1 if missed, or if the sides disagree): total torchmetrics + MONAI time ≥ 3 × total softlabels time.

Run: ``python benchmarks/evaluation_speed.py`` (10 volumes, ~2.5 min on 2 idle cores) or ``--quick`` (2 volumes,
written as ``evaluation_speed_quick``, not judged).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from _common import (
    N_BINS,
    PeakRSS,
    machine_info,
    machine_md,
    max_rss_bytes,
    md_table,
    rotated,
    rss_bytes,
    state_bytes,
    write_results,
)

C = 4
SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)
BOUNDARY_WIDTH = 2.0
MIN_RATIO = 3.0
SHARP = 20.0  # logit slope per unit of normalised radius: transitions of a few voxels
CAP = 12.0  # largest logit gap, so no probability is exactly 0 or 1 in float32
METRICS = ("ece", "ece_classwise", "ece_boundary", "brier", "nll", "dice", "hd95")
TOLERANCE = {  # |softlabels − rival| allowed on volume 0 (brier, nll: relative; plain torch sums in float32)
    "ece": 1e-4, "ece_classwise": 1e-4, "ece_boundary": 1e-4, "dice": 1e-6, "hd95": 1e-6, "brier": 1e-5, "nll": 1e-5,
}  # fmt: skip
RELATIVE = {"brier", "nll"}


# --------------------------------------------------------------------------------------------- data
def _smooth(g: torch.Generator, low: tuple[int, ...], amp: float, channels: int = 1) -> torch.Tensor:
    """Smooth noise ``(channels, *SHAPE)``: Gaussian values on a coarse grid, upsampled trilinearly."""
    x = torch.randn(1, channels, *low, generator=g) * amp
    return F.interpolate(x, size=SHAPE, mode="trilinear", align_corners=False)[0]


def _radius(center: list[float], radius: float, scale: list[float], noise: torch.Tensor) -> torch.Tensor:
    """Normalised distance to ``center`` of an axis-scaled ellipsoid, plus ``noise`` (deforms the shape)."""
    axes = [
        (torch.arange(n, dtype=torch.float32) - c) / (radius * a) for n, c, a in zip(SHAPE, center, scale, strict=True)
    ]
    r2 = axes[0].view(-1, 1, 1).square() + axes[1].view(1, -1, 1).square() + axes[2].view(1, 1, -1).square()
    return r2.sqrt_().add_(noise)


def _class_logits(rho: torch.Tensor) -> torch.Tensor:
    """Logits ``(C, *SHAPE)`` of the classes by normalised radius: 1 core ≤ 0.3 < 3 rim ≤ 0.5 < 2 oedema ≤ 1 < 0."""
    bands = {0: (1.0, math.inf), 2: (0.5, 1.0), 3: (0.3, 0.5), 1: (-math.inf, 0.3)}
    out = torch.empty((C, *SHAPE), dtype=torch.float32)
    for k, (lo, hi) in bands.items():
        gap = torch.zeros_like(rho)
        if lo > -math.inf:
            gap += (lo - rho).clamp_min(0.0)
        if hi < math.inf:
            gap += (rho - hi).clamp_min(0.0)
        out[k] = gap.mul_(-SHARP).clamp_min_(-CAP)
    return out


def make_volume(seed: int, v: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Volume ``v``: probs ``(1, C, *SHAPE)`` float32 and the reference labels ``(1, *SHAPE)`` int64."""
    g = torch.Generator().manual_seed(seed * 1000 + v)
    u = torch.rand(11, generator=g).tolist()
    center = [60 + 120 * u[0], 60 + 120 * u[1], 40 + 75 * u[2]]
    radius, scale = 20 + 18 * u[3], [0.8 + 0.4 * u[4], 0.8 + 0.4 * u[5], 0.7 + 0.3 * u[6]]
    shape_noise = _smooth(g, (12, 12, 8), 0.12)[0]
    labels = _class_logits(_radius(center, radius, scale, shape_noise + _smooth(g, (24, 24, 16), 0.03)[0]))
    labels = labels.argmax(0).unsqueeze(0)
    shifted = [c + 2.0 * (2 * x - 1) for c, x in zip(center, u[7:10], strict=True)]
    rho = _radius(shifted, radius * (0.93 + 0.14 * u[10]), scale, shape_noise + _smooth(g, (24, 24, 16), 0.05)[0])
    logits = _class_logits(rho)
    del rho
    logits += _smooth(g, (30, 30, 20), 1.0, C)  # smooth, class-specific over/under-confidence
    spot = [20 + 200 * x for x in torch.rand(2, generator=g).tolist()] + [20 + 115 * float(torch.rand(1, generator=g))]
    blob = _radius(spot, 4 + 4 * float(torch.rand(1, generator=g)), [1.0, 1.0, 1.0], torch.zeros(()))
    torch.maximum(logits[2], (1.0 - blob).mul_(SHARP).clamp_(-CAP, 0.0), out=logits[2])  # a false-positive blob
    return torch.softmax(logits.unsqueeze(0), dim=1), labels


# ======================================================================================== softlabels side
def _evaluation_layer() -> tuple[Any, Any] | None:
    """``(Evaluator, References)`` of ``softlabels.evaluation``, or ``None`` where the evaluation layer is missing."""
    try:
        from softlabels.evaluation.evaluator import Evaluator
        from softlabels.evaluation.references import References
    except ImportError:
        return None
    return Evaluator, References


def _softlabels_side(state: dict[str, Any], probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """softlabels' evaluation of one volume: ``Evaluator.update`` (or the kernels without the evaluation layer)."""
    if "evaluator" not in state:
        return _kernels_side(state, probs, labels)
    t0 = time.perf_counter()
    state["evaluator"].update(probs, state["references"](hard=labels), spacing=SPACING)
    return {"Evaluator.update": time.perf_counter() - t0}


def _softlabels_values(state: dict[str, Any]) -> dict[str, Any]:
    """Dataset values of :func:`_softlabels_side` (per class for Dice and HD95)."""
    if "evaluator" not in state:
        return _kernels_values(state)
    ev = state["evaluator"]
    values, per_class = ev.compute(), ev.compute_per_class()
    return {name: per_class[name] if name in per_class else values[name] for name in METRICS}


def _kernels_side(acc: dict[str, Any], probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The same metrics from softlabels' functional kernels, timed per group; adds to ``acc``."""
    from softlabels.metrics.functional import boundary_band, calibration_pass, dice_score, hausdorff_distance_95

    clock = _Clock()
    band = boundary_band(labels, width=BOUNDARY_WIDTH)
    clock("boundary_band")
    out = calibration_pass(probs, labels, n_bins=N_BINS, masks={"boundary": band})  # validates the inputs once
    clock("calibration_pass")
    dice = dice_score(probs, labels, validate_args=False)
    clock("dice_score")
    hd95 = hausdorff_distance_95(probs, labels, spacing=SPACING, validate_args=False)
    clock("hausdorff_distance_95")
    for key, value in (("top", out.top_label), ("cw", out.classwise), ("band", out.masked["boundary"])):
        acc[key] = value.sum(0) + acc.get(key, 0.0)
    for key, value in (("nll", out.nll_sum), ("brier", out.brier_sum), ("voxels", out.voxels)):
        acc[key] = value.sum() + acc.get(key, 0)
    acc.setdefault("dice", []).append(dice[0].tolist())
    acc.setdefault("hd95", []).append(hd95[0].tolist())
    return clock.times


def _kernels_values(acc: dict[str, Any]) -> dict[str, Any]:
    """Dataset values from the summed per-case statistics of :func:`_kernels_side`."""
    from softlabels.metrics.functional.calibration import CalibrationHistogram, _calibration_error_compute

    def ece(h: torch.Tensor) -> float:  # the mean over the histogram's rows (one row for the top-label ECE)
        hist = CalibrationHistogram(h[..., 0].long(), h[..., 1], h[..., 2])
        return float(_calibration_error_compute(hist, norm="l1", mode="classwise"))

    return {
        "ece": ece(acc["top"]),
        "ece_classwise": ece(acc["cw"]),
        "ece_boundary": ece(acc["band"]),
        "brier": float(acc["brier"] / acc["voxels"]),
        "nll": float(acc["nll"] / acc["voxels"]),
        "dice": np.nanmean(np.array(acc["dice"]), 0).tolist(),
        "hd95": np.nanmean(np.array(acc["hd95"]), 0).tolist(),
    }


class Softlabels:
    """softlabels' side: through the evaluation layer (``kernels=False``) or its functional kernels."""

    def __init__(self, kernels: bool = False) -> None:
        self.name = "softlabels_kernels" if kernels else "softlabels"
        self.state: dict[str, Any] = {}
        layer = None if kernels else _evaluation_layer()
        if layer is not None:
            evaluator, references = layer
            self.state["evaluator"] = evaluator(
                "segmentation", C, spatial_dims=3, n_bins=N_BINS, boundary_width=BOUNDARY_WIDTH, metrics=METRICS
            )
            self.state["references"] = references
        self.via = "softlabels.evaluation.Evaluator" if layer is not None else "functional kernels"

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return _softlabels_side(self.state, probs, labels)

    def compute(self) -> dict[str, Any]:
        return _softlabels_values(self.state)

    def state_bytes(self) -> int:
        if "evaluator" in self.state:
            return state_bytes(list(self.state["evaluator"].metric_state.values()))
        return state_bytes([v for v in self.state.values() if isinstance(v, torch.Tensor)])


# ======================================================================================== torchmetrics + MONAI side
def _edt_band(labels: torch.Tensor, width: float) -> torch.Tensor:
    """Voxels within ``width`` of another label (both sides), by MONAI's Euclidean distance transform per label."""
    from monai.transforms.utils import distance_transform_edt

    band = torch.zeros(labels.shape, dtype=torch.bool)
    for n in range(labels.shape[0]):
        for value in torch.unique(labels[n]).tolist():
            inside = labels[n] == value
            if bool(inside.all()):
                continue
            dist = torch.as_tensor(distance_transform_edt(inside.unsqueeze(0).float()))[0]
            band[n] |= inside & (dist <= width)
    return band


class Rival:
    """torchmetrics calibration errors, MONAI Dice and HD95, plain-torch Brier and NLL."""

    name = "torchmetrics_monai"
    via = "torchmetrics 1.9 + MONAI 1.6 + plain torch"

    def __init__(self) -> None:
        from monai.metrics import DiceMetric, HausdorffDistanceMetric
        from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

        self.ece = MulticlassCalibrationError(num_classes=C, n_bins=N_BINS, norm="l1")
        self.ece_cw = [BinaryCalibrationError(n_bins=N_BINS, norm="l1") for _ in range(C)]
        self.ece_band = MulticlassCalibrationError(num_classes=C, n_bins=N_BINS, norm="l1")
        self.dice = DiceMetric(include_background=False)
        self.hd95 = HausdorffDistanceMetric(include_background=False, percentile=95.0)
        self.rows: dict[str, list[list[float]]] = {"dice": [], "hd95": []}
        self.sums = {"brier": 0.0, "nll": 0.0, "voxels": 0}

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        from monai.networks.utils import one_hot

        clock = _Clock()
        self.ece.update(probs, labels)
        clock("ece")
        for c, metric in enumerate(self.ece_cw):
            metric.update(probs[:, c], labels == c)
        clock("ece_classwise")
        band = _edt_band(labels, BOUNDARY_WIDTH)
        clock("band")
        self.ece_band.update(probs.movedim(1, -1)[band], labels[band])  # the band's voxels, (K, C) and (K,)
        clock("ece_boundary")
        pred_1h = one_hot(probs.max(dim=1, keepdim=True).indices, C)  # argmax (first maximum), as MONAI's AsDiscrete
        label_1h = one_hot(labels.unsqueeze(1), C)
        clock("one_hot")
        self.rows["dice"].append(self.dice(pred_1h, label_1h)[0].tolist())
        clock("dice")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty-class warnings
            self.rows["hd95"].append(self.hd95(pred_1h, label_1h, spacing=SPACING)[0].tolist())
        clock("hd95")
        self.sums["brier"] += float((probs - label_1h).square_().sum(1).sum(dtype=torch.float64))
        p_label = probs.gather(1, labels.unsqueeze(1))
        self.sums["nll"] += float(-p_label.clamp_min_(1e-12).log_().sum(dtype=torch.float64))
        self.sums["voxels"] += labels.numel()
        clock("brier_nll")
        return clock.times

    def compute(self) -> dict[str, Any]:
        return {
            "ece": float(self.ece.compute()),
            "ece_classwise": float(np.mean([float(m.compute()) for m in self.ece_cw])),
            "ece_boundary": float(self.ece_band.compute()),
            "brier": self.sums["brier"] / self.sums["voxels"],
            "nll": self.sums["nll"] / self.sums["voxels"],
            "dice": np.nanmean(np.array(self.rows["dice"]), 0).tolist(),
            "hd95": np.nanmean(np.array(self.rows["hd95"]), 0).tolist(),
        }

    def state_bytes(self) -> int:
        metrics = [self.ece, self.ece_band, *self.ece_cw]
        return sum(state_bytes(list(m.metric_state.values())) for m in metrics)


class _Clock:
    """Seconds since the previous call, added under a group name."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.last = time.perf_counter()

    def __call__(self, group: str) -> None:
        now = time.perf_counter()
        self.times[group] = self.times.get(group, 0.0) + now - self.last
        self.last = now


# --------------------------------------------------------------------------------------------- agreement
def _edge_split(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Volume 0: float64 top-label ECE with torchmetrics' bins, and how many values each bin rule puts elsewhere."""
    edges32 = torch.linspace(0, 1, N_BINS + 1, dtype=torch.float32)
    conf, pred = probs.max(dim=1)
    conf, correct = conf.reshape(-1), (pred == labels).reshape(-1).double()
    tm_bin = torch.bucketize(conf, edges32, right=True) - 1  # [e_b, e_b+1), 1.0 alone in bin M
    ours = (conf.double() * N_BINS).ceil().long().sub(1).clamp(0, N_BINS - 1)
    cnt = torch.bincount(tm_bin, minlength=N_BINS + 1).double()
    gap = torch.bincount(tm_bin, weights=conf.double() - correct, minlength=N_BINS + 1)
    p = probs.movedim(1, -1).reshape(-1, C)
    cw_tm = torch.bucketize(p, edges32, right=True) - 1
    cw_ours = (p.double() * N_BINS).ceil().long().sub(1).clamp(0, N_BINS - 1)
    return {
        "ece_float64_torchmetrics_bins": float(gap.abs().sum() / cnt.sum()),
        "top_label_values_binned_differently": int((tm_bin != ours).sum()),
        "classwise_values_binned_differently": int((cw_tm != cw_ours).sum()),
        "top_label_values": conf.numel(),
    }


def _differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in METRICS:
        x, y = np.atleast_1d(np.array(a[name], dtype=float)), np.atleast_1d(np.array(b[name], dtype=float))
        diff = float(np.max(np.abs(x - y)))
        if name in RELATIVE:
            diff /= float(np.max(np.abs(y)))
        out[name] = {"softlabels": a[name], "rival": b[name], "diff": diff, "relative": name in RELATIVE}
        out[name]["ok"] = bool(diff <= TOLERANCE[name])
    return out


# --------------------------------------------------------------------------------------------- driver
def _floor(probs: torch.Tensor) -> float:
    """Seconds of one read of ``probs`` (``probs.sum()``), best of 3."""
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        probs.sum()
        best = min(best, time.perf_counter() - t0)
    return best


def _timed(sampler: PeakRSS, call: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    """``call(*args)``, its seconds and the peak RSS increase during it (over the RSS just before)."""
    before = rss_bytes()
    sampler.peak = 0
    with sampler:
        t0 = time.perf_counter()
        result = call(*args)
        seconds = time.perf_counter() - t0
    return result, seconds, sampler.peak - before


def check_agreement(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Every side on volume 0 alone (also a warm-up): their values, the differences and the bin-edge split."""
    values = {}
    for side in (Softlabels(), Softlabels(kernels=True), Rival()):
        side.update(probs, labels)
        values[side.name] = side.compute()
    return {
        "values": values,
        "differences": _differences(values["softlabels"], values["torchmetrics_monai"]),
        "kernels_vs_softlabels": _differences(values["softlabels_kernels"], values["softlabels"]),
        "edges": _edge_split(probs, labels),
    }


def run(volumes: int, seed: int) -> dict[str, Any]:
    """The agreement check on volume 0, then every volume through every side (order rotated per volume)."""
    sampler = PeakRSS(interval=0.005)
    sides: dict[str, Softlabels | Rival] = {s.name: s for s in (Softlabels(), Softlabels(kernels=True), Rival())}
    rec: dict[str, Any] = {
        n: {"via": s.via, "groups": [], "seconds": [], "peak_rss_increase": []} for n, s in sides.items()
    }
    gen_s, floors, agreement = [], [], {}
    for v in range(volumes):
        t0 = time.perf_counter()
        probs, labels = make_volume(seed, v)
        gen_s.append(time.perf_counter() - t0)
        if v == 0:
            agreement = check_agreement(probs, labels)
            print("agreement:", {k: (d["diff"], d["ok"]) for k, d in agreement["differences"].items()}, flush=True)
        floors.append(_floor(probs))
        for name in rotated(list(sides), v):
            groups, seconds, peak = _timed(sampler, sides[name].update, probs, labels)
            rec[name]["groups"].append(groups)
            rec[name]["seconds"].append(seconds)
            rec[name]["peak_rss_increase"].append(peak)
        print(f"volume {v}: " + ", ".join(f"{n} {rec[n]['seconds'][-1]:.2f} s" for n in sides), flush=True)
        del probs, labels
    for name, side in sides.items():
        rec[name]["state_bytes"] = side.state_bytes()
        values, seconds, peak = _timed(sampler, side.compute)
        rec[name].update(values=values, compute_s=seconds, compute_peak_rss_increase=peak)
        rec[name]["total_s"] = sum(rec[name]["seconds"]) + seconds
    sampler.close()
    final = _differences(rec["softlabels"]["values"], rec["torchmetrics_monai"]["values"])
    return {"sides": rec, "agreement": agreement, "final_differences": final, "generation_s": gen_s, "floor_s": floors}


def _group_means(rec: dict[str, Any]) -> dict[str, float]:
    names = list(dict.fromkeys(k for g in rec["groups"] for k in g))
    return {k: float(np.mean([g.get(k, 0.0) for g in rec["groups"]])) for k in names}


def _value(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(f"{v:.6g}" for v in x) + "]"
    return f"{x:.9g}"


def _time_table(p: dict[str, Any]) -> str:
    n, floor = p["volumes"], float(np.mean(p["floor_s"]))
    rows = []
    for k, s in p["sides"].items():
        per_vol = s["total_s"] / n
        peak = max(s["peak_rss_increase"] + [s["compute_peak_rss_increase"]]) / 2**20
        judged = "" if k in ("softlabels", "torchmetrics_monai") else " (not judged)"
        times = [f"{np.mean(s['seconds']):.3f}", f"{s['compute_s']:.3f}", f"{s['total_s']:.2f}", f"{per_vol:.3f}"]
        rows.append(
            [f"`{k}`{judged}", s["via"], *times, f"{per_vol / floor:.0f}", f"{peak:.0f}", f"{s['state_bytes']:,}"]
        )
    header = ["side", "through", "s / volume (updates)", "compute s (once)", "total s", "s / volume incl. compute"]
    return md_table([*header, "× floor", "peak RSS increase MiB", "state bytes before compute"], rows)


def _without_band(p: dict[str, Any]) -> str:
    """The ratio with the band's construction left out of both sides (from the per-group times)."""
    kernels, rival, n = p["sides"]["softlabels_kernels"], p["sides"]["torchmetrics_monai"], p["volumes"]
    band_k = sum(g.get("boundary_band", 0.0) for g in kernels["groups"])
    band_r = sum(g.get("band", 0.0) for g in rival["groups"])
    k, r = kernels["total_s"] - band_k, rival["total_s"] - band_r
    return (
        f"The boundary band's construction weighs heavily: `boundary_band` (which crops to the label changes) "
        f"{band_k / n:.3f} s/volume, the rival's whole-volume EDT {band_r / n:.3f} s/volume. **Without the band on "
        f"either side**: softlabels' kernels {k / n:.3f} s/volume, torchmetrics + MONAI {r / n:.3f} s/volume, "
        f"ratio **{r / k:.2f}**.\n\n"
    )


def markdown(p: dict[str, Any]) -> str:
    n, floor = p["volumes"], float(np.mean(p["floor_s"]))
    gbps = p["probs_bytes"] / floor / 1e9
    lines = [
        "# Evaluation speed benchmark (`benchmarks/evaluation_speed.py`)\n\n",
        machine_md(p["machine"]),
        f"1-minute load average: {p['loadavg'][0]:.2f} at the start, {p['loadavg'][1]:.2f} at the end; "
        f"wall time {p['wall_s']:.0f} s; torch threads {p['threads']}.\n\n",
        f"Test set: {n} synthetic volumes of 4×240×240×155 float32 softmax probabilities + int64 reference labels "
        f"(seed {p['seed']}; tumour-like nested classes, imperfect prediction; generation "
        f"{np.mean(p['generation_s']):.1f} s/volume, not timed). Metrics: top-label, classwise and boundary-band "
        f"(width {BOUNDARY_WIDTH:g}) ECE with {N_BINS} bins, Brier, NLL, Dice and HD95 of the 3 foreground "
        "classes. Each side gets every volume in turn (order rotated per volume), one volume per call.\n\n",
        "## Time\n\n",
        _time_table(p),
        f"\n**Floor** (one read of the probabilities, `probs.sum()`, best of 3): {floor * 1e3:.1f} ms per volume "
        f"({p['probs_bytes'] / 2**20:.0f} MiB, {gbps:.1f} GB/s).\n\n",
        f"**Ratio** total torchmetrics + MONAI / total softlabels = **{p['ratio']:.2f}** (goal ≥ {MIN_RATIO:g}"
        f"{', not judged: --quick' if p['quick'] else ''}): **{p['verdict']}**. The functional kernels alone: "
        f"{p['ratio_kernels']:.2f}.\n\n",
        _without_band(p),
        "Seconds per volume by metric group (mean over volumes):\n\n",
    ]
    for key, rec in p["sides"].items():
        groups = _group_means(rec)
        lines.append(md_table([f"`{key}` group", "s / volume"], [[g, f"{t:.3f}"] for g, t in groups.items()]) + "\n")
    lines += [
        "`softlabels` is one `Evaluator.update` per volume (it also builds the foreground mask and histogram, and "
        "its metrics validate their inputs). `softlabels_kernels`: `boundary_band`; `calibration_pass` = top-label, "
        "classwise and band histograms + Brier + NLL sums, inputs validated once; `dice_score`; "
        "`hausdorff_distance_95`. Rival: `ece`, `ece_classwise` (4 × `BinaryCalibrationError`, including "
        "`labels == c`), `band` (MONAI's EDT per label on the whole volume, as `boundary_band` did before it "
        "cropped), `ece_boundary` (the band's voxels selected, then `MulticlassCalibrationError`), `one_hot` (argmax "
        "and both one-hot maps, shared by Dice and HD95), `dice`, `hd95`, `brier_nll` (plain torch: torchmetrics has "
        "no Brier score or NLL for probabilities). The torchmetrics metrics keep every value (list states) until "
        "`compute`.\n\n",
        "## Agreement\n\n",
        "Volume 0 alone, `softlabels` against the rival (checked before timing):\n\n",
        _agreement_table(p["agreement"]["differences"], tolerance=True),
    ]
    e = p["agreement"]["edges"]
    d0 = p["agreement"]["differences"]["ece"]
    tm64 = e["ece_float64_torchmetrics_bins"]
    kernel_diff = max(d["diff"] for d in p["agreement"]["kernels_vs_softlabels"].values())
    lines.append(
        f"\nTop-label ECE split: with torchmetrics' bins in float64 the ECE is {tm64:.9f}; |softlabels − that| = "
        f"{abs(d0['softlabels'] - tm64):.2e} is the bin-edge convention "
        f"({e['top_label_values_binned_differently']:,} of {e['top_label_values']:,} top-label values and "
        f"{e['classwise_values_binned_differently']:,} classwise values fall in another bin), |torchmetrics − that| = "
        f"{abs(d0['rival'] - tm64):.2e} is torchmetrics' float32 accumulation. The functional kernels give the "
        f"Evaluator's values to {kernel_diff:.1e}.\n\n"
    )
    lines += [
        f"All {n} volumes (dataset values of the timed run):\n\n",
        _agreement_table(p["final_differences"], tolerance=False),
        "\nThe pooled torchmetrics ECEs over all volumes drift further: they bin and sum about 9e7 values in float32 "
        "(a float32 count stops growing at 2^24 ≈ 1.7e7), while softlabels keeps int64 counts and float64 sums.\n",
    ]
    return "".join(lines)


def _agreement_table(diffs: dict[str, dict[str, Any]], tolerance: bool) -> str:
    rows = []
    for name, d in diffs.items():
        kind = "rel." if d["relative"] else "abs."
        row = [name, _value(d["softlabels"]), _value(d["rival"]), f"{d['diff']:.2e} ({kind})"]
        rows.append(row + ([f"{TOLERANCE[name]:g}", "yes" if d["ok"] else "**no**"] if tolerance else []))
    header = ["metric", "softlabels", "torchmetrics + MONAI", "max |difference|"]
    return md_table(header + (["tolerance", "agree"] if tolerance else []), rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--volumes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--quick", action="store_true", help="2 volumes, written as <name>_quick, not judged")
    ap.add_argument("--name", default="evaluation_speed", help="result file stem")
    args = ap.parse_args()
    volumes = 2 if args.quick else args.volumes
    name = f"{args.name}_quick" if args.quick else args.name
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    res = run(volumes, args.seed)
    sl, rv = res["sides"]["softlabels"], res["sides"]["torchmetrics_monai"]
    ratio = rv["total_s"] / sl["total_s"]
    ratio_kernels = rv["total_s"] / res["sides"]["softlabels_kernels"]["total_s"]
    agree = all(d["ok"] for d in res["agreement"]["differences"].values())
    passed = ratio >= MIN_RATIO and agree
    verdict = "PASS" if passed else "FAIL" + ("" if agree else " (the sides disagree)")
    payload = {
        "benchmark": "evaluation_speed",
        "machine": machine_info(),
        "volumes": volumes,
        "seed": args.seed,
        "threads": args.threads,
        "quick": args.quick,
        "shape": [C, *SHAPE],
        "n_bins": N_BINS,
        "boundary_width": BOUNDARY_WIDTH,
        "spacing": SPACING,
        "probs_bytes": C * math.prod(SHAPE) * 4,
        **res,
        "ratio": ratio,
        "ratio_kernels": ratio_kernels,
        "min_ratio": MIN_RATIO,
        "agree": agree,
        "passed": passed,
        "verdict": verdict,
        "ru_maxrss_bytes": max_rss_bytes(),
        "loadavg": [load_start, os.getloadavg()[0]],
        "wall_s": time.perf_counter() - t0,
    }
    write_results(name, payload, markdown(payload))
    print(f"softlabels {sl['total_s']:.1f} s, torchmetrics + MONAI {rv['total_s']:.1f} s: ratio {ratio:.2f}; {verdict}")
    return 0 if passed or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
