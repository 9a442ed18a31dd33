#!/usr/bin/env bash
# README command (a): set up (if needed), then run the main job — the default benchmark of every method on the
# embedded data — and print where the report is. Re-running resumes: finished runs are cached.
# Usage: bash scripts/main.sh [OUTPUT_DIR] [extra `softlabels bench` options, e.g. --suite quick]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s.%N)
bash scripts/setup.sh
setup_done=$(date +%s.%N)
. .venv/bin/activate
out=${1:-outputs/bench-default}
shift || true
softlabels bench --suite default --workers "${SOFTLABELS_WORKERS:-2}" --output "$out" "$@"
end=$(date +%s.%N)
python - "$out" "$start" "$setup_done" "$end" <<'PY'
import json, os, sys
out, start, setup, end = sys.argv[1], *map(float, sys.argv[2:])
timing = {"setup_seconds": round(setup - start, 1), "bench_seconds": round(end - setup, 1), "total_seconds": round(end - start, 1)}
tmp = os.path.join(out, ".timing.json.tmp")
with open(tmp, "w") as f:
    json.dump(timing, f, indent=1)
os.replace(tmp, os.path.join(out, "timing.json"))
print(f"set-up {timing['setup_seconds']} s, benchmark {timing['bench_seconds']} s; report: {out}/report.html")
PY
