"""The HTTP API as plain request -> response functions, shared by the local server and Lambda.

    POST /v1/images                  raw body + ?filename=, or multipart field "image"
    GET  /v1/captures/{id}           status (pending/stored/distorted/failed), metadata, counts
    GET  /v1/captures/{id}/image     the stored image
    GET  /v1/captures/{id}/annotated the annotated copy
    GET  /healthz  /readyz  /metrics
    GET  /v1/counts  /v1/locations    the reporting views (``counts=``, see counts_api.py)
    GET  /dashboard                  the built-in dashboard, rendered on request (local server only)
    GET  /openapi.json               the OpenAPI 3.1 document of all of these (openapi.py)
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from ..domain.captures import ACCEPTED, CaptureRecord
from ..domain.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TrafficPlatformError,
    Unauthorized,
)
from ..domain.redact import redact
from .metrics import Metrics
from .service import IngestService

log = logging.getLogger("traffic_platform.api")
_CAPTURE = re.compile(r"^/v1/captures/([0-9a-f]{32})(/image|/annotated)?$")

DASHBOARD_PATH = "/dashboard"

# The states GET /v1/captures/{id} reports (a distorted capture keeps its stored verdict).
STORED, PENDING, PERSIST_FAILED = "stored", "pending", "failed"


def capture_answer(record: CaptureRecord) -> dict[str, Any]:
    """The answer to an accepted upload (201), from the capture record the service handed off."""
    return {
        "capture_id": record.capture_id,
        "status": record.status,
        "metadata": record.metadata.to_dict(),
        "width": record.width,
        "height": record.height,
        "quality": {"verdict": record.quality_verdict, "flags": list(record.quality_flags)},
        "counts": record.counts,
        "detections": [d.to_dict() for d in record.detections],
        "model": {"name": record.model_name, "version": record.model_version},
        "timings_ms": {k: round(v, 2) for k, v in record.timings.items()},
    }


def pending_answer(record: CaptureRecord, last_error: str | None = None) -> dict[str, Any]:
    """The state of a capture handed off but not stored yet (``pending`` / ``pending_distorted``)."""
    body = {
        "capture_id": record.capture_id,
        "status": PENDING if record.status == ACCEPTED else f"{PENDING}_{record.status}",
        "metadata": record.metadata.to_dict(),
        "quality": {"verdict": record.quality_verdict, "flags": list(record.quality_flags)},
        "counts": record.counts,
        "detections": [d.to_dict() for d in record.detections],
    }
    if last_error:
        body["last_error"] = last_error
    return body


@dataclass
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: Called by the server once the answer is written (the local server wakes its worker there).
    after_send: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, json.dumps(payload, ensure_ascii=False).encode())

    @classmethod
    def error(cls, exc: TrafficPlatformError) -> Response:
        response = cls.json(exc.http_status, exc.to_dict())
        if exc.http_status == 503:  # busy or a dependency down: say when to retry
            response.headers["Retry-After"] = str(exc.details.get("retry_after_s", 1))
        return response


class CaptureLookup:
    """Reads a capture's state; the local platform backs it with the database, store and spool."""

    def status(self, capture_id: str) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotFound(f"No capture {capture_id}.")

    def image(self, capture_id: str, annotated: bool) -> tuple[bytes, str]:  # pragma: no cover - interface
        raise NotFound(f"No capture {capture_id}.")


