#!/usr/bin/env bash
# Set up .venv, then run the main job end to end: ingest sample images, persist them,
# and materialise the Dagster reporting assets for the days they cover.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
exec .venv/bin/traffic-platform demo "$@"
