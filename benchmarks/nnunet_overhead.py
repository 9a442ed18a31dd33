"""Training-step time of softlabels' nnU-Net v2 trainers vs nnU-Net's own ``nnUNetTrainer``, paired, on the CPU.

The nnU-Net side runs in a child process with the nnU-Net environment (``.venv-nnunet/bin/python``, created by
``scripts/setup_nnunet.sh``; this script does not create it — that installs torch, torchvision and nnunetv2, about
6 GB, which a benchmark should not do behind the user's back — and exits with status 2 naming the command when
it is missing). The parent (the project's ``.venv``) only starts the child and writes the results.

In the child, in a temporary folder (``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` inside it):

* a synthetic 2D generic folder of ``--cases`` slices of ``--size``² (NIfTI ``(x, y, 1)``, 1 mm): an image, a
  3-class label map (background, an ellipse and its core) and 3 binary raters (the ellipse at radii 0.8, 1.0, 1.2);
* ``softlabels nnunet convert`` twice: ``--source labels`` (plain labels 0..2) and ``--source raters`` (rater bits,
  declared to nnU-Net as nested "at least k of 3" regions);
* ``nnUNetv2_plan_and_preprocess -c 2d`` on both (``nnUNet_n_proc_DA=1`` there: 0 crashes planning).

Then every trainer is built with the same plans, configuration ``2d``, fold 0 and ``dataset.json`` on
``torch.device("cpu")`` and initialised (``initialize()``). Each group shares its initial network weights (loaded
from the first trainer; the rater group's baseline has a 3-channel head, the others 2, so only the heads differ) and
steps on the same batches, drawn once from nnU-Net's own training dataloader (``get_dataloaders()``, augmentation
in-process: ``nnUNet_n_proc_DA=0``; the deep-supervision list of targets). A step is nnU-Net's ``train_step(batch)``
(forward, loss, backward, gradient clipping, SGD step) with the trainer's loss.

* **Label-map group** (plain-label dataset): ``nnUNetTrainer`` (Dice + CE, the baseline), a second
  ``nnUNetTrainer`` (an A/A control: its ratio is the noise of the measurement) and nnUNetTrainerHard, LS,
  BoundaryLS, SVLS, MbLS, NACL, Focal, FLSD, DML. Goal: the median over rounds of the paired ratio (ours / the
  baseline in the same round) ≤ 1.05 for every one of them (exit status 1 otherwise).
* **Rater group** (rater dataset, no goal): the rater and confidence trainers against ``nnUNetTrainer`` on the same
  encoded dataset, i.e. what the plain trainer does with it: sigmoid outputs for the 3 nested regions, BCE + Dice.
  Batches are drawn once from a softlabels trainer's dataloader (the integer codes); the baseline gets them turned
  into regions by nnU-Net's own ``ConvertSegmentationToRegionsTransform``, scale by scale (the same as its
  dataloader, which converts before its nearest-neighbour deep-supervision downsampling: both are per voxel).

Rounds: ``--warmup`` untimed rounds, then ``--rounds`` timed ones; in round ``r`` every trainer of the group steps
once on batch ``r``, the order rotated by one per round, so the slow episodes of a shared machine hit every trainer
of a round alike. Per trainer: median step time, median paired ratio with a distribution-free 95 % interval for that
median (order statistics of the binomial), and the goal. The loss alone (no network: on the baseline network's
detached outputs of one batch) is timed part by part, interleaved over ``--loss-reps`` repetitions: nnU-Net's loss
forward and backward; ours split into decoding the map (``method_batch``), ``make_target``, the area-averaged
deep-supervision targets (``downsample_target``), the method's loss over the scales, and backward.

    python benchmarks/nnunet_overhead.py           # ~8 min on 2 cores
    python benchmarks/nnunet_overhead.py --quick   # ~2.5 min smoke run, written as nnunet_overhead_quick, not judged
    python benchmarks/nnunet_overhead.py --render  # rewrite the .md from the existing .json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, RESULTS, machine_info, machine_md, md_table, rotated, write_results

GOAL = 1.05
NNUNET_PYTHON = REPO / ".venv-nnunet" / "bin" / "python"
BASELINE, CONTROL = "nnUNetTrainer", "nnUNetTrainer (repeat)"
LABEL_TRAINERS = ("nnUNetTrainerHard", "nnUNetTrainerLS", "nnUNetTrainerBoundaryLS", "nnUNetTrainerSVLS",
                  "nnUNetTrainerMbLS", "nnUNetTrainerNACL", "nnUNetTrainerFocal", "nnUNetTrainerFLSD",
                  "nnUNetTrainerDML")  # fmt: skip
RATER_TRAINERS = ("nnUNetTrainerRatersMajority", "nnUNetTrainerRatersMean", "nnUNetTrainerRatersSVLS",
                  "nnUNetTrainerRatersWeighted", "nnUNetTrainerRatersDML", "nnUNetTrainerConfidenceThreshold",
                  "nnUNetTrainerConfidenceSoft", "nnUNetTrainerConfidenceWeighted")  # fmt: skip
DATASETS = {"labels": (901, "OverheadLabels"), "raters": (902, "OverheadRaters")}
RATERS = 3
PARTS = ("decode", "make_target", "downsample", "loss", "backward")


# --------------------------------------------------------------------------------------------- child: data
def write_generic(folder: Path, cases: int, size: int) -> None:
    """A generic softlabels folder: images/, labels/ (3 classes) and raters/rater{1,2,3}/ of ``cases`` 2D slices."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(17)
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for index in range(cases):
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
        ax, ay = rng.uniform(0.15, 0.3, 2) * size
        radius = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        label = (radius < 1.0).astype(np.uint8) + (radius < 0.5).astype(np.uint8)
        image = 100.0 * (radius < 1.0) + 60.0 * (radius < 0.5) + rng.normal(0.0, 20.0, (size, size))
        maps = {"images": image.astype(np.float32), "labels": label}
        maps |= {f"raters/rater{r + 1}": (radius < t).astype(np.uint8) for r, t in enumerate((0.8, 1.0, 1.2))}
        for sub, array in maps.items():
            (folder / sub).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array[:, :, None], np.eye(4)), folder / sub / f"case_{index:03d}.nii.gz")


