"""What we know about models: list prices and context windows, with staff overrides.

List prices and context windows come from genai-prices (pydantic's maintained catalogue of
LLM prices, with price history and model-id matching across providers). It reads its bundled
snapshot only: nothing here calls the network (its UpdatePrices helper, which would, is never
used), so a release of genai-prices is how prices get updated. Staff override a model's price
or window from a date on with PriceOverride (admin); a call is priced with the override in
force when it was made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from django.utils import timezone
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from chat.models import MICRO, PriceOverride

logger = logging.getLogger(__name__)

_MILLION = Decimal(1_000_000)


def _catalogue_model(model: str):
    """The catalogue's entry for a model id (exact id, alias or dated variant), or None."""
    try:
        return get_snapshot().find_provider_model(model, None, None, None)[1]
    except LookupError:
        return None


def _override(model: str, at: datetime, field: str) -> PriceOverride | None:
    """The latest override of `field` for model in force at `at` (from PriceOverride.cached_by_model)."""
    overrides = PriceOverride.cached_by_model().get(model, ())
    return next((o for o in overrides if o.effective_from <= at and getattr(o, field) is not None), None)


def context_window(model: str) -> int | None:
    """Input tokens the model accepts, or None when unknown (then the provider decides)."""
    override = _override(model, timezone.now(), "context_window")
    if override:
        return override.context_window
    info = _catalogue_model(model)
    return info.context_window if info else None


def _count(usage: Mapping, key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and value > 0 else 0


def cost_usd(model: str, usage: Mapping, at: datetime | None = None) -> Decimal | None:
    """Price one call in USD (6 places), or None when no price is known (never 0 for "unknown").

    usage holds integer counts: prompt_tokens, completion_tokens and optionally cached_tokens
    (the part of prompt_tokens read from the provider's prompt cache, OpenAI's
    prompt_tokens_details.cached_tokens). Reasoning tokens are part of completion_tokens and
    billed as output (OpenAI's pricing). `at` picks the price in force then (default now).
    """
    at = at or timezone.now()
    prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
    cached = min(_count(usage, "cached_tokens"), prompt)
    override = _override(model, at, "input_usd_per_million")
    if override is not None and override.input_usd_per_million is not None:  # the query filters on the latter
        cached_price = override.cached_input_usd_per_million
        if cached_price is None:
            cached_price = override.input_usd_per_million
        cost = (
            override.input_usd_per_million * (prompt - cached)
            + cached_price * cached
            + (override.output_usd_per_million or 0) * completion
        ) / _MILLION
        return cost.quantize(MICRO)
    if _catalogue_model(model) is None:
        return None
    try:
        price = calc_price(
            Usage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion),
            model,
            genai_request_timestamp=at,
        )
    except (LookupError, ValueError, TypeError):
        logger.warning("no price for model %r", model[:100])
        return None
    return Decimal(price.total_price).quantize(MICRO)
