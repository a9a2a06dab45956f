"""Site-wide response policies."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import sync_and_async_middleware


class OneThreadHop:
    """Make Django run the whole middleware stack in one thread hop per request; keep it last in MIDDLEWARE.

    Under ASGI the innermost handler is async, so every MiddlewareMixin above it picks async mode and runs each
    sync hook in its own sync_to_async hop (about 18 per chat request). A sync-only middleware at the bottom makes
    each middleware above it pick sync mode instead, and Django adapts the stack once at the top
    (django/core/handlers/base.py `load_middleware`). Async views still run on the event loop below it.
    project.asgi.SiteHandler, which serves the site, builds the stack synchronously anyway; this keeps Django's
    stock async handler (the test AsyncClient) to one hop too.
    """

    sync_capable, async_capable = True, False

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


def _mark(response: HttpResponse) -> HttpResponse:
    if not response.has_header("Cache-Control"):
        add_never_cache_headers(response)
    return response


@sync_and_async_middleware
def no_store(get_response: Callable) -> Callable:
    """Mark every page and export `Cache-Control: no-store` unless a view chose its own caching.

    Pages here are private (conversations, key status, usage exports) or carry a CSRF token; static files are
    answered before this middleware by ServeStatic, with their own long-lived headers.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return _mark(await get_response(request))

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        return _mark(get_response(request))

    return sync_middleware


def _without_nul(request: HttpRequest) -> None:
    if "%00" in request.META.get("QUERY_STRING", ""):
        cleaned = QueryDict(mutable=True)
        for key, values in request.GET.lists():
            cleaned.setlist(key.replace("\x00", ""), [value.replace("\x00", "") for value in values])
        cleaned._mutable = False
        request.GET = cleaned  # type: ignore[assignment]  # immutable again, as Django's own


@sync_and_async_middleware
def nul_free_query(get_response: Callable) -> Callable:
    """Drop NUL characters from query parameters before any view or filter reads them.

    PostgreSQL text cannot hold NUL, so a search or filter term with one (`?q=a%00b`) made the query fail with
    DataError: a 500 on the chat's search, the people list and the admin's searches. Nothing stored can contain
    NUL, so dropping it changes no result. (Form fields already refuse NUL: ProhibitNullCharactersValidator.)
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            _without_nul(request)
            return await get_response(request)

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        _without_nul(request)
        return get_response(request)

    return sync_middleware
