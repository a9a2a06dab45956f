"""Shared base for the fake upstream servers: a real HTTP server on 127.0.0.1:0.

The idea is Django's ``LiveServerThread``: a ``ThreadingHTTPServer`` runs
``serve_forever`` in a daemon thread, records every request, and hands each one
to ``FakeServer.handle`` which subclasses override.
"""

from __future__ import annotations

import contextlib
import json
import math
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

# Upper bound on how long a waiting handler takes to notice close().
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        """Return the path without its query string."""
        return urlsplit(self.path).path

    @property
    def bearer(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Streamed chunks are tiny; Nagle would batch them and skew latencies.
    disable_nagle_algorithm = True
    server: _HTTPServer

    @property
    def fake(self) -> FakeServer:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        self._poller: select.poll | None = None
        self.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request logs out of test and benchmark output."""

    def _dispatch(self) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        request = RecordedRequest(self.command, self.path, headers, self._read_body())
        self.fake._record(request)
        self.fake.handle(self, request)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # Responses. Every writer returns False when the client has gone away.

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> bool:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        return self._flush_headers() and self.write_raw(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> bool:
        body = json.dumps(payload).encode()
        return self.send_body(status, body, "application/json", headers)

    def start_chunked(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> bool:
        """Send headers for a ``Transfer-Encoding: chunked`` body."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        return self._flush_headers()

    @staticmethod
    def frame(data: bytes) -> bytes:
        """Encode ``data`` as one HTTP/1.1 chunk (pre-encode for speed)."""
        return b"%x\r\n%s\r\n" % (len(data), data)

    LAST_CHUNK = b"0\r\n\r\n"

    def _flush_headers(self) -> bool:
        try:
            self.end_headers()
        except ConnectionError:
            return self._lost_client()
        return True

    def write_raw(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except ConnectionError:
            return self._lost_client()
        return True

    def drop(self) -> None:
        """Close the connection once the handler returns, without more bytes."""
        self.close_connection = True

    def wait(self, seconds: float = math.inf) -> bool:
        """Pause; return False early if the client leaves or the server closes."""
        deadline = time.monotonic() + seconds
        while not self.fake.closing.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            timeout = min(remaining, _POLL_SECONDS)
            if self._readable(timeout):
                if self._client_gone():
                    return self._lost_client()
                time.sleep(timeout)  # unread request bytes, not EOF: poll can't help
        self.drop()
        return False

    def _readable(self, timeout: float) -> bool:
        if self._poller is None:
            # poll, not select: benchmarks may hold more than 1024 descriptors.
            self._poller = select.poll()
            self._poller.register(self.connection, select.POLLIN)
        return bool(self._poller.poll(timeout * 1000))

    def _client_gone(self) -> bool:
        try:
            peek = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return peek == b""

    def _lost_client(self) -> bool:
        self.drop()
        if not self.fake.closing.is_set():
            self.fake.on_client_gone()
        return False


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), FakeHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup that can stall.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError) or self.fake.closing.is_set():
            return
        super().handle_error(request, client_address)


class FakeServer:
    """A local HTTP server; subclasses implement ``handle``."""

    def __init__(self) -> None:
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self.connections_accepted = 0
        self._httpd = _HTTPServer(self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests arrived; False on timeout."""
        with self._recorded:
            return self._recorded.wait_for(lambda: len(self._requests) >= count, timeout)

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": _POLL_SECONDS},
                name=f"{type(self).__name__}:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self.closing.is_set():
            return
        self.closing.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        # Wake handlers idling on keep-alive connections so their threads end.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def handle(self, http: FakeHandler, request: RecordedRequest) -> None:
        http.send_json(404, {"error": f"no route for {request.method} {request.route}"})

    def on_client_gone(self) -> None:
        """Called when a client leaves before its response was fully written."""

    def _record(self, request: RecordedRequest) -> None:
        with self._recorded:
            self._requests.append(request)
            self._recorded.notify_all()

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
            self.connections_accepted += 1

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
