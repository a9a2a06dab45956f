"""The ASGI application: /v1/ (the bearer-only API for programs) and /healthz on a handler without middleware, the
rest on Django's usual one."""

from __future__ import annotations

import os
import threading

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

site_application = get_asgi_application()

from chat.relay import serve_replies_here  # noqa: E402  (needs the apps that get_asgi_application set up)
from chat.tokencount import warm  # noqa: E402

# Off the request path: tiktoken's first load takes seconds, and a reply without provider usage needs it.
threading.Thread(target=warm, name="tiktoken-warm", daemon=True).start()


class BearerOnlyHandler(ASGIHandler):
    """Django's ASGI handler with no middleware at all, for /v1/.

    Its views take only a bearer: sessions, CSRF, log-in redirects and messages must never apply there, so not
    loading that middleware also makes "a cookie never authenticates /v1/" structural. And in an async handler each
    MiddlewareMixin middleware runs its hooks through sync_to_async, two thread hops apiece per request: in a
    py-spy profile of API streams they were a quarter of the process's CPU.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async if is_async else self._get_response
        )


api_application = BearerOnlyHandler()


async def application(scope: dict, receive, send) -> None:
    # /healthz too: a probe needs no session, and the site's middleware would ask the database for the visitor
    # before the view could report, as JSON, that the database is down.
    if scope["type"] == "http" and (scope["path"].startswith("/v1/") or scope["path"] == "/healthz"):
        await api_application(scope, receive, send)
    else:
        serve_replies_here()  # replies started here run on this server's loop, which outlives the request
        await site_application(scope, receive, send)
