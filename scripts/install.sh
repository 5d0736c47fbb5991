#!/usr/bin/env bash
# Installs radvlsm, the MONAI Label app's and the tests' dependencies (extras app, dev) on a fresh
# machine (CPU torch 2.13.0 wheel).
# Every pip call, including pip's isolated build environments, obeys constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_CONSTRAINT="$PWD/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install --quiet --progress-bar off -e ".[dev,app]"
# torchvision's compiled ops need CUDA torch: install the start-up hook that fixes that (radvlsm/compat).
python -m radvlsm.compat install
python -m radvlsm.compat check
