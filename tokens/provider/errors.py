"""One error taxonomy for every call to an OpenAI-compatible provider, sync or streamed.

Status-to-kind mapping follows the openai SDK's table (`openai._client._make_status_error`)
extended with what real providers send: 402 for spent credit (OpenRouter), errors inside
a 200 stream with a numeric `code` (OpenRouter) or a string one (OpenAI, vLLM), and
context-length refusals worded many ways (OpenAI, vLLM, Ollama, llama.cpp, Mistral).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

PROVIDER_TEXT_CHARS = 300
# A secret-looking run of characters in a provider's message is masked before anyone sees it.
_SECRETISH = re.compile(r"\b(sk|rk|pk|ak|key)[-_][A-Za-z0-9_\-]{12,}", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]+")
_HTML_TITLE = re.compile(rb"<title[^>]*>\s*([^<]{1,300}?)\s*</title>", re.IGNORECASE)
# Go durations as OpenAI and Groq send them in x-ratelimit-reset-*: "1s", "20ms", "6m0s", "2m59.56s", "1h2m3s".
_DURATION = re.compile(r"^\s*(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)(ms|s)?)?\s*$")
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,60}$")
_CONTEXT = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long|"
    r"reduce the length|exceeds? the (model'?s )?(max|context)|input is too long|"
    r"tokens? exceed|longer than the model",
    re.IGNORECASE,
)
_STRING_CODES = {
    "invalid_api_key": 401,
    "unauthorized": 401,
    "insufficient_quota": 429,
    "rate_limit_exceeded": 429,
    "context_length_exceeded": 400,
    "model_not_found": 404,
    "server_error": 500,
    "service_unavailable": 503,
}
# A re-send is safe only when the provider certainly did not start: these answers say it did not.
RESENDABLE_STATUSES = frozenset({502, 503, 504})
NEVER_RETRIED = frozenset({401, 402, 403, 429})

# ProviderError.kind as staff read it in the usage log.
KIND_LABELS = {
    "auth": gettext_lazy("Credential rejected"),
    "forbidden": gettext_lazy("Forbidden"),
    "payment": gettext_lazy("Payment required"),
    "quota": gettext_lazy("Out of quota"),
    "rate_limit": gettext_lazy("Rate limited"),
    "not_found": gettext_lazy("Model not found"),
    "context_length": gettext_lazy("Too long for the model"),
    "unsupported_param": gettext_lazy("Unsupported parameter"),
    "bad_request": gettext_lazy("Bad request"),
    "server": gettext_lazy("Provider error"),
    "timeout": gettext_lazy("Timed out"),
    "connection": gettext_lazy("Connection failed"),
    "unsafe_url": gettext_lazy("Address refused"),
    "too_large": gettext_lazy("Too large"),
    "bad_response": gettext_lazy("Unreadable answer"),
    "cut": gettext_lazy("Cut off"),
    "internal": gettext_lazy("Our error"),
}


class ProviderError(Exception):
    """A failed provider call, described for a person.

    kind: auth (401), forbidden (403), payment (402), quota, rate_limit (429), not_found (404),
    context_length, unsupported_param, bad_request (other 4xx), server (5xx), timeout,
    connection, unsafe_url, too_large, bad_response, cut (stopped after some text), internal.
    `message` is translated and may quote `provider_message`, the provider's own words as
    length-capped plain text with anything secret-looking masked. `retryable`: trying again
    later may work. `resendable`: the provider certainly did not start, so an automatic re-send
    cannot bill twice.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        code: str = "",
        param: str = "",
        provider_message: str = "",
        resendable: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after
        self.code, self.param, self.provider_message, self.resendable = code, param, provider_message, resendable

    @property
    def retryable(self) -> bool:
        return self.kind in ("server", "timeout", "connection", "rate_limit", "cut")

    def __repr__(self) -> str:
        return f"ProviderError(kind={self.kind!r}, status={self.status!r}, code={self.code!r})"


