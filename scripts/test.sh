#!/usr/bin/env bash
# Set up (if needed), then run the linters, the import contracts (pyproject.toml [tool.importlinter]) and the whole
# test suite; then the tests that need the real nnU-Net, in its own environment (scripts/setup_nnunet.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_nnunet.sh
bash scripts/install_chromium.sh
. .venv/bin/activate
ruff check src tests benchmarks scripts
mypy
lint-imports --no-cache
python -m pytest -n 2 --dist loadfile --doctest-modules src/softlabels tests "$@"
# nnU-Net v2 (softlabels[nnunet]): our trainers inside nnU-Net, its trainer lookup, and convert → plan → train →
# predict → score with nnU-Net's own commands. Skipped above, where nnunetv2 is not installed.
.venv-nnunet/bin/python -m pytest -n 2 --dist loadfile -p no:cacheprovider --doctest-modules \
  src/softlabels/integrations/nnunet/trainers.py src/softlabels/integrations/nnunet_external \
  tests/integrations/nnunet/test_trainers.py tests/integrations/nnunet/test_end_to_end.py \
  tests/integrations/nnunet_external tests/integrations/nnunet/test_trainer_folder.py
