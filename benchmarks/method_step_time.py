"""Per-training-step time of every registered segmentation method vs plain hard-label cross-entropy on a MONAI UNet.

Setups (C = 4 classes, ``monai.networks.nets.UNet(strides=(2, 2, 2), num_res_units=2)``, Adam lr 1e-4):

* ``2d``: batch 8×1×128×128, channels (16, 32, 64, 128);
* ``3d``: batch 2×1×64×64×64, channels (16, 32, 64, 128); reduced to (8, 16, 32, 64) only if a hard-label step
  takes more than ``MAX_STEP_S`` seconds (the choice is recorded).

A step is ``zero_grad``, forward, ``method.make_target(batch)``, loss, backward, ``optimizer.step()``,
``method.on_train_batch_end(logits.detach(), target)``. The baseline ``hard_ce`` is ``torch.nn.CrossEntropyLoss()``
on ``batch["label"]`` with no softlabels code; ``hard_ce_repeat`` is the same code timed as a separate row (an A/A
control: its ratio shows the noise of the measurement). Every registry method of ``list_methods("segmentation")``
is a row, ``hard`` included; ``tfkd_self`` gets a second UNet of the same architecture as its teacher.

Fairness: one seeded batch per setup (``torch.Generator``), one model and one Adam shared by every row (so every
step does the same network and optimiser work; reloading weights per block added memory churn of its own);
``--warmup`` untimed steps per method; then ``--rounds`` rounds. In a round every method runs ``--steps`` timed
steps, each right next to a ``hard_ce`` step (the order alternating), the methods rotated by one per round. Judged:
ratio = median over all pairs of (method step / its adjacent ``hard_ce`` step), so the slow drifts of this shared
VM hit both sides of a pair alike; goal ratio ≤ ``GOAL``. The ratio of the two medians is kept as a cross-check.

To explain overheads, the target construction + loss forward + backward are also timed alone (no network: on the
detached logits of the initial model, with ``requires_grad``), interleaved the same way, each repetition after
writing a ``FLUSH_MIB`` scratch buffer (so the inputs are not cache-hot, as after a network pass), with the OLS-style
``on_train_batch_end`` hook timed separately.

The VM this runs on has slow episodes (the whole CPU several times slower for seconds at a time). A fixed matmul
("canary") is timed before and after every block; blocks whose canary exceeds ``DISTURBED``× the run's median are
reported as disturbed and a ratio without them is given as a cross-check (the judged ratio uses every step).

Exit status 1 if a method other than ``tfkd_self`` (and the two baseline rows) misses the goal in a full run (the
results are written first); ``--quick`` runs are a smoke test and are not judged.

Run: ``python benchmarks/method_step_time.py`` (~8–12 min on 2 cores), ``--quick`` (< 2 min), ``--setups 2d``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from monai.networks.nets import UNet
from torch import Tensor, nn

from _common import RESULTS, canary, machine_info, machine_md, md_table, rotated, write_results
from softlabels.methods import create_method, list_methods

C = 4
RATERS = 3
LR = 1e-4
GOAL = 1.05
MAX_STEP_S = 4.0
BASELINE = "hard_ce"
CONTROL = "hard_ce_repeat"
NOT_JUDGED = (BASELINE, CONTROL)
WORK = {  # what each method adds to a plain CE step (from the code of softlabels.methods and its targets/losses)
    "boundary_ls": "one-hot of the label map, a separable 3×3(×3) min/max of the label map to find class "
    "boundaries, soft CE",
    "confidence_soft": "a soft target from the confidence map, soft CE",
    "confidence_threshold": "the label map thresholded on the confidence, CE",
    "confidence_weighted": "CE weighted by the confidence map",
    "dml": "soft Dice (DML) counts by class + KL on the hard label",
    "flsd": "focal loss with the sample-dependent γ of FLSD-53",
    "focal": "focal loss, γ = 3",
    "hard": "softlabels' soft-CE code on the hard label (labels checked in make_target)",
    "ls": "PyTorch's fused label smoothing in the CE",
    "mbls": "CE + a hinge on logit distances (max over classes per voxel, and its gradient)",
    "nacl": "CE + L1 to local class proportions (a separable 3×3(×3) window over the one-hot label map)",
    "ols": "α·CE + (1 − α)·soft CE to rows of the class matrix S (one C×C matmul), and a batch-end hook "
    "(softmax, first-maximum test, per-class sums by one batched matmul)",
    "raters_majority": "vote counts of the 3 rater maps, their majority label, its one-hot, CE",
    "raters_mean": "vote counts of the 3 rater maps divided by 3, soft CE",
    "raters_svls": "vote counts of the 3 rater maps and their separable SVLS filter, soft CE",
    "raters_weighted": "vote counts, the majority label, Dice of each rater against it, weighted votes, soft CE",
    "soft_label": "soft CE on the given soft map (checked to be a distribution)",
    "svls": "one-hot of the label map and its separable 3×3(×3) SVLS filter, soft CE",
    "tfkd": "the closed-form KL to the virtual teacher (a sum of log-probabilities and the one at the label)",
    "tfkd_self": "a forward pass of the teacher UNet, softmax at temperature 6, a KL term",
}
EXPECTED_MISS = {"tfkd_self": "runs the teacher UNet forward (eval, no_grad) on the image inside make_target"}
SETUPS: dict[str, dict[str, Any]] = {
    "2d": {"spatial_dims": 2, "batch": 8, "shape": (128, 128), "channels": (16, 32, 64, 128)},
    "3d": {"spatial_dims": 3, "batch": 2, "shape": (64, 64, 64), "channels": (16, 32, 64, 128)},
}
REDUCED_CHANNELS = (8, 16, 32, 64)
CANARY_SIZE, CANARY_REPS = 512, 4  # a fixed float32 matmul timed before and after every block (~2.5 ms)
FLUSH_MIB = 256  # scratch buffer written before each no-network repetition (as the network would between steps)
DISTURBED = 1.5  # a block whose canary took > 1.5× the run's median canary ran during a slow episode of the VM
FLIP_FRACTION = 0.02  # share of voxels each rater relabels at random


# --------------------------------------------------------------------------------------------- data and models
def smooth_field(g: torch.Generator, n: int, ch: int, shape: tuple[int, ...]) -> Tensor:
    """Random field on a grid 8× coarser, upsampled (bi/tri)linearly: smooth blobs, roughly unit scale."""
    low = tuple(max(s // 8, 2) for s in shape)
    coarse = torch.randn(n, ch, *low, generator=g)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=False)


def make_batch(setup: dict[str, Any], seed: int) -> dict[str, Tensor]:
    """One fixed batch: image, label (argmax of smooth logits), 3 raters, confidence, soft_label (their softmax)."""
    g = torch.Generator().manual_seed(seed)
    n, shape = setup["batch"], tuple(setup["shape"])
    image = smooth_field(g, n, 1, shape) + 0.1 * torch.randn(n, 1, *shape, generator=g)
    logits = 4.0 * smooth_field(g, n, C, shape)
    label = logits.argmax(1)
    raters = []
    for _ in range(RATERS):
        flip = torch.rand(n, *shape, generator=g) < FLIP_FRACTION
        raters.append(torch.where(flip, torch.randint(0, C, (n, *shape), generator=g), label))
    confidence = torch.sigmoid(2.0 * smooth_field(g, n, 1, shape)[:, 0])
    return {
        "image": image.contiguous(),
        "label": label.contiguous(),
        "raters": torch.stack(raters, 1),
        "confidence": confidence.contiguous(),
        "soft_label": torch.softmax(logits, 1).contiguous(),
    }


def make_unet(setup: dict[str, Any], channels: tuple[int, ...], seed: int) -> nn.Module:
    """A MONAI UNet with weights from ``seed``; the global RNG is forked, so its state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet(
            spatial_dims=setup["spatial_dims"],
            in_channels=1,
            out_channels=C,
            channels=channels,
            strides=(2, 2, 2),
            num_res_units=2,
        )


