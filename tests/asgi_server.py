"""Serve the ASGI app with uvicorn in a background thread, the way Django's LiveServerThread serves WSGI."""

from __future__ import annotations

import asyncio
import socket
import threading

import uvicorn
from django.conf import settings

from project.asgi import application
from project.run import proxy_options


class AsgiLiveServer:
    """`app` (default: the project's application, scanned for secrets) under uvicorn; `options` go to its Config."""

    def __init__(self, app=None, **options) -> None:
        from tests.secret_scan import recording_app  # after pytest registered it as a plugin

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app or recording_app(application),  # what uvicorn serves in production (/v1/ dispatch included), scanned
            log_level="warning",
            lifespan="off",
            access_log=False,
            **proxy_options(settings.FORWARDED_ALLOW_IPS),  # as `make run` serves it
            **options,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> AsgiLiveServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn failed to start")
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
