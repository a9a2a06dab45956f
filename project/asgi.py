"""The ASGI application: /v1/ (the bearer-only API for programs) and /healthz on a handler without middleware, the
rest on `SiteHandler`: Django's middleware stack run synchronously, in one hop to a bounded pool of threads."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, suppress

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.db import close_old_connections, connection
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix
from servestatic.middleware import ServeStaticMiddleware

try:
    from uvicorn.protocols.http import httptools_impl
except ImportError:  # uvicorn without httptools: events are sent through `send` only
    httptools_impl = None  # type: ignore[assignment]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup(set_prefix=False)


from chat.sse import EventStreamResponse  # noqa: E402  (needs the apps that django.setup loads)


def direct_writer(send) -> Callable[[bytes], bool] | None:
    """A synchronous `write(data) -> bool` of response body bytes for uvicorn's httptools protocol, once the
    response has started with chunked encoding, else None (any other server, or an HTTP/1.0 client).

    It does what uvicorn's `send` does for a body message (chunk framing, nothing once the client has gone),
    without a coroutine: a relay can write from a connection's callback (tokens.http1.ResponseBody.pushed). It
    returns False when the client has gone or uvicorn's flow control has paused writing; the caller then awaits
    `send` again, which waits for the client to drain.

    An ASGI wrapper between uvicorn and the app may let writes pass it: it names the `send` it wraps as its
    `__wrapped__` (functools.wraps' convention) and takes each body part written past it in `watch_body(data)`
    (the tests' secret scan reads every body so).
    """
    watch = getattr(send, "watch_body", None)
    cycle = getattr(getattr(send, "__wrapped__", send), "__self__", None)
    if (
        httptools_impl is None
        or not isinstance(cycle, httptools_impl.RequestResponseCycle)
        or not cycle.response_started
        or cycle.response_complete
        or not cycle.chunked_encoding
    ):
        return None
    transport, flow = cycle.transport, cycle.flow

    def write(data: bytes) -> bool:
        if cycle.disconnected:
            return False
        if watch is not None:
            watch(data)
        transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return not flow.write_paused

    return write


class EventStreamSender(ASGIHandler):
    """Django's ASGI handler, with the request signals sent on the event loop and an event stream's parts sent as
    they come.

    Django's handle() sends request_started with `asend` and closes the response through sync_to_async: two thread
    hops per request, both thread-sensitive, so without Django's per-request ThreadSensitiveContext (see the
    subclasses) every request of the process queued for one shared thread twice. Their receivers (Django's own:
    reset_queries, close_old_connections, close_caches, reset_urlconf) act on the calling thread's connections,
    caches and URLconf, and the event loop's thread holds no database connection (Django refuses one there), so
    here they run on the loop, in microseconds. Django's send_response re-cuts every part of a streaming response
    into pieces of at most 64 KB through a generator (chunk_bytes); an event is never that large, and each token
    of a reply is one part.
    """

    async def handle(self, scope: dict, receive, send) -> None:
        # django/core/handlers/asgi.py ASGIHandler.handle, with the two hops above run in place.
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        created = self.create_request(scope, body_file)
        if created[0] is None:
            error_response = created[1]
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return
        request = created[0]

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            with suppress(asyncio.CancelledError):  # the client left while the response was being sent
                await self.send_response(response, send)
            return response

        # The disconnect listener first: it raises nothing unexpected that could keep the view from being cancelled.
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request())
        tasks = [listening, processing]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # a view may handle its cancellation
                with suppress(asyncio.CancelledError):
                    await task
        try:
            response = processing.result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()
        body_file.close()

    async def send_response(self, response: HttpResponseBase, send) -> None:
        if not isinstance(response, EventStreamResponse):
            await super().send_response(response, send)
            return
        headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
        headers += [(b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in response.cookies.values()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        if response.outlet is not None:
            response.outlet.write = direct_writer(send)
        async with aclosing(aiter(response)) as content:  # type: ignore[type-var]  # an async generator
            async for part in content:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body"})


class SiteHandler(EventStreamSender):
    """Django's ASGI handler for the site, without a thread per request.

    Django's handler runs each request in a ThreadSensitiveContext, which gives it a thread of its own until the
    response ends: for a chat reply streamed for a minute, an idle thread per open stream (115 threads at 100
    streams in the bench kit, and a thread started and stopped per request). Here the middleware stack is built
    synchronously, as under WSGI, and each request runs it, its view middleware and its view in one hop to a pool
    of WEB_THREADS threads (an async view runs on the event loop from there, and its thread-sensitive calls come
    back to that thread). The thread is free again as soon as the response is returned, and hands its database
    connection back then; streaming happens on the event loop.

    Static files are answered before that hop, on the event loop, by ServeStatic's middleware (async only): inside
    the synchronous stack it made Django adapt the stack around it, and every page and chat send took five more
    thread hops (SecurityMiddleware's two hooks, the stack below it, the way back to the loop and out again).
    """

    # BaseHandler's private attribute replaced here (django-stubs leaves it out).
    _middleware_chain: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain, threads = self._middleware_chain, ThreadPoolExecutor(settings.WEB_THREADS, "web")

        def run(request):
            try:
                return chain(request)
            finally:
                if not connection.in_atomic_block:
                    close_old_connections()

        site = sync_to_async(run, thread_sensitive=False, executor=threads)
        self._middleware_chain = convert_exception_to_response(ServeStaticMiddleware(site))

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


site_application = SiteHandler()

from chat.relay import serve_replies_here  # noqa: E402  (needs the apps that get_asgi_application set up)
from chat.tokencount import warm  # noqa: E402

# Off the request path: tiktoken's first load takes seconds, and a reply without provider usage needs it.
threading.Thread(target=warm, name="tiktoken-warm", daemon=True).start()


class BearerOnlyHandler(EventStreamSender):
    """Django's ASGI handler with no middleware at all, for /v1/.

    Its views take only a bearer: sessions, CSRF, log-in redirects and messages must never apply there, so not
    loading that middleware also makes "a cookie never authenticates /v1/" structural. And in an async handler each
    MiddlewareMixin middleware runs its hooks through sync_to_async, two thread hops apiece per request: in a
    py-spy profile of API streams they were a quarter of the process's CPU.
    """

    # BaseHandler's private attributes and methods used here (django-stubs leaves them out).
    _middleware_chain: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
    _view_middleware: list[Callable[..., HttpResponseBase | None]]
    _template_response_middleware: list[Callable[..., HttpResponseBase]]
    _exception_middleware: list[Callable[..., HttpResponseBase | None]]
    _get_response: Callable[[HttpRequest], HttpResponseBase]
    _get_response_async: Callable[[HttpRequest], Awaitable[HttpResponseBase]]

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        self._middleware_chain = convert_exception_to_response(
            self._get_response_async if is_async else self._get_response
        )

    async def __call__(self, scope: dict, receive, send) -> None:
        # Without Django's ThreadSensitiveContext: it started and joined a thread per request, and nothing here
        # needs one (the views run their database work in project.threads.in_thread, which hands the connection back).
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


api_application = BearerOnlyHandler()


async def application(scope: dict, receive, send) -> None:
    # /healthz too: a probe needs no session, and the site's middleware would ask the database for the visitor
    # before the view could report, as JSON, that the database is down.
    if scope["type"] == "http" and (scope["path"].startswith("/v1/") or scope["path"] == "/healthz"):
        await api_application(scope, receive, send)
    else:
        serve_replies_here()  # replies started here run on this server's loop, which outlives the request
        await site_application(scope, receive, send)
