"""Local token counts (chat.tokencount): exact for what people type, sampled for replies past EXACT_CHARS."""

from __future__ import annotations

import random

from chat import tokencount
from chat.tokencount import EXACT_CHARS, count_text_tokens


def _long_reply(seed: int = 7) -> str:
    """A fixed, uneven mix of what long replies hold: prose, code, a table, numbers and Chinese (not README.md,
    which changes with every edit and moved the sampled estimate's error)."""
    rng = random.Random(seed)
    words = [
        "the",
        "model",
        "streams",
        "a",
        "reply",
        "token",
        "by",
        "token",
        "while",
        "the",
        "relay",
        "saves",
        "it",
        "once",
        "at",
        "the",
        "end",
    ]
    parts = []
    while sum(map(len, parts)) < 4 * EXACT_CHARS:
        kind = rng.randrange(4)
        if kind == 0:
            parts.append(" ".join(rng.choice(words) for _ in range(rng.randint(20, 200))) + ".\n\n")
        elif kind == 1:
            parts.append(f"```python\ndef f(x):\n    return x * {rng.randint(1, 999)} + {rng.randint(1, 999)}\n```\n")
        elif kind == 2:
            parts.append(
                "| id | cost |\n| --- | --- |\n" + "".join(f"| {i} | {rng.random():.4f} |\n" for i in range(20))
            )
        else:
            parts.append("模型逐字返回回复，中转服务在结束时保存一次。" * rng.randint(1, 30) + "\n")
    return "".join(parts)


LONG_REPLY = _long_reply()


def _exact(text: str) -> int:
    return len(tokencount._encoding().encode(text, disallowed_special=()))


def test_it_counts_exactly_up_to_the_limit():
    text = LONG_REPLY[:EXACT_CHARS]
    assert count_text_tokens(text) == _exact(text)


def test_it_estimates_a_long_reply_closely():
    for text in (LONG_REPLY, _long_reply(8), _long_reply(9), "z" * 1_000_000, "你好，世界。" * 100_000):
        assert abs(count_text_tokens(text) / _exact(text) - 1) < 0.06
