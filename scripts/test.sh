#!/usr/bin/env bash
# Set up (if needed), then run the linters, the import contracts (pyproject.toml [tool.importlinter]) and the whole
# test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_chromium.sh
. .venv/bin/activate
ruff check src tests benchmarks scripts
mypy
lint-imports --no-cache
python -m pytest -n 2 --dist loadfile --doctest-modules src/softlabels tests "$@"
