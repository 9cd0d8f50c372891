"""Dagster definitions: ingest tables as observed sources, reporting assets, checks,
schedules, sensors and resources. ``definitions.py`` only merges the areas."""
