#!/usr/bin/env bash
# Set up .venv and run the whole test suite (SQLite, MariaDB on 127.0.0.1:3306, S3 over moto's HTTP server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
.venv/bin/ruff check traffic_platform traffic_platform_tests bench
exec .venv/bin/python -m pytest -q "$@"