# --------------------------------------------------------------------------------------------- one step
StepFn = Callable[[torch.optim.Optimizer], tuple[float, float, Tensor]]


def make_step(method: nn.Module | None, model: nn.Module, batch: dict[str, Tensor]) -> StepFn:
    """``step(optimizer) → (step seconds, make_target seconds inside it, loss)`` for one row of the table."""
    image, label = batch["image"], batch["label"]
    if method is None:  # the plain PyTorch rival: no softlabels code at all
        ce = nn.CrossEntropyLoss()

        def step(opt: torch.optim.Optimizer) -> tuple[float, float, Tensor]:
            t0 = time.perf_counter()
            opt.zero_grad()
            logits = model(image)
            loss = ce(logits, label)
            loss.backward()
            opt.step()
            return time.perf_counter() - t0, 0.0, loss.detach()

        return step

    def method_step(opt: torch.optim.Optimizer) -> tuple[float, float, Tensor]:
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(image)
        t1 = time.perf_counter()
        target = method.make_target(batch)
        t2 = time.perf_counter()
        loss = method(logits, target)
        loss.backward()
        opt.step()
        method.on_train_batch_end(logits.detach(), target)
        return time.perf_counter() - t0, t2 - t1, loss.detach()

    return method_step


def alone(method: nn.Module | None, logits0: Tensor, batch: dict[str, Tensor]) -> tuple[float, ...]:
    """Target construction, loss forward + backward, and the batch-end hook on detached logits: seconds of each."""
    x = logits0.clone().requires_grad_(True)
    t0 = time.perf_counter()
    if method is None:
        t1 = t0
        nn.functional.cross_entropy(x, batch["label"]).backward()
        t2 = t3 = time.perf_counter()
    else:
        target = method.make_target(batch)
        t1 = time.perf_counter()
        method(x, target).backward()
        t2 = time.perf_counter()
        method.on_train_batch_end(x.detach(), target)
        t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


