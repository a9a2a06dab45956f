from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.templatetags.static import static
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.models import Theme, User
from project.celery import app as celery_app
from project.errors import DATABASE_RETRY_SECONDS, DATABASE_UNAVAILABLE, database_unavailable

logger = logging.getLogger(__name__)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.warning("healthz: database check failed", exc_info=True)
        return False


def _broker_ok() -> bool:
    try:
        with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        logger.warning("healthz: broker check failed", exc_info=True)
        return False


def _checks() -> dict[str, bool]:
    try:
        return {"database": _database_ok(), "broker": _broker_ok()}
    finally:
        close_old_connections()


# The health check's own threads: on the loop's default pool it queued behind reply saves (a hostile upstream's
# 1M-character replies being counted and saved held /healthz for 2.6 s in bench/bench_provider.py).
_checks_thread = ThreadPoolExecutor(2, "healthz")


@login_not_required
@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    checks = await sync_to_async(_checks, thread_sensitive=False, executor=_checks_thread)()
    status = 200 if all(checks.values()) else 503
    return JsonResponse({"status": "ok" if status == 200 else "error", **checks}, status=status)


@login_not_required
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers that ignore <link rel="icon"> ask for /favicon.ico; send them to the SVG."""
    return redirect(static("favicon.svg"), permanent=True)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(request, "403_csrf.html", status=403)


@require_POST
def theme_set(request: HttpRequest) -> HttpResponse:
    """Remember the person's colour theme (system, light or dark); answer 204 to fetch, else go back."""
    theme = request.POST.get("theme", "")
    if theme not in Theme.values:
        return JsonResponse({"error": "Unknown theme."}, status=400)
    assert isinstance(request.user, User)  # LoginRequiredMiddleware let only a signed-in person through
    request.user.theme = theme
    request.user.save(update_fields=["theme"])
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"theme": theme, "next": request.user.next_theme})
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = "/"
    return redirect(back)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database outage answers 503 and says so (see project.errors.database_unavailable); any other
    error gets the plain 500 page. It renders without the request's context, which would ask the database again."""
    if not database_unavailable():
        return defaults.server_error(request)
    message = str(DATABASE_UNAVAILABLE)
    if request.path.startswith("/v1/"):
        error = {"message": message, "type": "server_error", "code": "database_unavailable"}
        response: HttpResponse = JsonResponse({"error": error}, status=503)
    elif any(kind in request.headers.get("Accept", "") for kind in ("application/json", "text/event-stream")):
        response = JsonResponse({"error": message}, status=503)  # the chat page's fetch shows it in its alert
    else:
        response = HttpResponse(loader.get_template("503.html").render({"message": message}), status=503)
    response["Retry-After"] = str(DATABASE_RETRY_SECONDS)
    return response
