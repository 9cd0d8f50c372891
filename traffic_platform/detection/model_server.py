"""A local model server that speaks the SageMaker container contract (stdlib only).

Routes::

    GET  /ping                              200 once the model is loaded, 503 before
    POST /invocations                       the image bytes in, the detections JSON out
    POST /endpoints/<name>/invocations      the same; the path boto3's ``sagemaker-runtime``
                                            client calls when pointed at this server with
                                            ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` / ``endpoint_url``

Requests go through the endpoint's own inference script
(:mod:`traffic_platform.detection.sagemaker_inference`: ``model_fn``, ``input_fn``,
``predict_fn``, ``output_fn``), so what runs here is what runs on SageMaker. Errors are
JSON with the status and code the ingest API gives for the same bytes: 415 unsupported
content type / empty body / not a JPEG or PNG, 422 ``image_undecodable``, 413 too large,
503 model not loaded yet, 500 model failure. The body is
``{"error": {"code", "message"}, "message": ...}``: the nested object is the platform's
error shape, the top-level ``message`` is where AWS SDK parsers look (as does the
``x-amzn-ErrorType`` header for the code).

Use :func:`serve` to run it (``traffic-platform model serve``), or :class:`ModelServer`
as a context manager in tests (port 0, a background thread, clean shutdown).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from ..domain.errors import ServiceUnavailable, TrafficPlatformError
from . import sagemaker_inference as inference

log = logging.getLogger(__name__)

#: SageMaker's containers listen on 8080 (the contract; ``SAGEMAKER_BIND_TO_PORT`` may override).
DEFAULT_PORT = 8080
#: The production variant name SageMaker reports when an endpoint has a single variant.
VARIANT = "AllTraffic"


class ModelServer:
    """The model behind an HTTP server on ``host:port`` (port 0 picks a free one).

    The model is loaded in the background when the server starts; ``/ping`` answers 503
    until it is ready. ``start(wait=True)`` (and ``with ModelServer(...)``) returns once
    the model is loaded, re-raising a load failure.

    Args:
        model_dir: the unpacked model directory handed to ``model_fn``.
        host, port: where to listen.
        endpoint_name: when given, ``/endpoints/<other name>/invocations`` answers 404,
            as SageMaker does for an unknown endpoint.
    """

    def __init__(
        self,
        model_dir: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        endpoint_name: str | None = None,
    ) -> None:
        self.model_dir = str(model_dir)
        self.endpoint_name = endpoint_name
        self.model: Any = None
        self.load_error: BaseException | None = None
        self._loaded = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._serve_thread: threading.Thread | None = None
        self._serving = False  # serve_forever runs or is about to: shutdown() will return
        self._load_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        """Load the model (blocking); ``/ping`` turns 200 when done."""
        started = time.perf_counter()
        try:
            self.model = inference.model_fn(self.model_dir)
        except BaseException as exc:
            self.load_error = exc
            log.exception("model load from %s failed", self.model_dir)
            raise
        finally:
            self._loaded.set()
        log.info("model from %s ready in %.1f s", self.model_dir, time.perf_counter() - started)

    def start(self, *, wait: bool = True, timeout: float | None = None) -> ModelServer:
        """Serve in a background thread and load the model; with ``wait``, block until loaded."""
        self._serving = True
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"model-server:{self.port}", daemon=True
        )
        self._serve_thread.start()
        self._load_thread = threading.Thread(
            target=self._load_quietly, name="model-load", daemon=True
        )
        self._load_thread.start()
        if wait:
            if not self._loaded.wait(timeout):
                self.stop()
                raise TimeoutError(
                    f"the model from {self.model_dir} did not load within {timeout} s"
                )
            if self.load_error is not None:
                self.stop()
                raise self.load_error
        return self

    def _load_quietly(self) -> None:
        try:
            self.load()
        except BaseException:  # recorded in load_error; /ping keeps answering 503
            pass

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (or SIGTERM/SIGINT via :func:`serve`)."""
        self._load_thread = threading.Thread(
            target=self._load_quietly, name="model-load", daemon=True
        )
        self._load_thread.start()
        self._serving = True
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the serving thread (safe to call twice)."""
        if self._serving:
            self._serving = False
            # shutdown() waits for serve_forever to return: never call it from a request thread.
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=10)
            self._serve_thread = None

    def __enter__(self) -> ModelServer:
        return self.start(wait=True)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (called from the handler) -----------------------------------
    def invoke(
        self, body: bytes, content_type: str | None, accept: str | None
    ) -> tuple[bytes, str]:
        """Run one invocation through the inference script; returns (body, content type)."""
        if self.model is None:
            if self.load_error is not None:
                raise ServiceUnavailable(
                    f"The model failed to load: {self.load_error}", code="model_load_failed"
                )
            raise ServiceUnavailable(
                "The model is still loading; retry shortly.", code="model_loading"
            )
        data = inference.input_fn(body, content_type)
        prediction = inference.predict_fn(data, self.model)
        return inference.output_fn(prediction, accept).encode("utf-8"), "application/json"


def _handler_for(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        model_server = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    model_server: ModelServer
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 pools its connections
    server_version = "traffic-platform-model-server"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = urlsplit(self.path).path
        if path != "/ping":
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"No route GET {path}; use GET /ping.")
            return
        server = self.model_server
        if server.ready:
            self._send(
                HTTPStatus.OK,
                json.dumps({"status": "ready", **_describe(server.model)}).encode(),
                "application/json",
            )
        elif server.load_error is not None:
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "model_load_failed",
                f"The model failed to load: {server.load_error}",
            )
        else:
            self._error(
                HTTPStatus.SERVICE_UNAVAILABLE, "model_loading", "The model is still loading."
            )

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._post()
        except Exception as exc:  # never drop a connection without an answer
            log.exception("request handling failed")
            self.close_connection = True
            self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", f"{type(exc).__name__}: {exc}"
            )

    def _post(self) -> None:
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        endpoint_path = len(parts) == 3 and parts[0] == "endpoints" and parts[2] == "invocations"
        if parts != ["invocations"] and not endpoint_path:
            self._discard_body()
            self._error(
                HTTPStatus.NOT_FOUND, "not_found", f"No route POST {path}; use POST /invocations."
            )
            return
        server = self.model_server
        if endpoint_path and server.endpoint_name is not None and parts[1] != server.endpoint_name:
            self._discard_body()
            self._error(
                HTTPStatus.NOT_FOUND,
                "endpoint_not_found",
                f"Endpoint {parts[1]!r} not found; this server is {server.endpoint_name!r}.",
            )
            return
        body = self._read_body()
        if body is None:
            return
        started = time.perf_counter()
        extra = {"x-Amzn-Invoked-Production-Variant": VARIANT} if endpoint_path else {}
        try:
            answer, ctype = server.invoke(
                body, self.headers.get("Content-Type"), self.headers.get("Accept")
            )
        except TrafficPlatformError as exc:
            status = (
                exc.http_status
                if exc.http_status < 500 or isinstance(exc, ServiceUnavailable)
                else 500
            )
            log.info("invocation refused: %s %s", status, exc.message)
            self._error(HTTPStatus(status), exc.code, exc.message, extra)
            return
        except Exception as exc:  # the model itself failed: 500, and the operator sees why
            log.exception("invocation failed")
            self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "model_failed",
                f"The model failed on this image: {type(exc).__name__}: {exc}",
                extra,
            )
            return
        log.info(
            "invocation: %d bytes in, %d bytes out, %.1f ms",
            len(body),
            len(answer),
            (time.perf_counter() - started) * 1e3,
        )
        self._send(HTTPStatus.OK, answer, ctype, extra)

    # -- helpers ---------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self.close_connection = True
            self._error(
                HTTPStatus.LENGTH_REQUIRED,
                "length_required",
                "Send the image with a Content-Length header.",
            )
            return None
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            self._error(
                HTTPStatus.BAD_REQUEST, "bad_request", f"Invalid Content-Length {length!r}."
            )
            return None
        limit = inference.settings().max_upload_bytes
        if size > limit:
            self.close_connection = True  # the unread body would corrupt the next request
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "payload_too_large",
                f"The body is {size} bytes; the limit is {limit}.",
            )
            return None
        return self.rfile.read(size)

    def _discard_body(self) -> None:
        try:
            size = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            size = 0
        if 0 < size <= inference.settings().max_upload_bytes:
            self.rfile.read(size)
        elif size:
            self.close_connection = True

    def _error(
        self, status: HTTPStatus, code: str, message: str, extra: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(
            {"error": {"code": code, "message": message}, "message": message}
        ).encode()
        self._send(status, body, "application/json", {"x-amzn-ErrorType": code, **(extra or {})})

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def _describe(model: Any) -> dict[str, str]:
    try:
        return dict(model.describe())
    except Exception:  # a model without describe() still serves
        return {}


def serve(
    model_dir: str,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    *,
    endpoint_name: str | None = None,
) -> None:
    """Serve ``model_dir`` on ``host:port`` until SIGTERM or SIGINT (what ``traffic-platform model serve`` runs)."""
    server = ModelServer(model_dir, host, port, endpoint_name=endpoint_name)

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        # The handler runs on the serving thread; stop() waits for it, so run it elsewhere.
        threading.Thread(target=server.stop, daemon=True).start()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("model server for %s on %s", model_dir, server.url)
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["DEFAULT_PORT", "ModelServer", "serve"]
