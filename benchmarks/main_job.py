"""README command (a) on a fresh clone: wall time of the set-up and of the default benchmark (goal ≤ 30 min).

Clones the repository's committed HEAD into a temporary folder, runs ``bash scripts/main.sh`` there with an empty
data cache (so the LIDC-IDRI nodule cache is built as on a new machine) and records the set-up and benchmark wall
times, the commit and the report's size in ``benchmarks/results/main_job.{json,md}``.

    python benchmarks/main_job.py            # about 20-30 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import RESULTS, write_results

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 30 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the clone (prints its path)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    work = Path(tempfile.mkdtemp(prefix="softlabels-main-job-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    env = {**os.environ, "SOFTLABELS_CACHE": str(work / "cache")}
    start = time.perf_counter()
    subprocess.run(["bash", "scripts/main.sh"], cwd=clone, env=env, check=True)
    wall = time.perf_counter() - start
    out = clone / "outputs" / "bench-default"
    timing = json.loads((out / "timing.json").read_text())
    bench = json.loads((out / "bench.json").read_text())
    result = {
        "commit": commit.strip(), "wall_seconds": round(wall, 1), **timing, "goal_seconds": GOAL_SECONDS,
        "passed": wall <= GOAL_SECONDS, "runs": bench["total"], "cpus": os.cpu_count(),
        "report_html_bytes": (out / "report.html").stat().st_size,
    }  # fmt: skip
    quick_start = time.perf_counter()
    quick = ["softlabels", "bench", "--suite", "quick", "--workers", "2", "--output", "outputs/bench-quick"]
    subprocess.run(["bash", "-c", ". .venv/bin/activate && " + " ".join(quick)], cwd=clone, env=env, check=True)
    result["quick_seconds"] = round(time.perf_counter() - quick_start, 1)
    result["quick_passed"] = result["quick_seconds"] <= 5 * 60
    header = "| commit | set-up (s) | default bench (s) | total (s) | goal (s) | runs | passed | quick bench (s) |"
    row = (
        f"| `{result['commit'][:10]}` | {timing['setup_seconds']} | {timing['bench_seconds']} | "
        f"{result['wall_seconds']} | {GOAL_SECONDS} | {bench['total']} | {result['passed']} | "
        f"{result['quick_seconds']} |"
    )
    lines = [
        "# README command (a) on a fresh clone", "",
        "`bash scripts/main.sh` (set-up + `softlabels bench --suite default --workers 2`) with an empty data cache, "
        "then `softlabels bench --suite quick --workers 2` (goal ≤ 300 s).", "",
        header, "|---|---|---|---|---|---|---|---|", row, "",
    ]  # fmt: skip
    write_results("main_job", result, "\n".join(lines))
    saved = RESULTS / "bench-default"  # the report of this run, for readers of the repository
    shutil.rmtree(saved, ignore_errors=True)
    shutil.copytree(out / "figures", saved / "figures")
    for name in ("report.md", "report.json", "timing.json", "bench.json"):
        shutil.copy2(out / name, saved / name)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"clone kept in {clone}")


if __name__ == "__main__":
    main()
