import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from softlabels.bench.benchmark_run import run_folder
from softlabels.bench.grid_runner import BenchmarkFailed, pending_runs, run_benchmark
from softlabels.bench.suites import Cell, plan_runs
from tests.bench.conftest import tiny_suites

SCRIPT = """
import sys
from softlabels.bench.grid_runner import run_benchmark
from tests.bench.conftest import tiny_suites
run_benchmark(tiny_suites(), sys.argv[1], workers=1, report=False)
"""


def test_a_killed_benchmark_reruns_only_the_missing_runs(tmp_path):
    suites = tiny_suites()
    specs = plan_runs(suites)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(specs) - len(pending_runs(specs, tmp_path)) < 2:
        assert proc.poll() is None, "the benchmark ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = [s for s in specs if s not in pending_runs(specs, tmp_path)]
    assert 2 <= len(finished) < len(specs)
    stamps = {s.run_id: os.stat(run_folder(tmp_path, s) / "result.json").st_mtime_ns for s in finished}
    summary = run_benchmark(suites, tmp_path, workers=1, report=False)
    assert summary["cached"] == len(finished) and summary["ran"] == len(specs) - len(finished)
    assert not pending_runs(specs, tmp_path)
    for spec in finished:  # the finished runs were not run again
        assert os.stat(run_folder(tmp_path, spec) / "result.json").st_mtime_ns == stamps[spec.run_id]
    again = run_benchmark(suites, tmp_path, workers=1, report=False)
    assert again["cached"] == len(specs) and again["ran"] == 0


def test_worker_processes_give_the_same_results_as_one_process_and_show_progress(tmp_path, tiny_bench, capfd):
    suites, root = tiny_bench
    cls = [s for s in suites if s.task == "classification"]
    run_benchmark(cls, tmp_path, workers=2, report=False)
    err = capfd.readouterr().err
    total = len(plan_runs(cls))
    assert f"[bench {total}/{total} done]" in err  # overall progress: runs done / total
    assert "epoch 1/1" in err  # the current run's epoch, printed by the worker processes
    assert err.count("; not converged: only 1 validated epoch(s)") == total  # one epoch cannot show a plateau
    for spec in plan_runs(cls):
        a = json.loads((run_folder(root, spec) / "result.json").read_text())["evaluations"]
        b = json.loads((run_folder(tmp_path, spec) / "result.json").read_text())["evaluations"]
        assert a["raw"] == pytest.approx(b["raw"], rel=1e-5)
        curves = [
            json.loads((run_folder(r, spec) / "result.json").read_text())["learning_curve"] for r in (root, tmp_path)
        ]
        assert curves[0]["val_nll"] == pytest.approx(curves[1]["val_nll"], rel=1e-5)


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    suites = tiny_suites()[1:]
    broken = dataclasses.replace(suites[0], cells=(*suites[0].cells, Cell("bad", "ls", {"epsilon": 7.0})))
    with pytest.raises(BenchmarkFailed, match="bad") as info:
        run_benchmark([broken], tmp_path, workers=1)
    assert all("bad" in run for run in info.value.failures)
    assert len(pending_runs(plan_runs([broken]), tmp_path)) == len(broken.seeds)


def test_bad_workers_raise(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        run_benchmark(tiny_suites(), tmp_path, workers=0)