# --------------------------------------------------------------------------------------------- one setup
def build_methods(setup: dict[str, Any], channels: tuple[int, ...], seed: int) -> dict[str, nn.Module | None]:
    """``hard_ce``, its repeat (``None``: no softlabels code), then every segmentation method of the registry."""
    methods: dict[str, nn.Module | None] = {BASELINE: None, CONTROL: None}
    for name in list_methods("segmentation"):
        extra: dict[str, Any] = {}
        if name == "tfkd_self":
            extra["teacher"] = make_unet(setup, channels, seed + 1)
        methods[name] = create_method(name, num_classes=C, task="segmentation", **extra)
    return methods


def pick_channels(setup: dict[str, Any], batch: dict[str, Tensor], seed: int) -> tuple[tuple[int, ...], list[float]]:
    """The configured channels, or ``REDUCED_CHANNELS`` if a hard-label step there takes over ``MAX_STEP_S``."""
    channels = tuple(setup["channels"])
    model = make_unet(setup, channels, seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    step = make_step(None, model, batch)
    probe: list[float] = []
    while len(probe) < 5 and (not probe or min(probe) > MAX_STEP_S):  # up to 5 tries: a slow VM episode passes
        probe.append(step(opt)[0])
    if setup["spatial_dims"] == 3 and min(probe) > MAX_STEP_S:
        channels = REDUCED_CHANNELS
    return channels, probe


def run_setup(key: str, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, interleaved timed rounds and the no-network timings of one setup."""
    setup = SETUPS[key]
    t_setup = time.perf_counter()
    load_start = os.getloadavg()[0]
    batch = make_batch(setup, args.seed)
    channels, probe = pick_channels(setup, batch, args.seed)
    model = make_unet(setup, channels, args.seed)
    model.train()
    init_state = copy.deepcopy(model.state_dict())
    methods = build_methods(setup, channels, args.seed)
    names = list(methods)
    steps = {n: make_step(m, model, batch) for n, m in methods.items()}
    opt = torch.optim.Adam(model.parameters(), lr=LR)  # one model and one optimiser for every row (no reloads)

    warm_loss: dict[str, float] = {}
    for name in names:
        out = [steps[name](opt) for _ in range(args.warmup)]
        warm_loss[name] = float(out[-1][2])
        if not torch.isfinite(out[-1][2]):
            raise RuntimeError(f"{key}: method {name!r} gave a non-finite loss {warm_loss[name]}")
    paired = [n for n in names if n != BASELINE]
    step_s: dict[str, list[list[float]]] = {n: [] for n in names}
    base_s: dict[str, list[list[float]]] = {n: [] for n in paired}  # the hard_ce step timed next to each step
    target_s: dict[str, list[list[float]]] = {n: [] for n in names}
    canary_s: dict[str, list[float]] = {n: [] for n in names}
    gauge = torch.randn(CANARY_SIZE, CANARY_SIZE, generator=torch.Generator().manual_seed(args.seed))
    for r in range(args.rounds):
        base_round: list[float] = []
        for name in rotated(paired, r):
            before = canary(gauge, CANARY_REPS)
            mine, theirs, inside = [], [], []
            for s in range(args.steps):  # adjacent pairs, the order alternating: drifts hit both sides alike
                if (r + s) % 2:
                    out, ref = steps[name](opt), steps[BASELINE](opt)
                else:
                    ref, out = steps[BASELINE](opt), steps[name](opt)
                mine.append(out[0])
                theirs.append(ref[0])
                inside.append(out[1])
            canary_s[name].append(max(before, canary(gauge, CANARY_REPS)))
            step_s[name].append(mine)
            base_s[name].append(theirs)
            target_s[name].append(inside)
            base_round += theirs
        step_s[BASELINE].append(base_round)
        target_s[BASELINE].append([0.0])
        canary_s[BASELINE].append(min(canary_s[n][-1] for n in paired))
        print(json.dumps({"setup": key, "round": r + 1, "of": args.rounds, "elapsed_s": _since(t_setup)}), flush=True)

    model.load_state_dict(init_state)
    with torch.no_grad():
        logits0 = model(batch["image"]).detach()
    parts: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    scratch = torch.zeros(FLUSH_MIB * 2**18)  # written before every repetition: inputs come from memory, not cache
    for r in range(args.alone_reps):
        for name in rotated(names, r):
            scratch.add_(1.0)
            parts[name].append(alone(methods[name], logits0, batch))
    del scratch
    rows = summarise(names, step_s, base_s, target_s, parts, canary_s)
    return {
        "setup": key,
        "spatial_dims": setup["spatial_dims"],
        "batch_image_shape": [setup["batch"], 1, *setup["shape"]],
        "channels": list(channels),
        "channels_reduced": channels != tuple(setup["channels"]),
        "channel_probe_step_s": probe,
        "method_params": {n: (None if m is None else m.params) for n, m in methods.items()},
        "warmup_final_loss": warm_loss,
        "methods": rows,
        "canary_median_ms": 1e3 * statistics.median(c for n in names for c in canary_s[n]),
        "canary_max_ms": 1e3 * max(c for n in names for c in canary_s[n]),
        "disturbed_blocks": sum(r["disturbed_blocks"] for r in rows.values()),
        "blocks": sum(len(canary_s[n]) for n in names),
        "loadavg_1min_start": load_start,
        "loadavg_1min_end": os.getloadavg()[0],
        "wall_s": _since(t_setup),
    }


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 1)


def _pair_ratios(mine: list[list[float]], theirs: list[list[float]]) -> list[list[float]]:
    return [[a / b for a, b in zip(m, t, strict=True)] for m, t in zip(mine, theirs, strict=True)]


def summarise(
    names: list[str],
    step_s: dict[str, list[list[float]]],
    base_s: dict[str, list[list[float]]],
    target_s: dict[str, list[list[float]]],
    parts: dict[str, list[tuple[float, ...]]],
    canary_s: dict[str, list[float]],
) -> dict[str, dict[str, Any]]:
    """Medians (ms), paired ratios against ``hard_ce`` (all pairs, per round, undisturbed blocks), the breakdown."""
    med = {n: 1e3 * statistics.median(t for rnd in step_s[n] for t in rnd) for n in names}
    limit = DISTURBED * statistics.median(c for n in names for c in canary_s[n])
    rows: dict[str, dict[str, Any]] = {}
    for n in names:
        if n == BASELINE:
            pairs = [[1.0] * len(rnd) for rnd in step_s[n]]
        else:
            pairs = _pair_ratios(step_s[n], base_s[n])
        per_round = [statistics.median(rnd) for rnd in pairs]
        q1, _, q3 = statistics.quantiles(per_round, n=4, method="inclusive")
        clean = [rnd for rnd, c in zip(pairs, canary_s[n], strict=True) if c <= limit]
        t_target, t_loss, t_hook = (1e3 * statistics.median(p[i] for p in parts[n]) for i in range(3))
        target_loss = 1e3 * statistics.median(p[0] + p[1] for p in parts[n])
        ratio = statistics.median(x for rnd in pairs for x in rnd)
        rows[n] = {
            "median_step_ms": med[n],
            "ratio": ratio,
            "ratio_of_medians": med[n] / med[BASELINE],
            "ratio_per_round": per_round,
            "ratio_per_round_q1": q1,
            "ratio_per_round_q3": q3,
            "step_ms_per_round": [[1e3 * t for t in rnd] for rnd in step_s[n]],
            "paired_hard_ce_ms_per_round": None if n == BASELINE else [[1e3 * t for t in rnd] for rnd in base_s[n]],
            "canary_ms_per_round": [1e3 * c for c in canary_s[n]],
            "disturbed_blocks": len(pairs) - len(clean),
            "ratio_undisturbed": statistics.median(x for rnd in clean for x in rnd) if clean else None,
            "make_target_in_step_ms": 1e3 * statistics.median(t for rnd in target_s[n] for t in rnd),
            "alone_target_ms": t_target,
            "alone_loss_fwd_bwd_ms": t_loss,
            "alone_hook_ms": t_hook,
            "alone_target_loss_ms": target_loss,
            "alone_share_of_step": target_loss / med[n],
            "verdict": verdict(n, ratio),
        }
    return rows


def verdict(name: str, ratio: float) -> str:
    if name in NOT_JUDGED:
        return "baseline" if name == BASELINE else "A/A control"
    if ratio <= GOAL:
        return "pass"
    return "miss (expected)" if name in EXPECTED_MISS else "miss"


# --------------------------------------------------------------------------------------------- report
def misses(payload: dict[str, Any], *, unexpected_only: bool) -> list[str]:
    out = []
    for key, res in payload["setups"].items():
        for n, row in res["methods"].items():
            if row["verdict"].startswith("miss") and not (unexpected_only and n in EXPECTED_MISS):
                out.append(f"{key}:{n}")
    return out


def table(res: dict[str, Any]) -> str:
    rows = []
    for n, r in res["methods"].items():
        rows.append(
            [
                f"`{n}`",
                f"{r['median_step_ms']:.1f}",
                f"{r['ratio']:.3f}",
                f"{r['ratio_per_round_q1']:.2f}–{r['ratio_per_round_q3']:.2f}",
                "—" if r["ratio_undisturbed"] is None else f"{r['ratio_undisturbed']:.3f}",
                f"{r['disturbed_blocks']}/{len(r['step_ms_per_round'])}",
                f"{r['make_target_in_step_ms']:.2f}",
                f"{r['alone_target_loss_ms']:.2f}",
                f"{r['alone_target_ms']:.2f}",
                f"{r['alone_hook_ms']:.2f}",
                f"{100 * r['alone_share_of_step']:.1f} %",
                r["verdict"],
            ]
        )
    header = [
        "method",
        "median step ms",
        "paired ratio vs hard_ce",
        "per-round ratio IQR",
        "ratio, undisturbed blocks",
        "disturbed blocks",
        "make_target ms (in step)",
        "target+loss ms (no network)",
        "of which target ms",
        "hook ms",
        "target+loss share of step",
        f"≤ {GOAL:g}×?",
    ]
    return md_table(header, rows)


def _parts(r: dict[str, Any], base: dict[str, Any]) -> tuple[float, str]:
    """Extra ms of a method's own work over ``hard_ce`` (no network) and the name of its largest part."""
    extra = r["alone_target_loss_ms"] + r["alone_hook_ms"] - base["alone_target_loss_ms"]
    pieces = {
        "target construction": r["alone_target_ms"],
        "loss forward + backward": r["alone_loss_fwd_bwd_ms"] - base["alone_loss_fwd_bwd_ms"],
        "batch-end hook": r["alone_hook_ms"],
    }
    return extra, max(pieces, key=lambda k: pieces[k])


def explain(res: dict[str, Any]) -> list[str]:
    """One bullet per method that misses (or would miss on undisturbed blocks), built from the run's numbers."""
    rows = res["methods"]
    base = rows[BASELINE]
    noise = abs(rows[CONTROL]["ratio"] - 1.0)
    judged = [n for n in rows if n not in NOT_JUDGED]
    missed = [n for n in judged if rows[n]["verdict"].startswith("miss")]
    out = [
        f"{len(missed)} of {len(judged)} methods miss ratio ≤ {GOAL:g}"
        + (": " + ", ".join(f"`{n}`" for n in missed) if missed else "")
        + f". The A/A control `{CONTROL}` is at {rows[CONTROL]['ratio']:.3f} (noise ≈ ±{100 * noise:.1f} %); the "
        f"registry's `hard` (softlabels' soft-CE code on the hard label) is at {rows['hard']['ratio']:.3f}.\n\n"
    ]
    for n in judged:
        r = rows[n]
        clean = r["ratio_undisturbed"]
        flips = clean is not None and (clean <= GOAL) != (r["ratio"] <= GOAL)
        if not (r["verdict"].startswith("miss") or flips):
            continue
        gap = (r["ratio"] - 1.0) * base["median_step_ms"]
        extra, biggest = _parts(r, base)
        work = WORK.get(n, "see its registry entry")
        text = (
            f"- `{n}` ({r['verdict']}): ratio {r['ratio']:.3f}, {gap:+.1f} ms per step. Its own work: {work}. "
            f"Timed alone it takes {r['alone_target_loss_ms'] + r['alone_hook_ms']:.2f} ms (target "
            f"{r['alone_target_ms']:.2f}, loss forward + backward {r['alone_loss_fwd_bwd_ms']:.2f}, hook "
            f"{r['alone_hook_ms']:.2f}) against {base['alone_target_loss_ms']:.2f} ms for `hard_ce`: "
            f"{extra:+.2f} ms = {100 * extra / base['median_step_ms']:.1f} % of the `hard_ce` step; the largest "
            f"extra part is the {biggest}."
        )
        if n in EXPECTED_MISS:
            text += f" Expected: it {EXPECTED_MISS[n]} ({r['make_target_in_step_ms']:.1f} ms inside the step)."
        elif gap > 0 and extra >= 0.5 * gap:
            text += f" That accounts for {100 * extra / gap:.0f} % of the step gap: the overhead is real."
        elif gap > 0:
            text += (
                f" That explains only {100 * max(extra, 0.0) / gap:.0f} % of the step gap; the rest is noise or a "
                "side effect on the network's own forward/backward."
            )
        if flips:
            text += (
                f" On undisturbed blocks only the ratio is {clean:.3f}, which would "
                f"{'pass' if clean <= GOAL else 'miss'}: borderline."
            )
        out.append(text + "\n")
    return out


def markdown(payload: dict[str, Any]) -> str:
    cfg = payload["config"]
    lines = [
        "# Per-step time of every method vs hard-label CE (`benchmarks/method_step_time.py`)\n\n",
        machine_md(payload["machine"]),
        f"\nMONAI UNet (strides (2, 2, 2), 2 residual units), C = {C}, Adam lr {LR:g}; a step = zero_grad, forward, "
        "make_target, loss, backward, optimiser step, on_train_batch_end. Baseline `hard_ce` = "
        "`torch.nn.CrossEntropyLoss()` on the hard label with no softlabels code; `hard_ce_repeat` is the same code "
        "timed as another row (A/A control: its distance from 1 is the noise of the run). Fixed seeded batch "
        f"(seed {cfg['seed']}), one model and one Adam for every row; {cfg['warmup']} warm-up steps per method, "
        f"then {cfg['rounds']} rounds; in each, every method runs {cfg['steps']} steps, each adjacent to a "
        "`hard_ce` step (the order alternating), methods rotated each round; ratio = median over all pairs of "
        "method step / adjacent `hard_ce` step (the ratio of the two medians is in the JSON as a cross-check). "
        "'target+loss (no network)': make_target + loss forward + "
        f"backward on detached logits, median of {cfg['alone_reps']} interleaved repetitions, each after writing a "
        f"{FLUSH_MIB} MiB scratch buffer (so the inputs are not cache-hot); the batch-end hook is timed separately. "
        f"A fixed {CANARY_SIZE}² matmul ×{CANARY_REPS} is timed before and after every block of pairs; "
        f"a block whose slower canary exceeds {DISTURBED:g}× the run's median canary ran in one of this shared VM's "
        "slow episodes (the whole CPU runs several times slower for seconds at a time) and is left out of the "
        "'undisturbed' ratio, shown as a cross-check; the judged ratio uses every step. Torch threads: "
        f"{cfg['torch_threads']}. Goal: ratio ≤ {GOAL:g}. "
        + ("**Quick smoke run: not judged.** " if cfg["quick"] else "")
        + f"Wall time {payload['wall_s']:.0f} s.\n",
    ]
    for key, res in payload["setups"].items():
        shape = "×".join(map(str, res["batch_image_shape"]))
        reduced = " (reduced: a 3D step exceeded the limit)" if res["channels_reduced"] else ""
        lines += [
            f"\n## {key}: batch {shape}, channels {tuple(res['channels'])}{reduced}\n\n",
            f"1-minute load average {res['loadavg_1min_start']:.2f} → {res['loadavg_1min_end']:.2f}; "
            f"{res['wall_s']:.0f} s. Canary: median {res['canary_median_ms']:.2f} ms, slowest "
            f"{res['canary_max_ms']:.2f} ms ({res['canary_max_ms'] / res['canary_median_ms']:.1f}×); "
            f"{res['disturbed_blocks']} of {res['blocks']} blocks disturbed.\n\n",
            table(res),
            "\n**Which methods miss and why**\n\n",
            *explain(res),
        ]
    bad = misses(payload, unexpected_only=True)
    status = "not judged (quick run)" if cfg["quick"] else ("PASS" if not bad else "FAIL: " + ", ".join(bad))
    lines.append(f"\n**Result** (methods other than `tfkd_self`): {status}.\n")
    return "".join(lines)


# --------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds × 2 steps, 1 warm-up (smoke run, not judged)")
    ap.add_argument("--setups", default="2d,3d", help="comma-separated subset of " + ", ".join(SETUPS))
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 15, quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="(method, hard_ce) pairs per method per round (default 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per method (default 3, quick 1)")
    ap.add_argument("--alone-reps", type=int, default=None, help="no-network repetitions (default 25, quick 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--name", default="method_step_time", help="result file stem")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the existing .json")
    args = ap.parse_args()
    if args.render:
        payload = json.loads((RESULTS / f"{args.name}.json").read_text())
        write_results(args.name, payload, markdown(payload))
        return 0 if payload["passed"] in (True, None) else 1
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 15)
    args.steps = args.steps or 2
    args.warmup = args.warmup or (1 if quick else 3)
    args.alone_reps = args.alone_reps or (3 if quick else 25)
    keys = [k.strip() for k in args.setups.split(",") if k.strip()]
    unknown = sorted(set(keys) - set(SETUPS))
    if unknown:
        ap.error(f"unknown setup(s) {unknown}; valid: {sorted(SETUPS)}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results = {key: run_setup(key, args) for key in keys}
    config = {
        "quick": quick,
        "setups": {k: {**SETUPS[k], "channels_used": results[k]["channels"]} for k in keys},
        "num_classes": C,
        "raters": RATERS,
        "rater_flip_fraction": FLIP_FRACTION,
        "lr": LR,
        "optimizer": "torch.optim.Adam",
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "alone_reps": args.alone_reps,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "goal_ratio": GOAL,
        "max_3d_step_s_before_reducing_channels": MAX_STEP_S,
        "no_network_flush_mib": FLUSH_MIB,
        "canary": {"matmul_size": CANARY_SIZE, "reps": CANARY_REPS, "disturbed_above_x_median": DISTURBED},
        "expected_misses": EXPECTED_MISS,
    }
    payload: dict[str, Any] = {"benchmark": "method_step_time", "machine": machine_info(), "config": config}
    payload["setups"] = results
    payload["wall_s"] = time.perf_counter() - t0
    bad = misses(payload, unexpected_only=True)
    payload["misses"] = misses(payload, unexpected_only=False)
    payload["unexpected_misses"] = bad
    payload["passed"] = None if quick else not bad
    write_results(args.name, payload, markdown(payload))
    for key, res in results.items():
        print(key, {n: round(r["ratio"], 3) for n, r in res["methods"].items()})
    if quick:
        print(f"quick run (not judged); misses: {payload['misses'] or 'none'}")
        return 0
    print("PASS" if not bad else "FAIL, ratio > " + f"{GOAL:g}: " + ", ".join(bad))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
