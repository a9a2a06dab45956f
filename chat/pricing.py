"""List prices in US dollars per million tokens (input, output), for the usage dashboard's cost column."""

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

_MILLION = Decimal(1_000_000)


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal | None:
    """Price a call; dated snapshots (gpt-4o-2024-08-06) use their family's price."""
    prices = PER_MILLION.get(model)
    if prices is None:
        family = max((name for name in PER_MILLION if model.startswith(name + "-")), key=len, default=None)
        prices = PER_MILLION.get(family) if family else None
    if prices is None:
        return None
    cost = (prices[0] * prompt_tokens + prices[1] * completion_tokens) / _MILLION
    return cost.quantize(Decimal("0.000001"))
