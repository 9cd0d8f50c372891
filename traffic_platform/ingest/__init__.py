"""Ingest: decode and check uploads, run the sync path, hand captures off for persistence."""
