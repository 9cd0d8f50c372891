"""The local HTTP server (`traffic-platform serve`): uvicorn behind a small ASGI adapter over :class:`Api`.

uvicorn (h11 parser, asyncio) holds the connections; the event loop never runs the model:
:meth:`Api.handle` runs in a thread pool of ``max_concurrency`` threads. What uvicorn does
not do by itself is added here, so that a misbehaving client costs a bounded amount and
every malformed request gets a readable JSON error (``{"error": {"code", "message"}}``):

* **header timeout** (``header_timeout_s``): a request's line and headers must arrive
  within it, counted from the connection's (or the previous answer's) first byte;
  uvicorn's keep-alive timer is re-armed by every byte, so a client sending one byte every
  few seconds (slowloris) would otherwise hold its connection forever -> 408
  ``header_timeout``. An idle keep-alive connection closes after ``keep_alive_s``.
* **body timeout** (``body_timeout_s``): the whole body within it -> 408 ``body_timeout``;
  a client that closes before ``Content-Length`` bytes arrived gets nothing and nothing is
  stored (the request never reaches the :class:`Api`).
* **limits**: ``Content-Length`` over ``max_body`` -> 413 ``upload_too_large`` answered
  before any body byte is read; a chunked body is counted as it arrives. Headers larger
  than 64 KiB -> 431 ``headers_too_large``. Malformed framing (``Content-Length: -1`` or
  ``abc``, an unsupported ``Transfer-Encoding``) -> 400 ``bad_content_length`` /
  ``bad_transfer_encoding`` / ``bad_http_request``.
* **concurrency**: more than ``max_concurrency`` requests on ``/v1/*`` at once -> 503
  ``server_busy`` with ``Retry-After``; more than ``max_connections`` open connections ->
  the same answer on the new connection. (uvicorn's own ``limit_concurrency`` answers
  text/plain without ``Retry-After`` and counts idle keep-alive connections, so it is not
  used.) ``/healthz``, ``/readyz`` and ``/metrics`` are never refused.
* **lingering close**: when the server closes a connection whose request body is still
  arriving (a 413, a 503, a 408), it first sends its answer and a FIN, then reads and
  discards what the client still sends for up to ``LINGER_S``: closing at once would make
  the kernel answer the unread bytes with a reset, which destroys the answer before the
  client reads it.

Every accepted socket gets TCP_NODELAY (uvloop, the loop uvicorn picks when installed, sets it
anyway; measured with the plain asyncio loop, a POST answer waited 44 ms for the client's
delayed ACK), so an answer is never held back by Nagle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .api import Api, Request, Response, route_name

log = logging.getLogger(__name__)

#: How long a closing connection keeps reading (and discarding) a body still arriving.
LINGER_S = 5.0
#: Largest request line + headers (h11's buffer limit); beyond it -> 431.
MAX_HEADER_BYTES = 64 * 1024
#: What a busy answer tells the client to wait, in seconds.
RETRY_AFTER_S = 1
_UNBOUNDED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def error_bytes(status: int, code: str, message: str, extra_headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 error answer with ``Connection: close``, for the protocol layer."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    reason = h11_reason(status)
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def h11_reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def busy_error(what: str) -> tuple[int, str, str, dict[str, str]]:
    return 503, "server_busy", f"The server is handling as many {what} as it allows; retry in {RETRY_AFTER_S} s.", {"Retry-After": str(RETRY_AFTER_S)}


def _framing_error(exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, message) for an h11 parse error (the request could not be framed)."""
    text = str(exc) if exc else "malformed request"
    hint = getattr(exc, "error_status_hint", 400)
    if hint == 431 or "buffer too long" in text:
        return 431, "headers_too_large", f"The request line and headers exceed {MAX_HEADER_BYTES // 1024} KiB."
    if "Content-Length" in text:
        return 400, "bad_content_length", f"Content-Length must be one non-negative integer ({text})."
    if "Transfer-Encoding" in text or hint == 501:
        return 400, "bad_transfer_encoding", f"Only Transfer-Encoding: chunked is supported ({text})."
    return 400, "bad_http_request", f"The request is not valid HTTP/1.1 ({text})."


