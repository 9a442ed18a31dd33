#!/usr/bin/env bash
# Create .venv-nnunet: softlabels[nnunet] beside the real nnunetv2, for the nnU-Net end-to-end test and benchmark.
# A separate environment because nnunetv2 2.8 needs dynamic_network_architectures, which needs timm, which imports
# torchvision, and PyPI's torchvision fails to load beside the CPU build of torch that .venv pins. Here torch and
# torchvision come as a matching pair (NNUNET_TORCH; on these x86_64 machines both lie on local disk).
# Idempotent: re-running is a no-op unless pyproject.toml, the constraints file or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SOFTLABELS_NNUNET_VENV:-.venv-nnunet}
TORCH_SPEC=${NNUNET_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp=$(cat pyproject.toml requirements/constraints.txt scripts/setup_nnunet.sh | sha256sum | cut -d' ' -f1)
if [ -f "$VENV/.setup-stamp" ] && [ "$(cat "$VENV/.setup-stamp")" = "$stamp" ]; then
  exit 0
fi
pip_install() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
# shellcheck disable=SC2086
pip_install $TORCH_SPEC
# The main environment's pins, except torch and torchvision (chosen above).
grep -v -i -E '^(torch|torchvision)==' requirements/constraints.txt > "$VENV/constraints.txt"
pip_install -c "$VENV/constraints.txt" -e '.[nnunet,dev]' $TORCH_SPEC
"$VENV/bin/python" -c "import torchvision, timm, nnunetv2, softlabels.integrations.nnunet"
echo "$stamp" > "$VENV/.setup-stamp"
