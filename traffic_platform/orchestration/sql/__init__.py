"""The reporting schema and the set-based SQL that fills it (MySQL and SQLite dialects)."""