def plain_text(value: object, *, secret: str = "", limit: int = PROVIDER_TEXT_CHARS) -> str:
    """Return a provider's message as one line of plain text, capped, with secrets masked."""
    text = value if isinstance(value, str) else json.dumps(value)[: limit * 2] if value is not None else ""
    text = " ".join(_CONTROL.sub(" ", text[: limit * 4]).split())
    if secret and len(secret) >= 8:
        text = text.replace(secret, "[key]")
    text = _SECRETISH.sub("[key]", text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def error_fields(payload: object) -> tuple[object, str, str, str]:
    """Pull (code, type-or-code text, message, param) out of any error shape providers send."""
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # Gemini's OpenAI-compatible endpoint: [{"error": {"code", "message", "status"}}]
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    while isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = {**error, **error["error"], "error": None}  # OpenRouter sometimes nests {"error": {"error": ...}}
    if isinstance(error, str):
        return None, "", error, ""
    if not isinstance(error, dict):
        return None, "", "", ""
    code = error.get("code")
    label = str(code if isinstance(code, str) else error.get("type") or "")
    message = error.get("message") or error.get("detail") or error.get("msg") or ""
    if isinstance(error.get("metadata"), dict) and isinstance(error["metadata"].get("raw"), str):
        message = f"{message} {error['metadata']['raw']}".strip()  # OpenRouter wraps the upstream's words
    param = error.get("param")
    param = param if isinstance(param, str) else ""
    return code, label, message if isinstance(message, str) else json.dumps(message), param


def error_from_body(
    status: int,
    body: bytes | dict | None,
    *,
    headers: Mapping[str, str] | None = None,
    model: str = "",
    secret: str = "",
) -> ProviderError:
    """Classify an HTTP error answer (status and capped body) into a ProviderError."""
    payload: object = body
    page = False
    if isinstance(body, bytes | bytearray):
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = body.decode("utf-8", "replace") if len(body) < 2000 and b"<" not in body[:200] else None
            page = payload is None and bool(body.strip())
            title = _HTML_TITLE.search(body[:8192]) if page else None
            if title:  # a proxy's or CDN's error page (Cloudflare, nginx): its title says what happened
                payload = html.unescape(title[1].decode("utf-8", "replace"))
    code, label, raw_message, param = error_fields(payload)
    error = classify(status, code, label, raw_message, param, headers=headers, model=model, secret=secret)
    if status == 403 and page:  # a web page, not the provider's API: a bot check or firewall, not the model
        error.message = quoting(
            _("A firewall or proxy in front of the provider blocked the request (403)."), error.provider_message
        )
    return error


def quoting(message: str, said: str) -> str:
    """`message` (translated) followed by the provider's own words `said`, if any (already masked: plain_text)."""
    if not said:
        return message
    return _("%(message)s The provider said: “%(said)s”") % {"message": message, "said": said}


def error_in_stream(payload: object, *, model: str = "", secret: str = "") -> ProviderError:
    """Classify an error sent inside a 200 stream, e.g. OpenRouter's {"error": {"code": 402, "message": ...}}."""
    code, label, raw_message, param = error_fields(payload)
    status = code if isinstance(code, int) and 400 <= code <= 599 else _STRING_CODES.get(label, 0)
    if not status and isinstance(code, str) and code.isascii() and code.isdigit() and len(code) == 3:
        status = int(code)
    return classify(status or 500, code, label, raw_message, param, model=model, secret=secret, in_stream=True)


def classify(
    status: int,
    code: object,
    label: str,
    raw_message: str,
    param: str,
    *,
    headers: Mapping[str, str] | None = None,
    model: str = "",
    secret: str = "",
    in_stream: bool = False,
) -> ProviderError:
    said = plain_text(raw_message, secret=secret)
    code_text = label if _CODE.match(label or "") else ""
    kind, message = _kind_and_message(status, code_text, said, param, model)
    message = quoting(message, said)
    retry_after = retry_after_seconds(headers) if headers is not None else None
    if kind == "rate_limit" and retry_after:
        wait = _("Try again in %(seconds)s s.") % {"seconds": retry_after}
        message = pgettext("two sentences in a row", "%(first)s %(second)s") % {"first": message, "second": wait}
    return ProviderError(
        kind,
        message,
        status=status,
        retry_after=retry_after,
        code=code_text,
        param=param[:60],
        provider_message=said,
        resendable=not in_stream and status in RESENDABLE_STATUSES,
    )


def _kind_and_message(status: int, code: str, said: str, param: str, model: str) -> tuple[str, str]:
    if status == 401:
        return "auth", _("The provider rejected this credential (401). Check it on the keys page.")
    if status == 402 or code in ("insufficient_quota", "insufficient_credits"):
        return "payment", _("Your provider account is out of credit or quota (%(status)s). Add credit and retry.") % {
            "status": status
        }
    if status == 403:
        return "forbidden", _("The provider refused model “%(model)s” for this credential (403).") % {"model": model}
    if status == 404:
        return "not_found", _(
            "The provider does not offer model “%(model)s” at this address (404). Check the model name and base URL."
        ) % {"model": model}
    if status == 429:
        return "rate_limit", _("The provider is rate limiting this credential (429).")
    if status == 408:
        return "timeout", _("The provider timed out waiting for the request (408). Try again in a moment.")
    if status == 413 or (status in (400, 422) and (code == "context_length_exceeded" or _CONTEXT.search(said))):
        return "context_length", _("The conversation is longer than model “%(model)s” can take.") % {"model": model}
    if status in (400, 422) and (param == "stream_options" or "stream_options" in said):
        return "unsupported_param", _("The provider does not accept the stream_options field.")
    if status >= 500:
        return "server", _("The provider had a server error (%(status)s). Try again in a moment.") % {"status": status}
    detail = f"{status}, {code}" if code else str(status)
    return "bad_request", _("The provider refused the request (%(detail)s).") % {"detail": detail}


def retry_after_seconds(headers: Mapping[str, str] | None) -> int | None:
    """Seconds to wait (int, 1..86400), or None when no header says.

    Read in the openai SDK's order: retry-after-ms, then Retry-After (RFC 9110 10.2.3: delta-seconds or an
    HTTP-date), then OpenAI's and Groq's x-ratelimit-reset-requests / -tokens (Go durations, "1m30s"), the
    one whose x-ratelimit-remaining-* is 0 first.
    """
    if not headers:
        return None
    if headers.get("retry-after-ms"):
        return _seconds(headers["retry-after-ms"], default_unit="ms")
    if headers.get("retry-after"):
        return _seconds(headers["retry-after"]) or _seconds_until(headers["retry-after"])
    resets = ("requests", "tokens")
    spent = [r for r in resets if (headers.get(f"x-ratelimit-remaining-{r}") or "").strip() == "0"]
    for reset in [*spent, *resets]:
        if headers.get(f"x-ratelimit-reset-{reset}"):
            return _seconds(headers[f"x-ratelimit-reset-{reset}"])
    return None


def _seconds(value: str, *, default_unit: str = "s") -> int | None:
    match = _DURATION.match(value)
    if not match or not any(match.groups()):
        return None
    hours, minutes, amount, unit = match.groups()
    seconds: float = int(hours or 0) * 3600 + int(minutes or 0) * 60
    if amount:
        seconds += float(amount) / (1000 if (unit or default_unit) == "ms" else 1)
    return max(1, int(min(seconds, 86_400) + 0.999))


def _seconds_until(http_date: str) -> int | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(1, min(int((when - datetime.now(UTC)).total_seconds() + 0.999), 86_400))
