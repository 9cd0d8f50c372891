#!/usr/bin/env bash
# Create .venv at the repository root and install the project with its test tools.
# torch is pinned to the CPU wheel (an unpinned torch pulls a multi-GB CUDA build);
# dagster and dagster-aws are pinned as a matching pair (see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0" -e ".[dev]"
