"""Site-wide response policies."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import sync_and_async_middleware


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
