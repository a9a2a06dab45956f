"""A reverse proxy that cuts idle responses, like nginx in front of the app with its default timeouts.

nginx's `proxy_read_timeout` (60 s by default) closes the connection when the app sends nothing for that long
(nginx docs, ngx_http_proxy_module: "the timeout is set only between two successive read operations"). This
forwards bytes both ways between a client and `target` on 127.0.0.1 and closes both sides when the target has
sent nothing for `idle` seconds, so a test can check that keep-alives keep a long silent reply alive.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit


class IdleCuttingProxy:
    def __init__(self, target_url: str, *, idle: float) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.idle = idle
        self.cuts = 0  # connections closed for idleness
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closed = threading.Event()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.target) as upstream:
            peers = {client: upstream, upstream: client}
            heard = time.monotonic()  # when the app last sent something
            while not self._closed.is_set():
                left = self.idle - (time.monotonic() - heard)
                if left <= 0:
                    self.cuts += 1  # the app said nothing for `idle` seconds: cut, as nginx does
                    return
                readable, _, _ = select.select(list(peers), [], [], left)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        heard = time.monotonic()
                    with contextlib.suppress(OSError):
                        peers[sock].sendall(data)