def _run_tool(command: list[str], log: Path) -> float:
    """Run a console script of the nnU-Net environment; exit with the log's name if it fails."""
    t0 = time.perf_counter()
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"{Path(command[0]).name} failed with status {done.returncode}; see {log}")
    return time.perf_counter() - t0


def prepare(work: Path, cases: int, size: int) -> dict[str, float]:
    """The generic folder, both nnU-Net raw datasets and their 2D preprocessing; seconds per stage."""
    bin_dir, log = Path(sys.executable).parent, work / "tools.log"
    t0 = time.perf_counter()
    write_generic(work / "generic", cases, size)
    seconds = {"write_generic": time.perf_counter() - t0, "convert": 0.0}
    for source, (dataset_id, name) in DATASETS.items():
        seconds["convert"] += _run_tool(
            [str(bin_dir / "softlabels"), "nnunet", "convert", "--input", str(work / "generic"), "--output",
             os.environ["nnUNet_raw"], "--dataset-id", str(dataset_id), "--name", name, "--source", source], log,
        )  # fmt: skip
    ids = [str(dataset_id) for dataset_id, _ in DATASETS.values()]
    os.environ["nnUNet_n_proc_DA"] = "1"  # 0 crashes planning
    seconds["plan_and_preprocess"] = _run_tool(
        [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", *ids, "-c", "2d", "-np", "1", "-npfp", "1"], log
    )  # fmt: skip
    os.environ["nnUNet_n_proc_DA"] = "0"  # in-process augmentation (SingleThreadedAugmenter) for the timing
    return seconds


# --------------------------------------------------------------------------------------------- child: trainers
def build_trainers(source: str, names: list[str]) -> dict[str, Any]:
    """``initialize()``d trainers of ``names`` on one preprocessed dataset, cpu, fold 0, with shared initial weights."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from softlabels.integrations.nnunet.trainers import TRAINERS

    dataset_id, name = DATASETS[source]
    folder = Path(os.environ["nnUNet_preprocessed"]) / f"Dataset{dataset_id:03d}_{name}"
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    shared: dict[tuple[str, tuple[int, ...]], Any] = {}
    trainers: dict[str, Any] = {}
    for key in names:
        cls = nnUNetTrainer if key in (BASELINE, CONTROL) else TRAINERS[key]
        # as nnU-Net's own get_trainer_from_args: 2.8's __init__ pops "continue_training" from the plans
        trainer = cls(plans | {"continue_training": False}, "2d", 0, dataset_json, device=torch.device("cpu"))
        trainer.initialize()
        state = trainer.network.state_dict()
        for k, v in state.items():
            shared.setdefault((k, tuple(v.shape)), v.clone())
        trainer.network.load_state_dict({k: shared[k, tuple(v.shape)] for k, v in state.items()})  # in place
        trainer.network.train()
        trainers[key] = trainer
    return trainers


def draw_batches(trainer: Any, count: int) -> list[dict[str, Any]]:
    """``count`` augmented training batches from ``trainer``'s own dataloader (single-threaded augmentation)."""
    loader, _ = trainer.get_dataloaders()
    return [next(loader) for _ in range(count)]


def as_regions(batch: dict[str, Any], trainer: Any) -> dict[str, Any]:
    """The batch with every scale's integer map turned into ``trainer``'s regions by nnU-Net's own transform."""
    import torch
    from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

    convert = ConvertSegmentationToRegionsTransform(list(trainer.label_manager.foreground_regions), channel_in_seg=0)
    target = [torch.stack([convert._apply_to_segmentation(s) for s in t]) for t in batch["target"]]
    return {**batch, "target": target}


def time_rounds(trainers: dict[str, Any], batches: dict[str, list[Any]], warmup: int) -> dict[str, list[float]]:
    """Seconds of ``train_step`` per trainer and timed round; round ``r`` runs every trainer on batch ``r``."""
    names = list(trainers)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(len(next(iter(batches.values())))):
        for name in rotated(names, r):
            t0 = time.perf_counter()
            trainers[name].train_step(batches[name][r])
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
        if r >= warmup:
            steps = ", ".join(f"{n.removeprefix('nnUNetTrainer') or n}={t[-1]:.2f}" for n, t in times.items())
            print(f"  round {r + 1 - warmup}: {steps}", flush=True)
    return times


def _loss_parts(trainer: Any, outputs: list[Any], target: list[Any]) -> dict[str, float]:
    """One repetition of the loss alone: its parts (ours) or forward/backward (nnU-Net's), in seconds."""
    import torch

    from softlabels.integrations.nnunet.soft_targets import downsample_target, method_batch

    leaves = [o.detach().clone().requires_grad_(True) for o in outputs]
    if not hasattr(trainer, "method"):
        t0 = time.perf_counter()
        loss = trainer.loss(leaves, target)
        t1 = time.perf_counter()
        loss.backward()
        return {"forward": t1 - t0, "backward": time.perf_counter() - t1}
    module, stamps = trainer.loss, [time.perf_counter()]
    used = [(w, out) for w, out in zip(module.weights, leaves, strict=True) if w != 0]
    batch = method_batch(target[0], module.encoding, module.method.requires)
    stamps.append(time.perf_counter())
    full = module.method.make_target(batch)
    stamps.append(time.perf_counter())
    coarse = [downsample_target(full, tuple(out.shape[2:]), module.encoding.num_classes) for _, out in used]
    stamps.append(time.perf_counter())
    loss = torch.zeros(())
    for (w, out), t in zip(used, coarse, strict=True):
        loss = loss + w * module.method(out, t)
    stamps.append(time.perf_counter())
    loss.backward()
    stamps.append(time.perf_counter())
    parts = {p: stamps[i + 1] - stamps[i] for i, p in enumerate(PARTS)}
    return parts | {"forward": sum(parts[p] for p in PARTS[:-1])}


def time_loss(trainers: dict[str, Any], batches: dict[str, list[Any]], reps: int) -> dict[str, dict[str, float]]:
    """Median seconds of each loss part per trainer, on its own network's detached outputs of its first batch."""
    import torch

    names = [n for n in trainers if n != CONTROL]
    with torch.no_grad():
        outputs = {n: list(trainers[n].network(batches[n][0]["data"])) for n in names}
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(reps + 1):
        for name in rotated(names, r):
            parts = _loss_parts(trainers[name], outputs[name], batches[name][0]["target"])
            if r > 0:  # the first repetition is a warm-up
                runs[name].append(parts)
    return {n: {k: statistics.median(p[k] for p in rs) for k in rs[0]} for n, rs in runs.items()}


def run_group(source: str, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Build a group's trainers, draw its batches, time the paired rounds and the loss alone."""
    t0 = time.perf_counter()
    trainers = build_trainers(source, names)
    count = args.warmup + args.rounds
    first = trainers[names[0]] if source == "labels" else trainers[names[1]]
    drawn = draw_batches(first, count)
    batches = {n: drawn if source == "labels" or n != BASELINE else [as_regions(b, trainers[n]) for b in drawn]
               for n in names}  # fmt: skip
    setup_s = time.perf_counter() - t0
    print(f"{source}: {len(names)} trainers, {count} batches in {setup_s:.0f} s", flush=True)
    load = [os.getloadavg()[0]]
    times = time_rounds(trainers, batches, args.warmup)
    load.append(os.getloadavg()[0])
    loss = time_loss(trainers, batches, args.loss_reps)
    base = trainers[BASELINE]
    cm = base.configuration_manager
    return {
        "dataset": f"Dataset{DATASETS[source][0]:03d}_{DATASETS[source][1]}", "times_s": times, "loss_alone_s": loss,
        "patch_size": list(cm.patch_size), "batch_size": int(base.batch_size),
        "deep_supervision_scales": [list(map(float, s)) for s in base._get_deep_supervision_scales()],
        "network_parameters": sum(p.numel() for p in base.network.parameters()),
        "num_outputs": {n: int(t.label_manager.num_segmentation_heads) for n, t in trainers.items()},
        "target_shapes": [list(t.shape) for t in drawn[0]["target"]], "data_shape": list(drawn[0]["data"].shape),
        "setup_s": setup_s, "loadavg_1min_start_end": load,
    }  # fmt: skip


def child(args: argparse.Namespace) -> None:
    """The nnU-Net side: data, conversion, preprocessing and both groups; JSON to ``args.child``."""
    import nnunetv2
    import torch

    torch.set_num_threads(args.threads)
    work = Path(os.environ["nnUNet_raw"]).parent
    out: dict[str, Any] = {"prepare_s": prepare(work, args.cases, args.size)}
    out["labels"] = run_group("labels", [BASELINE, CONTROL, *LABEL_TRAINERS], args)
    if not args.no_raters:
        out["raters"] = run_group("raters", [BASELINE, *RATER_TRAINERS], args)
    out["versions"] = {"python": sys.version.split()[0], "torch": torch.__version__, "nnunetv2": _version("nnunetv2"),
                       "nnunetv2_file": nnunetv2.__file__, "torch_threads": torch.get_num_threads()}  # fmt: skip
    Path(args.child).write_text(json.dumps(out))


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# --------------------------------------------------------------------------------------------- parent: statistics
def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """The median and a distribution-free interval for it: order statistics ``x_(k), x_(n+1-k)`` (binomial ranks).

    ``k`` is the largest rank with ``P(Bin(n, ½) < k) ≤ (1 − level)/2``; below 6 values no such ``k`` exists and the
    interval is the range.
    """
    xs, n = sorted(values), len(values)
    k, below = 0, 0.0
    while True:
        below_next = below + math.comb(n, k) / 2**n
        if below_next > (1 - level) / 2:
            break
        below, k = below_next, k + 1
    lo, hi = (xs[k - 1], xs[n - k]) if k >= 1 else (xs[0], xs[-1])
    return statistics.median(xs), lo, hi


def summarise(group: dict[str, Any], judged: bool) -> list[dict[str, Any]]:
    """Per trainer: median step, paired ratios to the baseline (median and 95 % interval), loss parts, verdict."""
    times, loss = group["times_s"], group["loss_alone_s"]
    base = times[BASELINE]
    rows = []
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, base, strict=True)]
        med, lo, hi = median_interval(ratios)
        row = {"trainer": name, "median_step_s": statistics.median(ts), "ratio_median": med, "ratio_ci95": [lo, hi],
               "ratio_of_medians": statistics.median(ts) / statistics.median(base), "ratios": ratios,
               "loss_alone_s": loss.get(name, loss[BASELINE] if name == CONTROL else None)}  # fmt: skip
        if name != BASELINE:
            parts = row["loss_alone_s"]
            row["loss_minus_nnunet_loss_s"] = parts["forward"] + parts["backward"] - sum(loss[BASELINE].values())
        row["judged"] = judged and name not in (BASELINE, CONTROL)
        row["passed"] = med <= GOAL if row["judged"] else None
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- parent: report
def _ms(x: float | None) -> str:
    return "—" if x is None else f"{1000 * x:.1f}"


