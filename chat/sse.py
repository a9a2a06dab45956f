"""Server-sent events of a reply, as the chat page and the bench kit read them (CONTRACTS.md section 2).

`event: start` (ids), text as `id: <offset>` + `data: "<json string>"`, reasoning the same with
`event: reasoning`, `: keep-alive` comments, `event: done`. The offset counts characters of reasoning and content
in arrival order, after the event; a follower passes it back (Last-Event-ID or ?offset=) to resume.
"""

from __future__ import annotations

import bisect
import json

from django.urls import reverse

from chat.models import Message

KEEPALIVE = b": keep-alive\n\n"


def sse_event(name: str, data: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(data).encode())


def sse_delta(kind: str, text: str, offset: int) -> bytes:
    if kind == "content":
        return b"id: %d\ndata: %s\n\n" % (offset, json.dumps(text).encode())
    return b"id: %d\nevent: reasoning\ndata: %s\n\n" % (offset, json.dumps(text).encode())


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
