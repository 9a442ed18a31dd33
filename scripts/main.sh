#!/usr/bin/env bash
# Set up (if needed), then run the main job: score the example predictions shipped with the package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out=${1:-outputs/example-score}
softlabels score --example --output "$out"
echo "report: $out/report.md"