def _table(rows: list[dict[str, Any]], with_goal: bool) -> str:
    header = ["trainer", "median step (s)", "paired ratio, median [95 % CI]", "ratio of medians",
              "loss fwd + bwd alone (ms)", "Δ vs nnU-Net's loss (ms)"] + (["≤ 1.05"] if with_goal else [])  # fmt: skip
    out = []
    for r in rows:
        parts = r["loss_alone_s"]
        fb = None if parts is None else parts["forward"] + parts["backward"]
        delta = r.get("loss_minus_nnunet_loss_s")
        cells = [f"`{r['trainer']}`", f"{r['median_step_s']:.3f}",
                 f"{r['ratio_median']:.3f} [{r['ratio_ci95'][0]:.3f}, {r['ratio_ci95'][1]:.3f}]",
                 f"{r['ratio_of_medians']:.3f}", _ms(fb), "—" if delta is None else f"{1000 * delta:+.1f}"]  # fmt: skip
        if with_goal:
            cells.append({True: "pass", False: "**MISS**", None: "—"}[r["passed"]])
        out.append(cells)
    return md_table(header, out)


def _parts_table(rows: list[dict[str, Any]]) -> str:
    header = ["trainer", *[f"{p} (ms)" for p in PARTS]]
    body = [[f"`{r['trainer']}`", *[_ms(r["loss_alone_s"][p]) for p in PARTS]] for r in rows
            if r["loss_alone_s"] is not None and "decode" in r["loss_alone_s"]]  # fmt: skip
    return md_table(header, body)