class Api:
    """Routes requests to the ingest service and the capture lookup; renders every error as JSON."""

    def __init__(
        self,
        service: IngestService,
        *,
        lookup: CaptureLookup | None = None,
        readiness: Mapping[str, Callable[[], object]] | None = None,
        metrics: Metrics | None = None,
        api_key: str | None = None,
        base_path: str = "",
        counts: Any = None,  # a counts_api.CountsApi: its .paths are served by its .handle(req, path)
        dashboard: Callable[[], bytes] | None = None,  # renders the dashboard page (UTF-8 HTML)
        uploads: Any = None,  # an uploads.UploadsApi (S3 stores): POST /v1/uploads
        after_image: Callable[[], None] | None = None,  # the answer to POST /v1/images is out
    ):
        self.counts = counts
        self.uploads = uploads
        # Run after an image's answer is sent, not inside the request: the local worker, woken
        # there, does not take the GIL and a core while the answer is encoded and written.
        self.after_image = after_image
        self.dashboard = dashboard
        self.service = service
        self.lookup = lookup or CaptureLookup()
        self.readiness = dict(readiness or {})
        self.metrics = metrics or Metrics()
        self.api_key = api_key
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""

    def handle(self, req: Request) -> Response:
        started = time.perf_counter()
        if self.base_path and (req.path == self.base_path or req.path.startswith(self.base_path + "/")):
            req = replace(req, path=req.path[len(self.base_path):] or "/")  # a custom domain's base path
        route = route_name(req.path)
        try:
            response = self._route(req)
            code = "ok"
        except TrafficPlatformError as exc:
            response, code = Response.error(exc), exc.code
        except Exception:
            log.exception("unhandled error on %s %s", req.method, req.path)
            response = Response.json(500, {"error": {"code": "internal_error", "message": "Unexpected server error; it was logged."}})
            code = "internal_error"
        self.metrics.observe(route, response.status, code, (time.perf_counter() - started) * 1e3)
        if route == "images" and req.method == "POST":
            response.after_send = self.after_image
        return response

    def _route(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path == "/healthz":
            return Response.json(200, {"status": "ok"})
        if path == "/readyz":
            return self._ready(req)
        if path == "/metrics":
            return Response(200, self.metrics.render().encode(), "text/plain; version=0.0.4")
        if path == "/openapi.json":
            from .openapi import openapi_response

            return openapi_response()
        self._authorise(req)
        if self.counts is not None and path in self.counts.paths:
            return self.counts.handle(req, path)
        if path == DASHBOARD_PATH:
            return self._dashboard(req)
        if self.uploads is not None and path in self.uploads.paths:
            return self.uploads.handle(req, path)
        if path == "/v1/images":
            if req.method != "POST":
                return self._not_allowed("POST")
            return self._post_image(req)
        match = _CAPTURE.match(path)
        if match:
            if req.method != "GET":
                return self._not_allowed("GET")
            capture_id, sub = match.groups()
            if sub:
                data, content_type = self.lookup.image(capture_id, annotated=sub == "/annotated")
                return Response(200, data, content_type)
            return Response.json(200, self.lookup.status(capture_id))
        if path.startswith("/v1/captures/"):
            raise NotFound("A capture id is 32 lower-case hex characters, as returned by POST /v1/images.")
        raise NotFound(f"No route {req.method} {path}. See /v1/images and /v1/captures/{{id}}.")

    @staticmethod
    def _not_allowed(allowed: str) -> Response:
        body = {"error": {"code": "method_not_allowed", "message": f"Use {allowed} on this path."}}
        return Response(405, json.dumps(body).encode(), headers={"Allow": allowed})

    def _dashboard(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return self._not_allowed("GET")
        if self.dashboard is None:
            raise NotFound("This server does not render the dashboard; `traffic-platform serve` does, "
                           "and `traffic-platform dashboard` writes it to a file.")
        return Response(200, self.dashboard(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    def _authorised(self, req: Request) -> bool:
        try:
            self._authorise(req)
        except TrafficPlatformError:
            return False
        return True

    def _authorise(self, req: Request) -> None:
        if not self.api_key:
            return
        given = req.headers.get("x-api-key")
        if not given:
            raise Unauthorized("Send your API key in the x-api-key header.")
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise Forbidden("The API key in x-api-key is not valid.")

    def _post_image(self, req: Request) -> Response:
        file_name, data, content_type = read_upload(req)
        try:
            record = self.service.ingest(file_name, data, content_type)
        except PayloadTooLarge as exc:
            if self.uploads is not None and exc.code == "upload_too_large":  # name the other route
                exc.message += " Larger images: POST /v1/uploads?filename=<name> for an upload URL, then PUT it there."
                exc.details = {**exc.details, "upload_route": "/v1/uploads"}
            raise
        return Response.json(201, capture_answer(record))

    def _ready(self, req: Request) -> Response:
        """Every check's ok/not-ok; what it found (or its error) only for a caller with a valid
        API key (or when none is configured), passwords masked even then."""
        detailed = self._authorised(req)
        checks: dict[str, Any] = {}
        degraded: list[str] = []
        ok = True
        for name, probe in self.readiness.items():
            try:
                detail = probe()
                detail = detail if isinstance(detail, dict) else {}
                # A probe may answer {"degraded": reason}: still ready (200), but someone should look.
                if detail.get("degraded"):
                    degraded.append(f"{name}: {detail['degraded']}")
                checks[name] = {"ok": True, **(detail if detailed else {})}
            except Exception as exc:
                ok = False
                checks[name] = {"ok": False}
                if detailed:
                    checks[name]["error"] = redact(f"{type(exc).__name__}: {exc}")[:500]
                log.warning("readiness check %s failed: %s", name, redact(f"{type(exc).__name__}: {exc}")[:500])
        status = "degraded" if ok and degraded else "ok" if ok else "unavailable"
        return Response.json(200 if ok else 503, {"ready": ok, "status": status, "reasons": degraded, "checks": checks})


def route_name(path: str) -> str:
    """A low-cardinality label for metrics."""
    path = path.rstrip("/") or "/"
    if path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/counts", "/v1/locations", "/v1/uploads",
                DASHBOARD_PATH):
        return path.rsplit("/", 1)[1].removesuffix(".json")
    if path == "/v1/images":
        return "images"
    if path.startswith("/v1/captures/"):
        return "capture_image" if path.endswith(("/image", "/annotated")) else "captures"
    return "other"


_NAME_HINT = ("Say the file name: ?filename=<address>_<city>_<country>_<DD-MM-YYYY>_<HH-MM-SS>.jpg "
              "(or the multipart part's filename).")


def read_upload(req: Request) -> tuple[str, bytes, str | None]:
    """(file name, bytes, content type) from a raw-body or multipart/form-data upload."""
    content_type = req.headers.get("content-type", "")
    file_name = req.query.get("filename") or req.headers.get("x-filename")
    if content_type.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + req.body)
        if not message.is_multipart():
            raise BadRequest("The multipart body could not be parsed; check its boundary.", code="bad_multipart")
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "image":
                data = part.get_payload(decode=True) or b""
                file_name = file_name or part.get_filename()
                if file_name is None:  # no name anywhere: as for a raw body (a blank one is file_name_empty)
                    raise BadRequest(_NAME_HINT, code="missing_file_name")
                return file_name, data, part.get_content_type()
        raise BadRequest("The multipart body has no field named 'image'.", code="missing_image_field")
    if not file_name:
        raise BadRequest(_NAME_HINT, code="missing_file_name")
    return file_name, req.body, content_type.split(";")[0].strip() or None
