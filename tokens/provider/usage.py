"""Usage numbers as providers send them, normalised to OpenAI's chat completion names."""

from __future__ import annotations

FIELDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, min(int(value), 2**31 - 1))


def normalise_usage(usage: object) -> dict | None:
    """Return {prompt_tokens, completion_tokens, reasoning_tokens, total_tokens} (ints or None), or None.

    Reads OpenAI's `completion_tokens_details.reasoning_tokens`, the Responses-style `input_tokens` /
    `output_tokens` / `output_tokens_details` some gateways send, and a top-level `reasoning_tokens`
    (DeepSeek, some vLLM builds). Non-numbers are dropped, never trusted.
    """
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _count(usage.get("completion_tokens", usage.get("output_tokens")))
    details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    if reasoning is None:
        reasoning = _count(usage.get("reasoning_tokens"))
    total = _count(usage.get("total_tokens"))
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