def _group_md(title: str, group: dict[str, Any], rows: list[dict[str, Any]], note: str, goal: bool) -> list[str]:
    base, load = group["loss_alone_s"][BASELINE], group["loadavg_1min_start_end"]
    return [
        f"## {title}", "",
        f"`{group['dataset']}`; patch {' × '.join(map(str, group['patch_size']))}, batch {group['batch_size']} "
        f"(data {group['data_shape']}), {len(group['target_shapes'])} deep-supervision outputs "
        f"({', '.join('×'.join(map(str, s[2:])) for s in group['target_shapes'])}), "
        f"{group['network_parameters'] / 1e6:.1f} M parameters; 1-min load average {load[0]:.1f} at the start of "
        f"the rounds, {load[1]:.1f} at the end. {note}", "",
        _table(rows, goal),
        f"The loss alone (no network; median of the repetitions): nnU-Net's loss {_ms(base['forward'])} ms forward + "
        f"{_ms(base['backward'])} ms backward. Ours, by part:", "",
        _parts_table(rows),
    ]  # fmt: skip


def markdown(p: dict[str, Any]) -> str:
    """The Markdown report."""
    cfg, verdict = p["config"], p["verdict"]
    v = p["child"]["versions"]
    lines = [
        "# nnU-Net v2 trainers: training-step time vs `nnUNetTrainer`", "",
        f"`python benchmarks/nnunet_overhead.py{' --quick' if cfg['quick'] else ''}` — nnU-Net {v['nnunetv2']}, "
        f"torch {v['torch']} (the nnU-Net environment, child process), CPU, **torch threads {v['torch_threads']}**; "
        f"{cfg['cases']} synthetic 2D cases of {cfg['size']}² written by `softlabels nnunet convert`, planned and "
        f"preprocessed by `nnUNetv2_plan_and_preprocess -c 2d`, configuration `2d`, fold 0. A step is nnU-Net's "
        f"`train_step` (forward, loss, backward, clipping, SGD). **{cfg['warmup']} warm-up + {cfg['rounds']} timed "
        "rounds**; in a round every trainer of the group steps once on the same batch (drawn once from nnU-Net's "
        "augmenting dataloader), the order rotated each round; all trainers start from the same weights. Paired "
        "ratio = step / the baseline's step of the same round; 95 % CI: order statistics of the median. The "
        f"`{CONTROL}` row is an A/A control (the baseline's code as a second trainer): its ratio is the noise.", "",
        *_group_md("Label-map trainers (goal: paired median ratio ≤ 1.05)", p["child"]["labels"], p["labels"],
                   "Baseline: `nnUNetTrainer` on the same 3-class dataset (softmax, Dice + CE).", True),
    ]  # fmt: skip
    if "raters" in p:
        lines += [*_group_md(
            "Rater and confidence trainers (no goal)", p["child"]["raters"], p["raters"],
            "Baseline: `nnUNetTrainer` on the same converted rater dataset, i.e. what the plain trainer does with it "
            "(sigmoid over the 3 nested regions \"at least k of 3 raters\", BCE + Dice; its batches are ours turned "
            "into regions by nnU-Net's `ConvertSegmentationToRegionsTransform`); our trainers train a 2-class "
            "softmax, so the networks differ only in the head (3 vs 2 channels).", False)]  # fmt: skip
    lines += [f"**{verdict}**", "", machine_md(p["machine"])]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- parent: main
