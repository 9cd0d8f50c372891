"""Structured logs: one line per event, its fields as JSON (Lambda, ``TRAFFIC_LOG_JSON=true``)
or as ``key=value`` after the message (a terminal).

Code logs with fields in ``extra`` (``log.info("accepted %s", name, extra={"timings_ms": ...})``);
:func:`configure_logging` decides how they are written. The ingest service writes one such
line per image (outcome, capture id, counts, ``timings_ms``), the persist step one per stored
capture, the Lambda handlers one per request.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from .domain.redact import redact

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_HANDLER_NAME = "traffic_platform"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a log record."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", <extra fields>, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(body, ensure_ascii=False, default=str))


class KeyValueFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …`` (values that are not plain as compact JSON)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = fields_of(record)
        if not extra:
            return redact(line)
        pairs = " ".join(
            f"{k}={v if isinstance(v, int | float | str) else json.dumps(v, separators=(',', ':'), default=str)}"
            for k, v in extra.items()
        )
        head, sep, rest = line.partition("\n")  # keep a traceback after the fields
        return redact(f"{head} {pairs}{sep}{rest}")


def configure_logging(
    *, json_lines: bool, level: str | int = "INFO", stream: Any = None, exclusive: bool = False
) -> logging.Handler:
    """Send every log record to ``stream`` (default stderr) as JSON or key=value lines.

    Idempotent: a handler installed by an earlier call is replaced. Other handlers (pytest's)
    are left alone unless ``exclusive`` (on Lambda: the runtime's own handler would write
    every line a second time, unstructured); the root level is set to ``level``.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if exclusive or handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler


__all__ = ["JsonFormatter", "KeyValueFormatter", "configure_logging", "fields_of"]
