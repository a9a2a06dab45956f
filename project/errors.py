"""Error reports and log lines that cannot carry a secret, with DEBUG on or off.

Django's SafeExceptionReporterFilter cleanses only what is marked (`sensitive_variables`,
`sensitive_post_parameters`) and only while DEBUG is off; a credential can sit in any frame's locals
(a `Bearer`, a token response, a request body). This filter is always on and shows frame variables only
when they are plain numbers, booleans, dates or None.
"""

from __future__ import annotations

import datetime
import logging
import logging.config
import re
import sys
import uuid
from decimal import Decimal
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

DATABASE_UNAVAILABLE = gettext_lazy(
    "The database is unavailable for a moment. Nothing was saved; try again in a minute."
)
DATABASE_RETRY_SECONDS = 30


def database_unavailable() -> bool:
    """Whether the exception being handled is the database's own "cannot reach me now".

    OperationalError and InterfaceError: a refused or ended connection, a pool that timed out, a locked SQLite
    file. Nothing was written (the transaction did not commit), so the person may simply try again.
    """
    return isinstance(sys.exc_info()[1], OperationalError | InterfaceError)


_HARMLESS = (type(None), bool, int, float, Decimal, datetime.date, datetime.time, datetime.timedelta, uuid.UUID)
_SECRET_SHAPES = re.compile(
    r"""(?ix)
    (?P<bearer>bearer\s+)[^\s"',]+                                          # Authorization: Bearer ...
    | (?P<name>(?:api[_-]?key|client[_-]?secret|(?:refresh|access|id)[_-]?token|password\d?|secret|[?&]code)
        ["']?\s*[:=]\s*["']?)[^\s"'&,;}]+                                  # name=value, "name": "value"
    | \bsk-[\w-]{12,}                                                       # OpenAI-style keys
    | (?P<path>/password/reset/key/)[^\s/"']+                               # live reset links
    | (?P<scheme>\w+://)[^\s/@:]*:[^\s/@]+@                                 # passwords in URLs
    """
)


def redact(text: str) -> str:
    """Replace the secret-shaped parts of text (bearer tokens, name=value pairs, sk- keys, reset keys) with ***."""

    def keep_prefix(match: re.Match) -> str:
        prefix = next((group for group in match.group("bearer", "name", "path", "scheme") if group), "")
        return f"{prefix}***" + ("@" if match.group("scheme") else "")

    return _SECRET_SHAPES.sub(keep_prefix, text)


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record's message and traceback text in place (see `redact`)."""
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: logging reports it when a handler emits the record
        return
    cleaned = redact(message)
    if cleaned != message and isinstance(record.args, tuple):
        # Redact each argument first: some formatters read record.args (uvicorn's access log unpacks five of them).
        record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        message = record.getMessage()
        cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()
    if record.exc_info:
        record.exc_text = redact(record.exc_text or logging.Formatter().formatException(record.exc_info))


class RedactSecrets(logging.Filter):
    """Logging filter: the message and any traceback text go out redacted (see `redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def configure_logging(config: dict[str, Any]) -> None:
    """LOGGING_CONFIG: Django's dictConfig, and every record redacted as it is made, whichever handler writes it.

    A filter on our own handler is not enough: Django's default handlers (a second console copy of each `django.*`
    line while DEBUG is on, the error email to ADMINS), uvicorn's and Celery's own handlers write the record
    before or beside ours, and the first to format a traceback fixed its text (and with it the exception's
    message) for all the others.
    """
    logging.config.dictConfig(config)
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        redact_record(record)
        return record

    redacting_factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


class SecretSafeReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|COOKIE|SESSION|URL|LOCATION|DSN|DATABASES|CACHES", re.I
    )

    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def get_post_parameters(self, request: HttpRequest | None) -> dict[str, str]:
        if request is None:
            return {}
        return dict.fromkeys(request.POST, self.cleansed_substitute)

    def get_safe_cookies(self, request: HttpRequest) -> dict[str, str]:
        return dict.fromkeys(getattr(request, "COOKIES", {}), self.cleansed_substitute)

    def get_safe_request_meta(self, request: HttpRequest) -> dict[str, Any]:
        meta = super().get_safe_request_meta(request)
        for name in ("QUERY_STRING", "REQUEST_URI", "RAW_URI"):
            if meta.get(name):
                meta[name] = self.cleansed_substitute
        return meta

    # Django only iterates the (name, value) pairs; a list serves as well as the ItemsView the stubs name.
    def get_traceback_frame_variables(  # type: ignore[override]
        self, request: HttpRequest | None, tb_frame: Any
    ) -> list[tuple[str, Any]]:
        return [(name, self._shown(value)) for name, value in tb_frame.f_locals.items()]

    def _shown(self, value: Any) -> Any:
        if isinstance(value, _HARMLESS):
            return value
        return f"<{type(value).__qualname__}: hidden>"


class SecretSafeExceptionReporter(ExceptionReporter):
    """Also hides query strings (an OIDC `code`, a `token`), which Django shows unfiltered, and redacts the
    exception's message."""

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        if self.request is not None:
            data["request_GET_items"] = [(name, self.filter.cleansed_substitute) for name in self.request.GET]
            data["request_insecure_uri"] = self.request.path
        # A library's message may quote what it was given (h11 quotes an illegal header's value): the exception's,
        # and each chained one's that the traceback shows.
        for name in ("exception_value", "exception_notes"):
            if data.get(name):
                data[name] = redact(str(data[name]))
        for frame in data.get("frames", ()):
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = redact(str(frame["exc_cause"]))
        return data