class _LingeringTransport:
    """The connection's transport, except that closing it while the client is still sending
    sends the answer and a FIN first, discards what keeps arriving, and closes after ``LINGER_S``."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol):
        self._transport = transport
        self._protocol = protocol
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport.is_closing() or not self._protocol.client_still_sending():
            transport.close()
            return
        try:
            transport.write_eof()  # after the buffered answer
        except (OSError, RuntimeError, NotImplementedError):
            transport.close()
            return
        self._protocol.discarding = True
        transport.resume_reading()
        self._protocol.loop.call_later(LINGER_S, transport.close)


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a header timeout, a connection cap, JSON framing errors
    and a lingering close."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.discarding = False
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # uvloop sets it already, asyncio not on every path: answers must not wait ~40 ms for a delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            status, code, message, headers = busy_error("connections")
            self._refused = True  # its request is on the way: linger so that it reads the answer
            self._answer_and_close(error_bytes(status, code, message, headers))
            return
        self._arm_header_timer()

    def client_still_sending(self) -> bool:
        """Whether the client may still be sending (a body, or a request we did not finish reading)."""
        state = self.conn.their_state
        return self._refused or state in (h11.SEND_BODY, h11.ERROR) or (state is h11.IDLE and bool(self.conn.trailing_data[0]))

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm_header_timer()
        elif self.conn.their_state is h11.IDLE:  # a request line/headers not complete yet
            self._arm_header_timer()
        else:
            self._disarm_header_timer()

    def eof_received(self) -> bool | None:
        if self.discarding:
            self.transport._transport.close()  # type: ignore[attr-defined]
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self._unset_keepalive_if_required()
        message = f"The request line and headers did not arrive within {self.header_timeout_s:g} s."
        # A connection that never sent a byte just closes; one mid-headers gets an answer.
        pending = bool(self.conn.trailing_data[0])
        self._answer_and_close(error_bytes(408, "header_timeout", message) if pending else b"")

    def _answer_and_close(self, raw: bytes) -> None:
        if raw:
            self.transport.write(raw)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        exc = sys.exc_info()[1]  # called from handle_events' `except h11.RemoteProtocolError`
        status, code, message = _framing_error(exc)
        log.info("malformed request: %s", exc)
        self._answer_and_close(error_bytes(status, code, message))

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            super().timeout_keep_alive_handler()


class _Disconnected(Exception):
    """The client went away before its body was complete."""


class AsgiAdapter:
    """ASGI app: reads the body with limits, runs :meth:`Api.handle` in a thread pool."""

    def __init__(self, api: Api, *, max_body: int, max_concurrency: int, body_timeout_s: float):
        self.api = api
        self.max_body = max_body
        self.max_concurrency = max_concurrency
        self.body_timeout_s = body_timeout_s
        self.in_flight = 0
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency + len(_UNBOUNDED_PATHS), thread_name_prefix="api")

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        path = scope["path"]
        bounded = path not in _UNBOUNDED_PATHS
        if bounded and self.in_flight >= self.max_concurrency:
            status, code, message, headers = busy_error("requests")
            await self._send_error(scope, send, status, code, message, headers, close=True)
            return
        self.in_flight += bounded
        try:
            await self._serve(scope, receive, send)
        finally:
            self.in_flight -= bounded

    async def _serve(self, scope: dict, receive, send) -> None:
        # h11 bounds headers that arrive in pieces; ones that arrive in one read are parsed whole.
        if sum(len(k) + len(v) + 4 for k, v in scope["headers"]) + len(scope["raw_path"]) + len(scope["query_string"]) > MAX_HEADER_BYTES:
            status, code, message = _framing_error(h11.RemoteProtocolError("Receive buffer too long", error_status_hint=431))
            await self._send_error(scope, send, status, code, message, close=True)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = int(headers.get("content-length") or 0)  # h11 has checked it is a non-negative integer
        if length > self.max_body:
            message = f"The upload is {length / 1e6:.1f} MB; the limit is {self.max_body / 1e6:.1f} MB."
            await self._send_error(scope, send, 413, "upload_too_large", message, close=True)
            return
        try:
            body = await self._read_body(receive)
        except _Disconnected:
            log.info("client left before its body was complete: %s %s", scope["method"], path_of(scope))
            return
        except TimeoutError:
            message = f"The body did not arrive within {self.body_timeout_s:g} s; nothing was stored."
            await self._send_error(scope, send, 408, "body_timeout", message, close=True)
            return
        except _TooLarge:
            message = f"The upload is over the limit of {self.max_body / 1e6:.1f} MB."
            await self._send_error(scope, send, 413, "upload_too_large", message, close=True)
            return
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
            headers=headers,
            body=body,
        )
        response = await asyncio.get_running_loop().run_in_executor(self.pool, self.api.handle, request)
        try:
            await self._send(send, response)
            await asyncio.sleep(0)  # uvloop queues writes until the loop turns: let them go out first
        finally:
            if response.after_send is not None:
                response.after_send()

    async def _read_body(self, receive) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _send(send, response: Response, close: bool = False) -> None:
        headers = [(b"Content-Type", response.content_type.encode("latin-1")), (b"Content-Length", str(len(response.body)).encode())]
        headers += [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response.headers.items()]
        if close:
            headers.append((b"Connection", b"close"))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

    async def _send_error(self, scope: dict, send, status: int, code: str, message: str, headers: dict[str, str] | None = None, close: bool = False) -> None:
        """An answer of the adapter itself (the request never reached the Api); counted in /metrics."""
        self.api.metrics.observe(route_name(scope["path"]), status, code, 0.0)
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        await self._send(send, Response(status, body, headers=dict(headers or {})), close=close)


class _TooLarge(Exception):
    pass


def path_of(scope: dict) -> str:
    return scope.get("path", "?")


class ApiServer:
    """Serves an :class:`Api` on ``host:port`` (port 0 picks a free one) with uvicorn, in a
    background thread; usable as a context manager.

    ``max_body``: largest upload (413 beyond); ``max_concurrency``: requests on ``/v1/*``
    handled at once (503 + ``Retry-After`` beyond); ``header_timeout_s`` / ``body_timeout_s``
    / ``keep_alive_s``: see the module docstring; ``max_connections``: open connections.
    """

    def __init__(
        self,
        api: Api,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_body: int = 25 * 1024 * 1024,
        max_concurrency: int = 32,
        header_timeout_s: float = 10.0,
        body_timeout_s: float = 60.0,
        keep_alive_s: float = 5.0,
        max_connections: int = 1000,
    ):
        self.api = api
        self.max_body = max_body
        self.app = AsgiAdapter(api, max_body=max_body, max_concurrency=max_concurrency, body_timeout_s=body_timeout_s)
        protocol = type("ApiProtocol", (_Protocol,), {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
        self._socket = socket.create_server((host, port), reuse_port=False, backlog=2048)
        self.server_address = self._socket.getsockname()
        self.config = uvicorn.Config(
            self.app,
            http=protocol,
            lifespan="off",
            timeout_keep_alive=keep_alive_s,
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            access_log=False,
            log_config=None,
            server_header=False,
        )
        self._server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, name="api-server", daemon=True)
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            threading.Event().wait(0.01)
        if not self._server.started:
            raise RuntimeError(f"the HTTP server on {self.url} did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._socket.close()
        self.app.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
