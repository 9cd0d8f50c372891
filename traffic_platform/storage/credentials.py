"""Database credentials from AWS Secrets Manager, read per new connection.

On AWS the database URL names the secret instead of a password::

    mysql+pymysql://<cluster endpoint>:3306/traffic?aws_secret=<secret ARN>

(:func:`~traffic_platform.storage.database.make_engine` takes ``aws_secret`` out of the URL).
The secret is the JSON Aurora keeps for a managed master password (``username``,
``password``; ``host``/``port``/``dbname`` are used when present and the URL has none).
It is read once and cached; when the server refuses the cached password (MySQL error
1045, after a rotation) it is read again and the connection retried once, so a rotation
never needs a restart and no password is ever in an environment variable or a log.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..domain.errors import ConfigurationError

ACCESS_DENIED = 1045  # ER_ACCESS_DENIED_ERROR


class SecretCredentials:
    """The ``username``/``password`` (and optional host, port, database) of one secret."""

    def __init__(self, secret_id: str, client: Any = None):
        self.secret_id = secret_id
        self._client = client
        self._lock = threading.Lock()
        self._cached: dict[str, Any] | None = None
        self.reads = 0  # how often the secret was fetched (tests, logs)

    def current(self) -> dict[str, Any]:
        with self._lock:
            if self._cached is None:
                self._cached = self._read()
            return dict(self._cached)

    def refresh(self) -> dict[str, Any]:
        with self._lock:
            self._cached = self._read()
            return dict(self._cached)

    def _read(self) -> dict[str, Any]:
        client = self._client or _client_for(self.secret_id)
        try:
            raw = client.get_secret_value(SecretId=self.secret_id)["SecretString"]
        except Exception as exc:  # botocore errors name the secret, never a value
            raise ConfigurationError(
                f"The database secret {self.secret_id} could not be read ({type(exc).__name__}: {exc}); "
                "check the function's secretsmanager:GetSecretValue permission and the ARN in "
                "TRAFFIC_DATABASE_URL's aws_secret."
            ) from None
        self.reads += 1
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not value.get("username") or not value.get("password"):
            raise ConfigurationError(
                f"The database secret {self.secret_id} must be JSON with 'username' and 'password'."
            )
        out: dict[str, Any] = {"user": str(value["username"]), "password": str(value["password"])}
        if value.get("host"):
            out["host"] = str(value["host"])
        if value.get("port"):
            out["port"] = int(value["port"])
        if value.get("dbname"):
            out["database"] = str(value["dbname"])
        return out


def _client_for(secret_id: str) -> Any:
    """A Secrets Manager client in the secret's own region (from its ARN), else the default."""
    import boto3

    parts = secret_id.split(":")
    region = parts[3] if secret_id.startswith("arn:") and len(parts) > 3 and parts[3] else None
    return boto3.client("secretsmanager", region_name=region)


def install(engine: Any, credentials: SecretCredentials, url_has: set[str]) -> None:
    """Supply ``credentials`` to every new connection of ``engine``; retry once after a rotation.

    ``url_has``: the connection parameters the URL sets itself (host, port, database), which
    the secret's optional fields do not override.
    """
    from sqlalchemy import event

    def apply(cparams: dict[str, Any], values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key in ("user", "password") or key not in url_has:
                cparams[key] = value

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        apply(cparams, credentials.current())
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            if not exc.args or exc.args[0] != ACCESS_DENIED:
                raise
            apply(cparams, credentials.refresh())  # rotated since we read it
            return dialect.connect(*cargs, **cparams)
