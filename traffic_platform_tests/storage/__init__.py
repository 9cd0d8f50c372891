"""Tests of traffic_platform.storage: migrations, repository, object stores, keys."""
