"""Static files are answered on the event loop before the site's middleware: no database, no thread for them, and
the synchronous middleware stack below stays in one thread hop per page."""

from __future__ import annotations

import pytest
import requests
from django.templatetags.static import static

from tests.request_cost import request_cost

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_static_file_is_served_with_its_safety_headers_and_no_database(asgi_server):
    url = asgi_server.url + static("chat/render.js")
    with request_cost() as recorder:
        response = requests.get(url, timeout=10)
    assert response.status_code == 200 and "javascript" in response.headers["Content-Type"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert recorder.count("sql") == 0 and recorder.count("redis") == 0
    assert recorder.count("hop") <= 1  # Django's request_started receivers; nothing of the site's stack


def test_a_page_runs_the_whole_middleware_stack_in_one_hop(asgi_server):
    with request_cost() as recorder:
        response = requests.get(asgi_server.url + "/accounts/login/", timeout=10)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["X-Frame-Options"] == "DENY"
    hops = [e.detail for e in recorder.events if e.kind == "hop"]
    assert hops.count("SiteHandler.load_middleware.<locals>.run") == 1
    assert not [hop for hop in hops if "Middleware" in hop], hops  # no middleware adapted hook by hook
