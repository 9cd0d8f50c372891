#!/bin/sh
# The code location's entry point: bring both schemas up, then serve the definitions over gRPC.
# Migrations are serialised by a MySQL lock, so restarts and several tasks are safe.
set -eu
traffic-platform db upgrade                                   # the platform's own tables
traffic-platform db create-database "${DAGSTER_MYSQL_DB:-dagster}"  # Dagster's run storage
exec dagster code-server start -h 0.0.0.0 -p 4000 \
    -m traffic_platform.orchestration.definitions -a defs
