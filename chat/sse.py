"""Server-sent events of a reply, as the chat page and the bench kit read them (CONTRACTS.md section 2).

`event: start` (ids), text as `id: <offset>` + `data: "<json string>"`, reasoning the same with
`event: reasoning`, `: keep-alive` comments, `event: done`. The offset counts characters of reasoning and content
in arrival order, after the event; a follower passes it back (Last-Event-ID or ?offset=) to resume.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Callable

import orjson
from django.http import StreamingHttpResponse
from django.urls import reverse

from chat.models import Message

KEEPALIVE = b": keep-alive\n\n"
HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


class Outlet:
    """Where an event stream may also write without awaiting: `write(data)` sends body bytes at once and returns
    False when the client is not keeping up (go back to yielding, which waits for it) or has gone. The ASGI
    handler sets `write` when its server allows it (project.asgi.direct_writer), else it stays None."""

    write: Callable[[bytes], bool] | None = None


class EventStreamResponse(StreamingHttpResponse):
    """A text/event-stream response whose async iterator of bytes goes to the ASGI handler as it is.

    StreamingHttpResponse wraps an async iterator in two more async generators and re-checks the type of every
    part (make_bytes); event streams here yield bytes already, one part per upstream read. `outlet`: the events'
    Outlet, if they can use one.
    """

    def __init__(self, events: AsyncIterator[bytes], outlet: Outlet | None = None) -> None:
        # The charset as OpenAI sends it: events carry UTF-8 as is, and clients such as requests read text/* as
        # Latin-1 when none is named.
        super().__init__(events, content_type="text/event-stream; charset=utf-8", headers=HEADERS)
        self.outlet = outlet

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiter(self._iterator)  # type: ignore[attr-defined]  # Django's own attribute, not in the stubs


def sse_event(name: str, data: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data))


def sse_delta(kind: str, text: str, offset: int) -> bytes:
    # orjson writes UTF-8 as is and escapes CR and LF, so the JSON stays on one `data:` line.
    if kind == "content":
        return b"id: %d\ndata: %s\n\n" % (offset, orjson.dumps(text))
    return b"id: %d\nevent: reasoning\ndata: %s\n\n" % (offset, orjson.dumps(text))


def frame(runs: list[tuple[str, str]], offset: int) -> bytes:
    """Frame (kind, text) runs that start at `offset`, one event per run of the same kind."""
    out = []
    for kind, text in runs:
        offset += len(text)
        out.append(sse_delta(kind, text, offset))
    return b"".join(out)


def pending(runs: list[tuple[str, str]], ends: list[int], offset: int) -> list[tuple[str, str]]:
    """The runs after `offset`, same kinds merged; `ends[i]` is the offset after runs[i]."""
    i = bisect.bisect_right(ends, offset)
    if i >= len(runs):
        return []
    kind, text = runs[i]
    out = [(kind, text[offset - (ends[i - 1] if i else 0) :])]
    for kind, text in runs[i + 1 :]:
        if kind == out[-1][0]:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def start_payload(message: Message, *, user_message_id: int | None = None) -> dict:
    conversation = message.conversation
    return {
        "conversation": conversation.pk,
        "url": reverse("chat:conversation-detail", args=[conversation.pk]),
        "title": conversation.title,
        "user_message": user_message_id,
        "assistant_message": message.pk,
        "trimmed": message.trimmed_turns,
        "model": message.model,
        "events_url": reverse("chat:message-events", args=[message.pk]),
        "stop_url": reverse("chat:message-stop", args=[message.pk]),
    }
