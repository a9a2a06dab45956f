"""Local token counts (chat.tokencount): exact for what people type, sampled for replies past EXACT_CHARS."""

from __future__ import annotations

from pathlib import Path

from chat import tokencount
from chat.tokencount import EXACT_CHARS, count_text_tokens

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _exact(text: str) -> int:
    return len(tokencount._encoding().encode(text, disallowed_special=()))


def test_it_counts_exactly_up_to_the_limit():
    text = (README * 50)[:EXACT_CHARS]
    assert count_text_tokens(text) == _exact(text)


def test_it_estimates_a_long_reply_closely():
    # Within a few percent, as count_text_tokens promises: the README changes with every edit, and its tables and
    # prose sample unevenly (a one-line README edit moved the error from under 2 % to 3.3 %).
    for text in ((README * 50)[: 4 * EXACT_CHARS], "z" * 1_000_000, "你好，世界。" * 100_000):
        assert abs(count_text_tokens(text) / _exact(text) - 1) < 0.05
