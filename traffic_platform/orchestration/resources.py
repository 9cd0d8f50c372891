"""Resources built from the one settings object (``Settings.from_env``).

Left unset, each resource reads ``TRAFFIC_*`` when a run starts (so no URL or secret is
shown in the UI's run config); tests pass explicit values. Clients are created once per
run in ``setup_for_execution``, never at import time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from ..config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..storage.objectstore import ObjectStore


class DatabaseResource(dg.ConfigurableResource):
    """The platform database (SQLite file or Aurora MySQL/MariaDB) as a SQLAlchemy engine."""

    url: str | None = None  # default: TRAFFIC_DATABASE_URL (via Settings.from_env)

    _engine: Any = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        return self.url or Settings.from_env().database_url

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def get_engine(self) -> Engine:
        """The run's engine (created on first use, disposed when the run step ends)."""
        if self._engine is None:
            from ..storage.database import make_engine

            self._engine = make_engine(self.resolved_url())
        return self._engine


class ObjectStoreResource(dg.ConfigurableResource):
    """The image store (a directory or S3) from the same settings."""

    uri: str | None = None  # default: TRAFFIC_OBJECT_STORE_URI
    s3_endpoint_url: str | None = None  # default: TRAFFIC_S3_ENDPOINT_URL

    _store: Any = PrivateAttr(default=None)

    def settings(self) -> Settings:
        settings = Settings.from_env()
        changes: dict[str, Any] = {}
        if self.uri:
            changes["object_store_uri"] = self.uri
        if self.s3_endpoint_url:
            changes["s3_endpoint_url"] = self.s3_endpoint_url
        return replace(settings, **changes) if changes else settings

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._store = None

    def get_store(self) -> ObjectStore:
        if self._store is None:
            from ..storage.objectstore import open_object_store

            self._store = open_object_store(self.settings())
        return self._store


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every deployment uses; values come from ``TRAFFIC_*`` at run time."""
    return {"database": DatabaseResource(), "object_store": ObjectStoreResource()}
