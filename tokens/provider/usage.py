"""Usage numbers as providers send them, normalised to OpenAI's chat completion names."""

from __future__ import annotations

import math

FIELDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")
MAX_REPORTED = 2**30  # more tokens than any model takes in one call: a broken or hostile number


def token_count(value: object) -> int | None:
    """A token count as a provider sent it, or None when it is missing or not a sane whole number.

    JSON as Python reads it may hold NaN, Infinity, 1e300, -5, 2.5, true, "12" or a list: all but a
    whole number in 0..MAX_REPORTED (an int, or a float with an integral value) are None, never raised on.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_REPORTED:
        return value
    return None


def normalise_usage(usage: object) -> dict | None:
    """Return {prompt_tokens, completion_tokens, reasoning_tokens, total_tokens} (ints or None), or None.

    Reads OpenAI's `completion_tokens_details.reasoning_tokens`, the Responses-style `input_tokens` /
    `output_tokens` / `output_tokens_details` some gateways send, and a top-level `reasoning_tokens`
    (DeepSeek, some vLLM builds). Anything but a sane whole number is dropped (see token_count).
    """
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = token_count(usage.get("completion_tokens", usage.get("output_tokens")))
    details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    reasoning = token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    if reasoning is None:
        reasoning = token_count(usage.get("reasoning_tokens"))
    total = token_count(usage.get("total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    if prompt is None and completion is None and total is None:
        return None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reasoning_tokens": reasoning,
        "total_tokens": total,
    }
