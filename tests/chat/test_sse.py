"""The reply's event framing and resume offsets, without a server."""

from __future__ import annotations

import asyncio
import json

from chat.relay import COMPACT_EVERY, Reply
from chat.sse import frame, pending


def _events(raw: bytes) -> list[tuple[str, str, str]]:
    """(id, event name, text) of each framed event."""
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["id"], fields.get("event", "message"), json.loads(fields["data"])))
    return out


def test_it_frames_runs_with_the_offset_after_each_event():
    raw = frame([("reasoning", "Think. "), ("content", "Héllo “quoted”\n")], 0)
    assert _events(raw) == [("7", "reasoning", "Think. "), ("22", "message", "Héllo “quoted”\n")]


def test_it_resumes_from_any_offset_without_losing_or_repeating_text():
    runs = [("reasoning", "ab"), ("reasoning", "cd"), ("content", "efg"), ("content", "h")]
    ends = [2, 4, 7, 8]
    assert pending(runs, ends, 0) == [("reasoning", "abcd"), ("content", "efgh")]
    assert pending(runs, ends, 3) == [("reasoning", "d"), ("content", "efgh")]
    assert pending(runs, ends, 4) == [("content", "efgh")]
    assert pending(runs, ends, 6) == [("content", "gh")]
    assert pending(runs, ends, 8) == []


def test_it_keeps_offsets_when_a_long_reply_is_compacted():
    async def run() -> tuple[str, list[str]]:
        reply = Reply()
        reply.mirrored = False
        words = [f"w{i} " for i in range(COMPACT_EVERY * 3 + 5)]
        reply.push("reasoning", "Hmm. ")
        for word in words:
            reply.push("content", word)
        assert len(reply.runs) < COMPACT_EVERY
        pieces = []
        for offset in (0, 3, 5, 17, reply.size - 2):
            (*_, text) = _events(frame(reply.pending(offset), offset))[-1]
            pieces.append(text)
        return reply.text("content"), pieces

    content, pieces = asyncio.run(run())
    everything = "Hmm. " + content
    assert pieces == [content, content, content, everything[17:], everything[-2:]]
