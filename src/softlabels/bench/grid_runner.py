"""Running a benchmark grid: cached runs, local worker processes, one run per CLI call for cluster schedulers.

Each run has a config hash (:class:`~softlabels.bench.benchmark_run.RunSpec`); a run whose ``result.json`` exists is
not run again, so a killed benchmark resumes where it stopped
(an interrupted run resumes its training from ``last.ckpt``).
``workers > 1`` runs that many local processes (each with ``torch`` limited to ``cores // workers`` threads). On a
cluster, ``softlabels bench --list`` prints the runs by index and ``softlabels bench --run-index I`` runs one, so a
job array covers the grid; ``softlabels bench --report-only`` then writes the report (docs/bench.md has a SLURM
example).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from softlabels._io import atomic_write
from softlabels.bench.benchmark_run import RunSpec, execute_run, load_result
from softlabels.bench.learning_curves import MONITOR, check_convergence
from softlabels.bench.suites import Suite, get_benchmark, plan_runs

__all__ = ["BenchmarkFailed", "pending_runs", "prepare_data", "run_benchmark", "run_one"]


class BenchmarkFailed(RuntimeError):
    """Some runs of the grid raised; the others are finished and cached.

    Example:
        >>> str(BenchmarkFailed({"s/hard/seed0-abc": "ValueError: x"})).startswith("1 run(s) failed")
        True
    """

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        lines = "\n".join(f"  {run}: {error}" for run, error in failures.items())
        super().__init__(f"{len(failures)} run(s) failed (the others are cached; re-run to retry):\n{lines}")


def quiet() -> None:
    """Silence Lightning's per-run banners and known deprecation noise (progress lines stay)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    quiet()


def pending_runs(specs: Sequence[RunSpec], root: str | Path) -> list[RunSpec]:
    """The runs of ``specs`` without a finished result in ``root``.

    Example:
        >>> specs = plan_runs(get_benchmark("quick"))
        >>> len(pending_runs(specs, "/nonexistent")) == len(specs)
        True
    """
    return [spec for spec in specs if load_result(root, spec) is None]


def prepare_data(specs: Sequence[RunSpec]) -> None:
    """Build what runs share before workers start: the LIDC-IDRI nodule cache (once per distinct build option).

    Example:
        >>> prepare_data([])  # nothing to build
    """
    builds = {json.dumps(s.config["data"]["options"].get("build", {}), sort_keys=True) for s in specs
              if s.config.get("data", {}).get("source") == "lidc"}  # fmt: skip
    if not builds:
        return
    from softlabels.data.lidc_build import load_lidc_nodules

    for build in sorted(builds):
        print(f"[bench] preparing the LIDC-IDRI nodule cache ({build})", file=sys.stderr, flush=True)
        load_lidc_nodules(**json.loads(build))


def run_one(spec: RunSpec, root: str | Path, prefix: str = "") -> dict[str, Any]:
    """Run one spec in this process (the unit of ``--run-index`` and of the worker pool).

    Example:
        >>> run_one.__name__
        'run_one'
    """
    quiet()
    return execute_run(spec, root, prefix=prefix)


def _verdict(result: dict[str, Any]) -> str:
    """``"; not converged: <reason>"`` for a run whose validation NLL was still falling, else ``""``."""
    values = (result.get("learning_curve") or {}).get(MONITOR) or []
    check = check_convergence(values)
    return "" if check.converged else f"; not converged: {check.reason}"


def _worker(spec: RunSpec, root: str, prefix: str) -> tuple[str, float, str]:
    start = time.perf_counter()
    result = execute_run(spec, root, prefix=prefix)
    return spec.run_id, time.perf_counter() - start, _verdict(result)


def _run_pool(todo: Sequence[RunSpec], root: Path, workers: int, done: int, total: int) -> dict[str, str]:
    """Run ``todo`` on ``workers`` processes; print overall progress; return the failures."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    failures: dict[str, str] = {}
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        futures: dict[Future[tuple[str, float, str]], RunSpec] = {}
        for i, spec in enumerate(todo):
            prefix = f"[bench run {done + i + 1}/{total}] {spec.run_id}"
            futures[pool.submit(_worker, spec, str(root), prefix)] = spec
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in finished:
                spec = futures[future]
                done += 1
                try:
                    _, seconds, verdict = future.result()
                    line = f"[bench {done}/{total} done] {spec.run_id} ({seconds:.0f} s{verdict})"
                    print(line, file=sys.stderr, flush=True)
                except Exception as err:
                    failures[spec.run_id] = f"{type(err).__name__}: {err}"
                    print(f"[bench {done}/{total} FAILED] {spec.run_id}: {err}", file=sys.stderr, flush=True)
    return failures


def _run_serial(todo: Sequence[RunSpec], root: Path, done: int, total: int) -> dict[str, str]:
    failures: dict[str, str] = {}
    for spec in todo:
        start = time.perf_counter()
        try:
            result = run_one(spec, root, prefix=f"[bench run {done + 1}/{total}] {spec.run_id}")
            status = f"done] {spec.run_id} ({time.perf_counter() - start:.0f} s{_verdict(result)})"
        except Exception as err:
            failures[spec.run_id] = f"{type(err).__name__}: {err}"
            status = f"FAILED] {spec.run_id}: {err}"
        done += 1
        print(f"[bench {done}/{total} {status}", file=sys.stderr, flush=True)
    return failures


def run_benchmark(
    benchmark: str | Sequence[Suite],
    output: str | Path,
    *,
    workers: int = 1,
    only: Sequence[str] | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Run every missing run of a benchmark, then (optionally) write its report.

    Args:
        benchmark: ``"quick"``, ``"default"``, ``"full"`` or a list of suites.
        output: the benchmark folder (``runs/``, ``report.md``, ``report.html``, ``bench.json``).
        workers: local processes (1: in this process).
        only: run these suite names only.
        report: write the report when every run is finished.

    Returns:
        ``{"total", "cached", "ran", "seconds", "report"}`` (the report's paths, if written).

    Raises:
        BenchmarkFailed: some runs raised (the others are finished and cached).
        ValueError: bad ``workers`` or unknown names.

    Example:
        >>> run_benchmark.__name__
        'run_benchmark'
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an int >= 1; got {workers!r}.")
    suites = get_benchmark(benchmark) if isinstance(benchmark, str) else list(benchmark)
    specs = plan_runs(suites, only=only)
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    todo = pending_runs(specs, root)
    cached = len(specs) - len(todo)
    print(f"[bench] {len(specs)} runs, {cached} finished earlier, {len(todo)} to run", file=sys.stderr, flush=True)
    start = time.perf_counter()
    prepare_data(todo)
    if workers == 1 or len(todo) <= 1:
        failures = _run_serial(todo, root, cached, len(specs))
    else:
        failures = _run_pool(todo, root, workers, cached, len(specs))
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {"total": len(specs), "cached": cached, "ran": len(todo), "seconds": seconds}
    summary["failed"] = sorted(failures)
    text = json.dumps({**summary, "runs": [s.run_id for s in specs]}, indent=1) + "\n"
    atomic_write(root / "bench.json", lambda handle: handle.write(text.encode()))
    if failures:
        raise BenchmarkFailed(failures)
    if report:
        from softlabels.bench.benchmark_report import write_benchmark_report

        kept = [s for s in suites if only is None or s.name in only]
        summary["report"] = {k: str(v) for k, v in write_benchmark_report(kept, root, seconds=seconds).items()}
    return summary