def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """Run the nnU-Net side in ``.venv-nnunet`` with the nnU-Net folders in a temporary folder."""
    scratch = Path(args.scratch) if args.scratch else None
    if scratch:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nnunet-overhead-", dir=scratch) as tmp:
        work = Path(tmp)
        env = dict(os.environ, nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "preprocessed"),
                   nnUNet_results=str(work / "results"), nnUNet_n_proc_DA="0", OMP_NUM_THREADS=str(args.threads),
                   PYTHONUNBUFFERED="1")  # fmt: skip
        command = [str(NNUNET_PYTHON), __file__, "--child", str(work / "child.json"), "--cases", str(args.cases),
                   "--size", str(args.size), "--rounds", str(args.rounds), "--warmup", str(args.warmup),
                   "--loss-reps", str(args.loss_reps), "--threads", str(args.threads)]  # fmt: skip
        done = subprocess.run(command + (["--no-raters"] if args.no_raters else []), env=env, cwd=REPO, check=False)
        if done.returncode != 0:
            sys.exit(f"the nnU-Net child process failed with status {done.returncode} (its output is above)")
        return json.loads((work / "child.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 rounds, 1 warm-up, 12 cases (smoke run, not judged)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 25, quick 4)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 2, quick 1)")
    ap.add_argument("--loss-reps", type=int, default=None, help="repetitions of the loss alone (default 10, quick 2)")
    ap.add_argument("--cases", type=int, default=None, help="synthetic 2D cases (default 24, quick 12)")
    ap.add_argument("--size", type=int, default=128, help="slice size in voxels (default 128)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in the child (default 1)")
    ap.add_argument("--no-raters", action="store_true", help="skip the rater group")
    ap.add_argument("--scratch", default=None, help="folder for the temporary nnU-Net folders (default: $TMPDIR)")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the existing .json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 25)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.loss_reps = args.loss_reps or (2 if args.quick else 10)
    args.cases = args.cases or (12 if args.quick else 24)
    if args.child is not None:
        child(args)
        return 0
    name = "nnunet_overhead_quick" if args.quick else "nnunet_overhead"
    if args.render:
        stored = json.loads((RESULTS / f"{name}.json").read_text())
        write_results(name, stored, markdown(stored) + "\n")
        return 0 if stored["passed"] in (True, None) else 1
    if not NNUNET_PYTHON.exists():
        print(
            f"{NNUNET_PYTHON} is missing: create the nnU-Net environment with `bash scripts/setup_nnunet.sh` "
            "(installs torch, torchvision and nnunetv2 into .venv-nnunet), then run this again.",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    result = run_child(args)
    payload: dict[str, Any] = {
        "benchmark": "nnunet_overhead", "goal": f"paired median step ratio <= {GOAL} for the label-map trainers",
        "config": {"quick": args.quick, "rounds": args.rounds, "warmup": args.warmup, "loss_reps": args.loss_reps,
                   "cases": args.cases, "size": args.size, "threads": args.threads, "goal_ratio": GOAL,
                   "configuration": "2d", "fold": 0, "device": "cpu"},
        "child": result, "labels": summarise(result["labels"], judged=True),
    }  # fmt: skip
    if "raters" in result:
        payload["raters"] = summarise(result["raters"], judged=False)
    misses = [r["trainer"] for r in payload["labels"] if r["passed"] is False]
    payload["misses"], payload["passed"] = misses, None if args.quick else not misses
    verdict = f"missed ({GOAL}): {', '.join(misses)}" if misses else f"every label-map trainer ≤ {GOAL}"
    payload["verdict"] = ("quick run, not judged; " if args.quick else "") + verdict
    machine, versions = machine_info(), result["versions"]
    machine["torch_threads"] = versions["torch_threads"]  # the child's: the parent does no timing
    machine["versions"]["torch"] = f"{versions['torch']} (nnU-Net env; this .venv: {machine['versions']['torch']})"
    payload["wall_s"], payload["machine"] = time.perf_counter() - t0, machine
    text = markdown(payload) + "\n"
    write_results(name, payload, text)
    print(text)
    return 0 if payload["passed"] in (True, None) else 1


if __name__ == "__main__":
    raise SystemExit(main())
