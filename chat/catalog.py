"""What we know about models: list prices (USD per million tokens, input and output) and context windows."""

from __future__ import annotations

from decimal import Decimal

PER_MILLION: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1-nano": (Decimal("0.10"), Decimal("0.40")),
    "o3": (Decimal("2.00"), Decimal("8.00")),
    "o4-mini": (Decimal("1.10"), Decimal("4.40")),
    "gpt-3.5-turbo": (Decimal("0.50"), Decimal("1.50")),
}

CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o-mini": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "o3": 200_000,
    "o4-mini": 200_000,
    "gpt-3.5-turbo": 16_385,
}

_MILLION = Decimal(1_000_000)


def _lookup(table: dict, model: str):
    """Exact name first, then the longest family prefix, so gpt-4o-2024-08-06 finds gpt-4o."""
    if model in table:
        return table[model]
    family = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
    return table[family] if family else None


def context_window(model: str) -> int | None:
    """Tokens the model takes, or None when unknown: then the provider decides (see tokens.provider.stream_chat)."""
    return _lookup(CONTEXT_WINDOWS, model)


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """Price a call at list price; None for models we have no price for."""
    prices = _lookup(PER_MILLION, model)
    if prices is None:
        return None
    cost = (prices[0] * prompt_tokens + prices[1] * completion_tokens) / _MILLION
    return cost.quantize(Decimal("0.000001"))
