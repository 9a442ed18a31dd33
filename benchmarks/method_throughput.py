"""Training throughput (images/s) of every registered method relative to ``hard``, and the Lightning task's overhead.

Setups: the sizes of the repository's CPU configs, read from the YAML files and built by
``softlabels.training.run.build_run`` (data, model, optimiser exactly as ``softlabels train`` builds them, the method
replaced by ``hard``):

* ``unet_2d``: ``configs/cpu/segmentation_confidence_tau0.6.yaml``: synthetic 2D segmentation, 48×48, C = 2, 24
  training cases, batch 8; MONAI UNet channels (8, 16, 32), strides (2, 2), 1 residual unit; AdamW lr 3e-3;
* ``mobilenet_v2``: ``configs/cpu/classification_mobilenet_v2_hard.yaml``: synthetic classification, 1×32×32, C = 8,
  256 training items, batch 32; MobileNetV2 width 0.25; SGD lr 0.05, momentum 0.9, weight decay 1e-4, multistep.

Part 1, per-method throughput: every method of ``list_methods(task)`` (defaults, ``create_method(name, C,
task=...)``) trains the setup's model. A step is ``zero_grad``, forward, ``method.make_target(batch)``, the loss
(``method(logits, target)``, as ``SoftLabelTask.training_step``), backward, ``optimizer.step()``,
``method.on_train_batch_end(logits.detach(), target)`` (what the ``MethodHooks`` callback runs); each phase is timed.
The batches are the setup's training batches (the DataModule's loader, collated once), cycled; the segmentation
batches get ``soft_label`` = their ``true_probs`` (for the ``soft_label`` method). ``tfkd_self`` is prepared with a
teacher: an untrained network of the student's architecture (other seed; its forward pass costs the same whatever its
weights). Paired design as ``method_step_time.py``: one model and one optimiser for every row; ``--warmup`` untimed
steps per method; then ``--rounds`` rounds, in each every method runs ``--steps`` steps, each next to a ``hard`` step
on the same batch (the order alternating), the methods rotated by one per round. Reported: images/s = batch / median
step time, and throughput relative to ``hard`` = median over all pairs of (``hard`` step time / method step time).
``hard_repeat`` is ``hard`` timed as another row (A/A control: its distance from 1 is the noise of the run). The
per-epoch hook (``on_train_epoch_end``, OLS) is timed alone. Informational: no goal.

Part 2, Lightning overhead: ``lightning.Trainer.fit`` of the task built by ``build_run`` (``hard``;
``accelerator="cpu"``, ``devices=1``, the config's ``log_every_n_steps``, no progress bar, logger, checkpointing or
model summary, ``limit_val_batches=0``, no validation loader) against a bare PyTorch loop over the same DataLoader
(``num_workers=0``) doing the same step
(same model, the optimiser and scheduler from ``build_optimizer`` with the task's settings, the method's loss and
hooks). Each run trains ``--warm-epochs`` + ``--epochs`` epochs; timed: wall time from the start of the first epoch
after the warm-up to the end of training (Lightning: a callback's ``on_train_epoch_start`` to ``on_train_end``; the
bare loop: the same points in its code), so Trainer construction and setup are outside it (recorded separately).
Two diagnostic Lightning variants explain the overhead: the task without its training-loss logging (a subclass whose
``training_step`` is the task's minus that call) and a minimal ``LightningModule`` (same model, loss, optimiser; no
logging, no callbacks: Lightning's own loop). In each of ``--lightning-rounds`` rounds every variant runs right next
to a bare run (the order alternating, the variants rotated); judged: median over rounds of (Lightning task time / its
bare run's time), goal ≤ ``GOAL``. The per-iteration median (time between consecutive batch starts within an epoch)
is a cross-check that is insensitive to short slow episodes.

The VM has slow episodes (the CPU several times slower for seconds) and other jobs may share it: a fixed matmul
("canary") is timed before and after every block; blocks whose slower canary exceeds ``DISTURBED``× the run's median
are counted as disturbed, and ratios without them are shown as a cross-check (the judged ratio uses every block).

Exit status 1 if the Lightning task misses the overhead goal in a setup in a full run (results are written first);
``--quick`` runs are a smoke test and are not judged.

Run: ``python benchmarks/method_throughput.py`` (~8–10 min on 2 cores), ``--quick`` (< 2 min), ``--setups unet_2d``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
import yaml
from torch import Tensor, nn

from _common import REPO, RESULTS, canary, machine_info, machine_md, md_table, quartiles, rotated, write_results
from softlabels.methods import Method, create_method, list_methods
from softlabels.models import create_model
from softlabels.training.config import config_from_dict
from softlabels.training.optim import build_optimizer
from softlabels.training.run import build_run
from softlabels.training.task import ClassificationTask, SegmentationTask, SoftLabelTask

GOAL = 1.05
BASELINE = "hard"
CONTROL = "hard_repeat"
SETUPS: dict[str, dict[str, str]] = {
    "unet_2d": {"config": "configs/cpu/segmentation_confidence_tau0.6.yaml", "label": "2D UNet"},
    "mobilenet_v2": {"config": "configs/cpu/classification_mobilenet_v2_hard.yaml", "label": "MobileNetV2"},
}
PHASES = ("forward", "make_target", "loss", "backward", "optimizer", "batch_hook")
VARIANTS = ("lightning_task", "lightning_task_no_log", "lightning_minimal")
JUDGED = "lightning_task"
VARIANT_TEXT = {
    "lightning_task": "`Trainer.fit` of the task as `build_run` builds it (judged)",
    "lightning_task_no_log": "the same task without its training-loss logging (diagnostic)",
    "lightning_minimal": "a minimal LightningModule: same model, loss, optimiser; no logging, no callbacks "
    "(diagnostic: Lightning's own loop)",
}
TRAINER_OPTIONS: dict[str, Any] = {
    "accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "logger": False, "enable_checkpointing": False,
    "enable_model_summary": False, "limit_val_batches": 0, "num_sanity_val_steps": 0,
}  # fmt: skip
WORK = {  # what each method adds to a `hard` step (from the code of softlabels.methods and its targets/losses)
    "boundary_ls": "one-hot of the label map and a separable 3×3 min/max of it to find class boundaries, soft CE",
    "confidence_soft": "a soft target from the confidence map, soft CE",
    "confidence_threshold": "the label map thresholded on the confidence, CE",
    "confidence_weighted": "CE weighted by the confidence map",
    "dml": "soft Dice (DML) counts by class + KL on the hard label",
    "flsd": "focal loss with the sample-dependent γ of FLSD-53",
    "focal": "focal loss, γ = 3",
    "ls": "PyTorch's fused label smoothing in the CE",
    "mbls": "CE + a hinge on logit distances (max over classes, and its gradient)",
    "nacl": "CE + L1 between the logits and local class proportions (a separable 3×3 window over the one-hot map)",
    "ols": "α·CE + (1 − α)·soft CE to rows of the class matrix (one C×C matmul) and a batch-end hook (softmax, "
    "first-maximum test, per-class sums)",
    "raters_majority": "vote counts of the rater maps, their majority label, CE",
    "raters_mean": "vote counts of the rater maps divided by R, soft CE",
    "raters_svls": "vote counts of the rater maps and their separable SVLS filter, soft CE",
    "raters_weighted": "vote counts, the majority label, Dice of each rater against it, weighted votes, soft CE",
    "soft_label": "soft CE on the given soft map (checked to be a distribution)",
    "svls": "one-hot of the label map and its separable 3×3 SVLS filter, soft CE",
    "tfkd": "the closed-form KL to the virtual teacher",
    "tfkd_self": "a forward pass of the teacher network (eval, no_grad), softmax at temperature 6, a KL term",
}
SLOWER = 0.95  # a method whose throughput is below 0.95× hard's is called expensive in the report
CANARY_SIZE, CANARY_REPS = 512, 4  # a fixed float32 matmul timed before and after every block (~4 ms)
DISTURBED = 1.5  # a block whose canary took > 1.5× the run's median canary ran during a slow episode of the VM


# --------------------------------------------------------------------------------------------- setups
def load_setup(key: str, seed: int) -> dict[str, Any]:
    """The config's DataModule and ``hard`` task (``build_run``), its training batches and the run's sizes."""
    path = REPO / SETUPS[key]["config"]
    values = yaml.safe_load(path.read_text())
    values["method"] = {"name": BASELINE}
    values["seed"] = seed
    config = config_from_dict(values)
    dm, task = build_run(config)
    loader = dm.train_dataloader()
    batches = []
    for batch in loader:
        batch = dict(batch)
        if config.task == "segmentation" and "soft_label" not in batch and "true_probs" in batch:
            batch["soft_label"] = batch["true_probs"]  # a given soft target for the `soft_label` method
        batches.append(batch)
    return {
        "key": key,
        "config_path": SETUPS[key]["config"],
        "config": config,
        "task": task,
        "loader": loader,
        "batches": batches,
        "kind": config.task,
        "num_classes": task.num_classes,
        "batch_size": int(batches[0]["image"].shape[0]),
        "image_shape": list(batches[0]["image"].shape[1:]),
        "steps_per_epoch": len(loader),
        "train_items": len(loader.dataset),
    }


def make_network(setup: dict[str, Any], seed: int) -> nn.Module:
    """A fresh network of the setup's architecture with weights from ``seed`` (the global RNG is left as it was)."""
    config = setup["config"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(
            config.model.name, in_channels=setup["image_shape"][0], num_classes=setup["num_classes"],
            spatial_dims=len(setup["image_shape"]) - 1, **config.model.options,
        )  # fmt: skip


def build_methods(setup: dict[str, Any], seed: int) -> tuple[dict[str, Method], dict[str, str]]:
    """``hard``, its repeat, then every method of the task's registry list; the preparation each one got."""
    kind, c = setup["kind"], setup["num_classes"]
    methods = {BASELINE: create_method(BASELINE, c, task=kind), CONTROL: create_method(BASELINE, c, task=kind)}
    prepared: dict[str, str] = {}
    for name in list_methods(kind):
        if name == BASELINE:
            continue
        method = create_method(name, c, task=kind)
        if not method.is_ready:
            if name != "tfkd_self":
                raise RuntimeError(f"method {name!r} needs a preparation this benchmark does not know")
            teacher = make_network(setup, seed + 1).eval()
            method.prepare(teacher=teacher)
            prepared[name] = (
                f"teacher = an untrained {type(teacher).__name__} of the student's architecture (seed {seed + 1}); "
                "its forward pass costs the same whatever its weights"
            )
        methods[name] = method
    missing = sorted(set(batch_keys_needed(methods)) - set(setup["batches"][0]))
    if missing:
        raise RuntimeError(f"{setup['key']}: the batches lack the key(s) {missing} some method needs")
    return methods, prepared


def batch_keys_needed(methods: Mapping[str, Method]) -> list[str]:
    return sorted({key for m in methods.values() for key in m.requires})


# --------------------------------------------------------------------------------------------- part 1: one step
StepFn = Callable[[dict[str, Tensor]], tuple[float, ...]]


def make_step(method: Method, model: nn.Module, opt: torch.optim.Optimizer) -> StepFn:
    """``step(batch) → (step s, forward s, make_target s, loss s, backward s, optimiser s, batch hook s)``."""

    def step(batch: dict[str, Tensor]) -> tuple[float, ...]:
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(batch["image"])
        t1 = time.perf_counter()
        target = method.make_target(batch)
        t2 = time.perf_counter()
        loss = method(logits, target)
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        method.on_train_batch_end(logits.detach(), target)
        t6 = time.perf_counter()
        return t6 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5

    return step


def run_methods(setup: dict[str, Any], args: argparse.Namespace, gauge: Tensor) -> dict[str, Any]:
    """Part 1 for one setup: warm-up, interleaved paired rounds, the epoch hook alone; the summary rows."""
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    model = make_network(setup, args.seed)
    model.train()
    task = setup["task"]
    opt = build_optimizer(model.parameters(), task.optimizer_config)["optimizer"]  # one optimiser for every row
    methods, prepared = build_methods(setup, args.seed)
    names = list(methods)
    steps = {n: make_step(m, model, opt) for n, m in methods.items()}
    batches = setup["batches"]
    warm_loss: dict[str, float] = {}
    for name in names:
        for i in range(args.warmup):
            steps[name](batches[i % len(batches)])
        with torch.no_grad():
            b = batches[0]
            loss = methods[name](model(b["image"]), methods[name].make_target(b))
        warm_loss[name] = float(loss)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{setup['key']}: method {name!r} gave a non-finite loss {warm_loss[name]}")
    paired = [n for n in names if n != BASELINE]
    step_s: dict[str, list[list[float]]] = {n: [] for n in names}
    base_s: dict[str, list[list[float]]] = {n: [] for n in paired}
    phases: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    canary_s: dict[str, list[float]] = {n: [] for n in names}
    k = 0  # batch counter: both steps of a pair use the same batch
    for r in range(args.rounds):
        base_round: list[float] = []
        for name in rotated(paired, r):
            before = canary(gauge, CANARY_REPS)
            mine, theirs = [], []
            for s in range(args.steps):
                batch = batches[k % len(batches)]
                k += 1
                if (r + s) % 2:
                    out, ref = steps[name](batch), steps[BASELINE](batch)
                else:
                    ref, out = steps[BASELINE](batch), steps[name](batch)
                mine.append(out[0])
                theirs.append(ref[0])
                phases[name].append(out[1:])
                phases[BASELINE].append(ref[1:])
            canary_s[name].append(max(before, canary(gauge, CANARY_REPS)))
            step_s[name].append(mine)
            base_s[name].append(theirs)
            base_round += theirs
        step_s[BASELINE].append(base_round)
        canary_s[BASELINE].append(min(canary_s[n][-1] for n in paired))
        print(json.dumps({"part": "methods", "setup": setup["key"], "round": r + 1, "of": args.rounds,
                          "elapsed_s": _since(t_start)}), flush=True)  # fmt: skip
    epoch_hook = {n: 1e3 * _median_of(lambda m=methods[n]: m.on_train_epoch_end(), args.hook_reps) for n in names}
    rows = summarise_methods(names, setup["batch_size"], step_s, base_s, phases, canary_s, epoch_hook)
    return {
        "methods": rows,
        "method_params": {n: m.params for n, m in methods.items()},
        "preparation": prepared,
        "batch_keys": sorted(batches[0]),
        "batch_keys_read": batch_keys_needed(methods),
        "warmup_final_loss": warm_loss,
        "canary_median_ms": 1e3 * statistics.median(c for n in names for c in canary_s[n]),
        "canary_max_ms": 1e3 * max(c for n in names for c in canary_s[n]),
        "disturbed_blocks": sum(r["disturbed_blocks"] for n, r in rows.items() if n != BASELINE),
        "blocks": sum(len(canary_s[n]) for n in paired),
        "loadavg_1min_start": load_start,
        "loadavg_1min_end": os.getloadavg()[0],
        "wall_s": _since(t_start),
    }


def _median_of(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def summarise_methods(
    names: list[str],
    batch_size: int,
    step_s: dict[str, list[list[float]]],
    base_s: dict[str, list[list[float]]],
    phases: dict[str, list[tuple[float, ...]]],
    canary_s: dict[str, list[float]],
    epoch_hook_ms: dict[str, float],
) -> dict[str, dict[str, Any]]:
    """images/s, paired throughput ratios against ``hard`` (all pairs, per round, undisturbed blocks), phases."""
    limit = DISTURBED * statistics.median(c for n in names for c in canary_s[n])
    rows: dict[str, dict[str, Any]] = {}
    for n in names:
        med = statistics.median(t for rnd in step_s[n] for t in rnd)
        if n == BASELINE:
            pairs = [[1.0] * len(rnd) for rnd in step_s[n]]
        else:  # throughput ratio = hard's time / the method's time, pair by pair
            pairs = [[b / a for a, b in zip(m, t, strict=True)] for m, t in zip(step_s[n], base_s[n], strict=True)]
        per_round = [statistics.median(rnd) for rnd in pairs]
        q1, q3 = quartiles(per_round)
        clean = [rnd for rnd, c in zip(pairs, canary_s[n], strict=True) if c <= limit]
        phase_ms = {p: 1e3 * statistics.median(x[i] for x in phases[n]) for i, p in enumerate(PHASES)}
        rows[n] = {
            "images_per_s": batch_size / med,
            "median_step_ms": 1e3 * med,
            "throughput_ratio": statistics.median(x for rnd in pairs for x in rnd),
            "throughput_ratio_per_round": per_round,
            "throughput_ratio_per_round_q1": q1,
            "throughput_ratio_per_round_q3": q3,
            "throughput_ratio_undisturbed": statistics.median(x for rnd in clean for x in rnd) if clean else None,
            "disturbed_blocks": len(pairs) - len(clean),
            "phase_median_ms": phase_ms,
            "epoch_hook_ms": epoch_hook_ms[n],
            "step_ms_per_round": [[1e3 * t for t in rnd] for rnd in step_s[n]],
            "paired_hard_ms_per_round": None if n == BASELINE else [[1e3 * t for t in rnd] for rnd in base_s[n]],
            "canary_ms_per_round": [1e3 * c for c in canary_s[n]],
        }
    return rows


# --------------------------------------------------------------------------------------------- part 2: Lightning
class _NoStepLog:
    """``SoftLabelTask.training_step`` without its loss logging (diagnostic variant; keep in step with task.py)."""

    model: nn.Module
    method: Method

    pending_batch_hook: Any

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        logits = self.model(batch["image"])
        target = self.method.make_target(batch)
        loss = self.method(logits, target)
        if self.method.has_batch_hook:
            self.pending_batch_hook = (logits.detach(), target)
        return loss


class SegmentationNoLog(_NoStepLog, SegmentationTask):
    pass


class ClassificationNoLog(_NoStepLog, ClassificationTask):
    pass


class MinimalModule(L.LightningModule):
    """The same model, method loss and optimiser in a bare LightningModule: no logging, no callbacks, no metrics."""

    def __init__(self, model: nn.Module, method: Method, optimizer: dict[str, Any], scheduler: dict[str, Any]) -> None:
        super().__init__()
        self.model, self.method = model, method
        self.optimizer_config, self.scheduler_config = optimizer, scheduler

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        logits = self.model(batch["image"])
        return self.method(logits, self.method.make_target(batch))

    def configure_optimizers(self) -> Any:
        return build_optimizer(
            self.model.parameters(), self.optimizer_config, self.scheduler_config, self.trainer.max_epochs
        )


def lightning_modules(task: SoftLabelTask) -> dict[str, L.LightningModule]:
    """The judged task and the two diagnostic variants, all on the same model and method."""
    options: dict[str, Any] = {
        "num_classes": task.num_classes, "optimizer": task.optimizer_config, "scheduler": task.scheduler_config,
    }  # fmt: skip
    if task.task == "segmentation":
        no_log: SoftLabelTask = SegmentationNoLog(task.model, task.method, spatial_dims=task.spatial_dims, **options)
    else:
        no_log = ClassificationNoLog(task.model, task.method, **options)
    minimal = MinimalModule(task.model, task.method, task.optimizer_config, task.scheduler_config)
    return {"lightning_task": task, "lightning_task_no_log": no_log, "lightning_minimal": minimal}


class Stamps(L.Callback):
    """Time stamps: every batch start, the start of epoch ``warm`` and the end of training."""

    def __init__(self, warm: int) -> None:
        self.warm = warm
        self.batch: list[float] = []
        self.start: float | None = None
        self.end: float | None = None
        self.first_epoch: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        if self.first_epoch is None:
            self.first_epoch = now
        if trainer.current_epoch == self.warm:
            self.start = now

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self.batch.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = time.perf_counter()


def run_lightning(
    module: L.LightningModule, loader: Any, warm: int, epochs: int, log_every: int = 50
) -> dict[str, Any]:
    """One ``Trainer.fit``: timed seconds (after the warm-up epochs), batch-start stamps, the untimed setup."""
    stamps = Stamps(warm)
    gc.collect()
    t0 = time.perf_counter()
    trainer = L.Trainer(max_epochs=warm + epochs, callbacks=[stamps], log_every_n_steps=log_every, **TRAINER_OPTIONS)
    trainer.fit(module, train_dataloaders=loader)
    if stamps.start is None or stamps.end is None or stamps.first_epoch is None:
        raise RuntimeError("the Lightning run did not reach the timed epochs")
    return {"timed_s": stamps.end - stamps.start, "batch_starts": stamps.batch, "setup_s": stamps.first_epoch - t0}


def run_bare(task: SoftLabelTask, loader: Any, warm: int, epochs: int) -> dict[str, Any]:
    """The same training in a plain PyTorch loop over the same DataLoader, timed at the same points."""
    model, method = task.model, task.method
    total = warm + epochs
    built = build_optimizer(model.parameters(), task.optimizer_config, task.scheduler_config, total)
    opt, sched = built["optimizer"], built.get("lr_scheduler", {}).get("scheduler")
    sampler = getattr(loader, "sampler", None)
    starts: list[float] = []
    gc.collect()
    model.train()
    start = time.perf_counter()
    for epoch in range(total):
        if epoch == warm:
            start = time.perf_counter()
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # as Lightning does
        for batch in loader:
            starts.append(time.perf_counter())
            opt.zero_grad()
            logits = model(batch["image"])
            target = method.make_target(batch)
            loss = method(logits, target)
            loss.backward()
            opt.step()
            method.on_train_batch_end(logits.detach(), target)
        method.on_train_epoch_end()
        if sched is not None:
            sched.step()
    return {"timed_s": time.perf_counter() - start, "batch_starts": starts}


def iteration_median(starts: list[float], steps_per_epoch: int, warm: int) -> float:
    """Median time between consecutive batch starts inside an epoch, after the warm-up epochs."""
    gaps = [
        b - a
        for i, (a, b) in enumerate(itertools.pairwise(starts))
        if i >= warm * steps_per_epoch and (i + 1) % steps_per_epoch
    ]
    return statistics.median(gaps) if gaps else float("nan")


def run_overhead(setup: dict[str, Any], args: argparse.Namespace, gauge: Tensor) -> dict[str, Any]:
    """Part 2 for one setup: Lightning variants, each paired with a bare run, rotated over rounds."""
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    task, loader, spe = setup["task"], setup["loader"], setup["steps_per_epoch"]
    warm = args.warm_epochs or max(1, -(-args.warm_steps // spe))  # whole epochs holding ≥ warm_steps steps
    epochs = args.epochs or max(1, -(-args.timed_steps // spe))
    modules = lightning_modules(task)
    log_every = setup["config"].trainer.log_every_n_steps  # as the config trains
    threads_before = torch.get_num_threads()
    run_bare(task, loader, 1, 1)  # one untimed pass of each before the rounds
    for module in modules.values():
        run_lightning(module, loader, 1, 1, log_every)
    records: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for r in range(args.lightning_rounds):
        for v in rotated(list(VARIANTS), r):
            before = canary(gauge, CANARY_REPS)
            if r % 2:
                light = run_lightning(modules[v], loader, warm, epochs, log_every)
                bare = run_bare(task, loader, warm, epochs)
            else:
                bare = run_bare(task, loader, warm, epochs)
                light = run_lightning(modules[v], loader, warm, epochs, log_every)
            records[v].append({
                "lightning_s": light["timed_s"],
                "bare_s": bare["timed_s"],
                "lightning_iter_ms": 1e3 * iteration_median(light["batch_starts"], spe, warm),
                "bare_iter_ms": 1e3 * iteration_median(bare["batch_starts"], spe, warm),
                "lightning_setup_s": light["setup_s"],
                "steps": len(light["batch_starts"]),
                "bare_steps": len(bare["batch_starts"]),
                "canary_ms": 1e3 * max(before, canary(gauge, CANARY_REPS)),
                "order": "lightning first" if r % 2 else "bare first",
            })  # fmt: skip
        print(json.dumps({"part": "lightning", "setup": setup["key"], "round": r + 1, "of": args.lightning_rounds,
                          "elapsed_s": _since(t_start)}), flush=True)  # fmt: skip
    expected = (warm + epochs) * spe
    for v, recs in records.items():
        if any(rec["steps"] != expected or rec["bare_steps"] != expected for rec in recs):
            raise RuntimeError(f"{setup['key']}: {v} ran another number of steps than {expected}")
    timed_steps = epochs * spe
    rows = summarise_overhead(records, timed_steps, setup["batch_size"])
    return {
        "variants": rows,
        "warm_epochs": warm,
        "timed_epochs": epochs,
        "timed_steps_per_run": timed_steps,
        "trainer_options": TRAINER_OPTIONS,
        "torch_threads_before_after": [threads_before, torch.get_num_threads()],
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "decomposition_ms_per_step": decomposition(rows),
        "loadavg_1min_start": load_start,
        "loadavg_1min_end": os.getloadavg()[0],
        "wall_s": _since(t_start),
    }


def summarise_overhead(
    records: dict[str, list[dict[str, Any]]], timed_steps: int, batch_size: int
) -> dict[str, dict[str, Any]]:
    """Per variant: median of the per-round time ratios, their spread, per-step overhead, the iteration cross-check."""
    limit = DISTURBED * statistics.median(rec["canary_ms"] for recs in records.values() for rec in recs)
    rows: dict[str, dict[str, Any]] = {}
    for v, recs in records.items():
        ratios = [rec["lightning_s"] / rec["bare_s"] for rec in recs]
        clean = [x for x, rec in zip(ratios, recs, strict=True) if rec["canary_ms"] <= limit]
        q1, q3 = quartiles(ratios)
        ratio = statistics.median(ratios)
        lightning_s = statistics.median(rec["lightning_s"] for rec in recs)
        extra_s = [(rec["lightning_s"] - rec["bare_s"]) / timed_steps for rec in recs]
        bare_s = statistics.median(rec["bare_s"] for rec in recs)
        rows[v] = {
            "time_ratio": ratio,
            "time_ratio_per_round": ratios,
            "time_ratio_q1": q1,
            "time_ratio_q3": q3,
            "time_ratio_min": min(ratios),
            "time_ratio_max": max(ratios),
            "time_ratio_undisturbed": statistics.median(clean) if clean else None,
            "disturbed_rounds": len(ratios) - len(clean),
            "overhead_ms_per_step": 1e3 * statistics.median(extra_s),
            "lightning_images_per_s": timed_steps * batch_size / lightning_s,
            "bare_images_per_s": timed_steps * batch_size / bare_s,
            "bare_ms_per_step": 1e3 * bare_s / timed_steps,
            "iteration_ratio": statistics.median(rec["lightning_iter_ms"] / rec["bare_iter_ms"] for rec in recs),
            "lightning_setup_s": statistics.median(rec["lightning_setup_s"] for rec in recs),
            "passes": ratio <= GOAL if v == JUDGED else None,
            "rounds": recs,
        }
    return rows


def decomposition(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per-step overhead of the task split into Lightning's loop, the task's per-step log and the rest of the task."""
    task, no_log, minimal = (rows[v]["overhead_ms_per_step"] for v in VARIANTS)
    return {
        "total": task,
        "lightning_loop": minimal,
        "task_self_log": task - no_log,
        "task_rest": no_log - minimal,
        "bare_step": rows[JUDGED]["bare_ms_per_step"],
    }


# --------------------------------------------------------------------------------------------- report
def methods_table(res: dict[str, Any]) -> str:
    rows = []
    for n, r in res["methods"].items():
        ph = r["phase_median_ms"]
        clean = r["throughput_ratio_undisturbed"]
        rows.append(
            [
                f"`{n}`",
                f"{r['images_per_s']:.0f}",
                f"{r['median_step_ms']:.2f}",
                f"{r['throughput_ratio']:.3f}",
                f"{r['throughput_ratio_per_round_q1']:.2f}–{r['throughput_ratio_per_round_q3']:.2f}",
                "—" if clean is None else f"{clean:.3f}",
                f"{r['disturbed_blocks']}/{len(r['step_ms_per_round'])}",
                *(f"{ph[p]:.2f}" for p in PHASES),
                f"{r['epoch_hook_ms']:.3f}",
            ]
        )
    header = [
        "method",
        "images/s",
        "median step ms",
        "throughput vs `hard` (paired)",
        "per-round IQR",
        "undisturbed blocks",
        "disturbed blocks",
        *(f"{p.replace('_', ' ')} ms" for p in PHASES),
        "epoch hook ms",
    ]
    return md_table(header, rows)


def expensive(res: dict[str, Any]) -> list[str]:
    """One bullet per method whose throughput is below ``SLOWER``× hard's: where its extra time goes."""
    rows = res["methods"]
    base = rows[BASELINE]["phase_median_ms"]
    base_step = rows[BASELINE]["median_step_ms"]
    out = []
    for n, r in sorted(rows.items(), key=lambda item: item[1]["throughput_ratio"]):
        if n in (BASELINE, CONTROL) or r["throughput_ratio"] >= SLOWER:
            continue
        extra = {p: r["phase_median_ms"][p] - base[p] for p in PHASES}
        big = sorted(extra, key=lambda p: -extra[p])[:2]
        parts = ", ".join(f"{p.replace('_', ' ')} {extra[p]:+.2f} ms" for p in big)
        out.append(
            f"- `{n}`: {r['throughput_ratio']:.3f}× `hard`'s throughput ({r['images_per_s']:.0f} vs "
            f"{rows[BASELINE]['images_per_s']:.0f} images/s, step {r['median_step_ms']:.2f} vs {base_step:.2f} ms). "
            f"Its work: {WORK.get(n, 'see its registry entry')}. Largest extra phases (medians against `hard`'s): "
            f"{parts}.\n"
        )
    if not out:
        out.append(f"- none below {SLOWER:g}× `hard`'s throughput.\n")
    return out


def overhead_table(res: dict[str, Any]) -> str:
    rows = []
    for v, r in res["variants"].items():
        clean = r["time_ratio_undisturbed"]
        verdict = "—" if r["passes"] is None else ("pass" if r["passes"] else "miss")
        rows.append(
            [
                f"`{v}`",
                f"{r['lightning_images_per_s']:.0f}",
                f"{r['bare_images_per_s']:.0f}",
                f"{r['time_ratio']:.3f}",
                f"{r['time_ratio_q1']:.3f}–{r['time_ratio_q3']:.3f}",
                f"{r['time_ratio_min']:.3f}–{r['time_ratio_max']:.3f}",
                "—" if clean is None else f"{clean:.3f}",
                f"{r['disturbed_rounds']}/{len(r['time_ratio_per_round'])}",
                f"{r['iteration_ratio']:.3f}",
                f"{r['overhead_ms_per_step']:+.2f}",
                f"{r['lightning_setup_s']:.2f}",
                verdict,
            ]
        )
    header = [
        "variant",
        "Lightning images/s",
        "bare images/s",
        "time ratio Lightning / bare (median of rounds)",
        "per-round IQR",
        "min–max",
        "undisturbed rounds",
        "disturbed rounds",
        "per-iteration median ratio",
        "overhead ms/step",
        "fit setup s (untimed)",
        f"≤ {GOAL:g}?",
    ]
    return md_table(header, rows)


def overhead_text(res: dict[str, Any]) -> str:
    d = res["decomposition_ms_per_step"]
    r = res["variants"][JUDGED]
    verdict = "meets" if r["passes"] else "misses"
    return (
        f"The task {verdict} the goal: time ratio {r['time_ratio']:.3f} (per-round IQR "
        f"{r['time_ratio_q1']:.3f}–{r['time_ratio_q3']:.3f}). Per step, the bare loop takes {d['bare_step']:.2f} ms "
        f"and the task adds {d['total']:+.2f} ms ({100 * d['total'] / d['bare_step']:.1f} %): Lightning's own loop "
        f"(the minimal module) {d['lightning_loop']:+.2f} ms ({100 * d['lightning_loop'] / d['bare_step']:.1f} %), "
        f"the task's training-loss logging (epoch sums every step, `self.log` every `log_every_n_steps`) "
        f"{d['task_self_log']:+.2f} ms ({100 * d['task_self_log'] / d['bare_step']:.1f} %), the rest of the task "
        f"(`MethodHooks`, epoch hooks) {d['task_rest']:+.2f} ms. {within_epoch_text(res)}These are fixed costs, so "
        f"their share shrinks as the step grows: {GOAL - 1:.0%} of a step is {(GOAL - 1) * d['bare_step']:.2f} ms "
        f"here; the measured {d['total']:+.2f} ms/step is within it for bare steps of ≥ "
        f"{d['total'] / (GOAL - 1):.1f} ms.\n"
    )


def within_epoch_text(res: dict[str, Any]) -> str:
    """The overhead split into the part inside an epoch (gaps between batch starts) and the per-epoch rest."""
    spe = res["timed_steps_per_run"] // res["timed_epochs"]
    parts = []
    for v in (JUDGED, "lightning_minimal"):
        rounds = res["variants"][v]["rounds"]
        inside = statistics.median(rec["lightning_iter_ms"] - rec["bare_iter_ms"] for rec in rounds)
        per_epoch = (res["variants"][v]["overhead_ms_per_step"] - inside) * spe
        parts.append(f"`{v}` {inside:+.2f} ms per step inside an epoch and {per_epoch:+.2f} ms per epoch")
    return (
        f"Split by where it happens ({spe} steps per epoch; inside = median gap between batch starts): "
        + "; ".join(parts)
        + " (epoch hooks, the epoch-loss log, Lightning's epoch bookkeeping). "
    )


def markdown(payload: dict[str, Any]) -> str:
    cfg = payload["config"]
    lines = [
        "# Training throughput of every method, and the Lightning task's overhead (`benchmarks/method_throughput.py`)"
        "\n\n",
        machine_md(payload["machine"]),
        f"\nThe sizes of the CPU configs (built by `build_run`); torch threads {cfg['torch_threads']}; seed "
        f"{cfg['seed']}. A fixed {CANARY_SIZE}² matmul ×{CANARY_REPS} is timed before and after every block; a block "
        f"whose slower canary exceeds {DISTURBED:g}× the run's median ran in a slow episode of this shared VM and is "
        "left out of the 'undisturbed' cross-check (the reported ratios use every block). "
        + ("**Quick smoke run: not judged.** " if cfg["quick"] else "")
        + f"Wall time {payload['wall_s']:.0f} s.\n",
    ]
    for key, res in payload["setups"].items():
        s = res["setup"]
        shape = "×".join(map(str, [s["batch_size"], *s["image_shape"]]))
        lines.append(
            f"\n## {key} ({SETUPS[key]['label']}): `{s['config_path']}`: batch {shape}, C = {s['num_classes']}, "
            f"{s['train_items']} training items ({s['steps_per_epoch']} steps per epoch), model "
            f"`{s['model']}` {s['model_options']} ({s['parameters']:,} parameters), optimiser {s['optimizer']}, "
            f"scheduler {s['scheduler']}\n"
        )
        if "methods" in res:
            m = res["methods"]
            lines += [
                "\n### Throughput of every method (informational)\n\n",
                f"Paired steps: {cfg['warmup']} warm-up steps per method, {cfg['rounds']} rounds × {cfg['steps']} "
                f"pairs per method; one model and one optimiser for every row; throughput ratio = median over pairs "
                f"of `hard` step time / method step time (`{CONTROL}` is the A/A control). Phases are medians of the "
                "method's own steps; 'epoch hook' is `on_train_epoch_end` timed alone (once per epoch). Batch keys: "
                f"{', '.join(f'`{k}`' for k in m['batch_keys'] if k != 'case')}. Preparation: "
                + ("; ".join(f"`{n}`: {t}" for n, t in m["preparation"].items()) or "none")
                + f". Load average {m['loadavg_1min_start']:.2f} → {m['loadavg_1min_end']:.2f}; canary median "
                f"{m['canary_median_ms']:.2f} ms, slowest {m['canary_max_ms']:.2f} ms; {m['disturbed_blocks']} of "
                f"{m['blocks']} blocks disturbed; {m['wall_s']:.0f} s.\n\n",
                methods_table(m),
                f"\n**Methods below {SLOWER:g}× `hard`'s throughput**\n\n",
                *expensive(m),
            ]
        if "lightning" in res:
            o = res["lightning"]
            lines += [
                f"\n### Lightning task vs bare PyTorch loop (goal: time ratio ≤ {GOAL:g})\n\n",
                f"Each run: {o['warm_epochs']} warm-up epoch(s), then {o['timed_epochs']} timed epochs "
                f"({o['timed_steps_per_run']} steps); {cfg['lightning_rounds']} rounds, every variant next to its own "
                "bare run (order alternating, variants rotated). Variants: "
                + "; ".join(f"`{v}`: {VARIANT_TEXT[v]}" for v in VARIANTS)
                + f". Load average {o['loadavg_1min_start']:.2f} → {o['loadavg_1min_end']:.2f}; {o['wall_s']:.0f} s."
                "\n\n",
                overhead_table(o),
                "\n",
                overhead_text(o),
            ]
    status = "not judged (quick run)" if cfg["quick"] else ("PASS" if payload["passed"] else "FAIL")
    misses = payload.get("overhead_misses") or []
    lines.append(
        f"\n**Result** (Lightning task time ratio ≤ {GOAL:g}): {status}"
        + (": " + ", ".join(misses) if misses and not cfg["quick"] else "")
        + ".\n"
    )
    return "".join(lines)


# --------------------------------------------------------------------------------------------- main
def describe_setup(setup: dict[str, Any]) -> dict[str, Any]:
    config, task = setup["config"], setup["task"]
    return {
        "config_path": setup["config_path"],
        "task": setup["kind"],
        "num_classes": setup["num_classes"],
        "batch_size": setup["batch_size"],
        "image_shape": setup["image_shape"],
        "train_items": setup["train_items"],
        "steps_per_epoch": setup["steps_per_epoch"],
        "data": {"source": config.data.source, "options": config.data.options},
        "model": config.model.name,
        "model_options": config.model.options,
        "parameters": sum(p.numel() for p in task.model.parameters()),
        "optimizer": task.optimizer_config,
        "scheduler": task.scheduler_config,
        "methods": list_methods(setup["kind"]),
    }


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and the warnings these runs trigger by design (no val loader, 0 workers)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (".*val_dataloader.*", ".*does not have many workers.*", ".*LeafSpec.*", ".*litlogger.*"):
        warnings.filterwarnings("ignore", message=message)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds and epochs (smoke run, not judged)")
    ap.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset of " + ", ".join(SETUPS))
    ap.add_argument("--parts", default="methods,lightning", help="comma-separated subset of methods, lightning")
    ap.add_argument("--rounds", type=int, default=None, help="method rounds (default 20, quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="(method, hard) pairs per method per round (default 4)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per method (default 5, quick 2)")
    ap.add_argument("--hook-reps", type=int, default=None, help="repetitions of the epoch hook alone (default 20)")
    ap.add_argument("--lightning-rounds", type=int, default=None, help="Lightning/bare rounds (default 15, quick 2)")
    ap.add_argument("--warm-steps", type=int, default=None, help="untimed steps per run, whole epochs (default 6)")
    ap.add_argument("--warm-epochs", type=int, default=None, help="untimed epochs per run (overrides --warm-steps)")
    ap.add_argument("--timed-steps", type=int, default=None, help="timed steps per run, whole epochs (default 120)")
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs per run (overrides --timed-steps)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0, help="the run seed (the configs' seed is 0)")
    ap.add_argument("--name", default="method_throughput", help="result file stem")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the existing .json")
    args = ap.parse_args()
    if args.render:
        payload = json.loads((RESULTS / f"{args.name}.json").read_text())
        write_results(args.name, payload, markdown(payload))
        return 0 if payload["passed"] in (True, None) else 1
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 20)
    args.steps = args.steps or (2 if quick else 4)
    args.warmup = args.warmup or (2 if quick else 5)
    args.hook_reps = args.hook_reps or (3 if quick else 20)
    args.lightning_rounds = args.lightning_rounds or (2 if quick else 15)
    args.warm_steps = args.warm_steps or (3 if quick else 6)
    args.timed_steps = args.timed_steps or (24 if quick else 120)
    keys = [k.strip() for k in args.setups.split(",") if k.strip()]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(keys) - set(SETUPS)) + sorted(set(parts) - {"methods", "lightning"})
    if unknown:
        ap.error(f"unknown setup(s)/part(s) {unknown}; valid setups {sorted(SETUPS)}, parts ['lightning', 'methods']")
    quiet_lightning()
    torch.set_num_threads(args.threads)
    gauge = torch.randn(CANARY_SIZE, CANARY_SIZE, generator=torch.Generator().manual_seed(args.seed))
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for key in keys:
        setup = load_setup(key, args.seed)
        results[key] = {"setup": describe_setup(setup)}
        if "methods" in parts:
            results[key]["methods"] = run_methods(setup, args, gauge)
        if "lightning" in parts:
            results[key]["lightning"] = run_overhead(setup, args, gauge)
    config = {
        "quick": quick,
        "setups": keys,
        "parts": parts,
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "hook_reps": args.hook_reps,
        "lightning_rounds": args.lightning_rounds,
        "warm_steps": args.warm_steps,
        "timed_steps": args.timed_steps,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "goal_time_ratio": GOAL,
        "expensive_below_throughput_ratio": SLOWER,
        "canary": {"matmul_size": CANARY_SIZE, "reps": CANARY_REPS, "disturbed_above_x_median": DISTURBED},
    }
    payload: dict[str, Any] = {"benchmark": "method_throughput", "machine": machine_info(), "config": config}
    payload["setups"] = results
    payload["wall_s"] = time.perf_counter() - t0
    judged = {k: res["lightning"]["variants"][JUDGED] for k, res in results.items() if "lightning" in res}
    misses = [k for k, row in judged.items() if not row["passes"]]
    payload["overhead_misses"] = misses
    payload["passed"] = None if quick or "lightning" not in parts else not misses
    write_results(args.name, payload, markdown(payload))
    for key, res in results.items():
        if "methods" in res:
            print(key, {n: round(r["throughput_ratio"], 3) for n, r in res["methods"]["methods"].items()})
        if "lightning" in res:
            print(key, {v: round(r["time_ratio"], 3) for v, r in res["lightning"]["variants"].items()})
    if payload["passed"] is None:
        print(f"not judged ({'quick run' if quick else 'no lightning part'}); overhead misses: {misses or 'none'}")
        return 0
    print("PASS" if not misses else f"FAIL, Lightning/bare time ratio > {GOAL:g}: " + ", ".join(misses))
    return 0 if not misses else 1


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 1)


if __name__ == "__main__":
    sys.exit(main())
