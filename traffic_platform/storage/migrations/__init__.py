"""Alembic migrations of the ingest tables (configured in code by ``storage.database``)."""
