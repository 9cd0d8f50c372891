"""The stdlib HTTP server the platform served with until it moved to uvicorn: the baseline of
`bench/ingest.py --compare-servers` and the target of its handler what-ifs. Not for serving:
a thread per connection, no timeouts, `Content-Length` trusted, chunked bodies ignored."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from traffic_platform.domain.errors import PayloadTooLarge
from traffic_platform.ingest.api import Api, Request, Response

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: StdlibApiServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    # Headers and body go out as two writes; without TCP_NODELAY the body waits ~40 ms
    # for the client's delayed ACK (measured in bench/ingest.py).
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        limit = self.server.max_body
        if length > limit:
            # Refuse without reading the body; close so the unread bytes don't poison the connection.
            self.close_connection = True
            self._send(Response.error(PayloadTooLarge(f"The upload is {length / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB.", code="upload_too_large")))
            return
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        self._send(self.server.api.handle(request))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        if response.after_send is not None:  # as the uvicorn adapter does: after the answer
            self.wfile.flush()
            response.after_send()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, fmt: str, *args) -> None:  # route access logs through logging
        log.debug("%s %s", self.address_string(), fmt % args)


class StdlibApiServer(ThreadingHTTPServer):
    """Serves an :class:`Api` on ``host:port`` (port 0 picks a free one); usable as a context manager."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0, *, max_body: int = 25 * 1024 * 1024):
        super().__init__((host, port), _Handler)
        self.api = api
        self.max_body = max_body
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StdlibApiServer:
        self._thread = threading.Thread(target=self.serve_forever, name="api-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> StdlibApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
