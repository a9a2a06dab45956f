"""Team limits and price overrides are read by every chat request from a cache in each process: a change shows at
once in the process that saved it, in every other one within LOCAL_CACHE_SECONDS, and a rollback never sticks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from chat import budgets
from chat.catalog import context_window, cost_usd
from chat.models import PriceOverride, TeamLimits

pytestmark = pytest.mark.django_db(transaction=True)


def test_team_limits_saved_here_apply_to_the_next_request(alice):
    assert budgets.limits_for(alice).chat_rate_limit != 7  # read, and now kept
    team = TeamLimits.current()
    team.chat_rate_limit = 7
    team.save()  # what the people page and the admin do
    assert budgets.limits_for(alice).chat_rate_limit == 7
    team.delete()
    assert budgets.limits_for(alice).chat_rate_limit != 7


def test_team_limits_changed_by_another_process_apply_within_the_cache_lifetime(alice, settings):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        before = budgets.limits_for(alice).chat_rate_limit
        TeamLimits.objects.filter(pk=1).update(chat_rate_limit=3)  # no signal here: as if saved elsewhere
        assert budgets.limits_for(alice).chat_rate_limit == before
        clock.shift(timedelta(seconds=settings.LOCAL_CACHE_SECONDS + 0.1))
        assert budgets.limits_for(alice).chat_rate_limit == 3


def test_a_rolled_back_change_is_never_kept(alice):
    before = budgets.limits_for(alice).chat_rate_limit
    with pytest.raises(RuntimeError), transaction.atomic():
        TeamLimits.objects.update_or_create(pk=1, defaults={"chat_rate_limit": 9})
        assert budgets.limits_for(alice).chat_rate_limit == 9  # read inside: the transaction's own view
        raise RuntimeError
    assert budgets.limits_for(alice).chat_rate_limit == before


def test_price_overrides_apply_at_once_here_and_go_with_their_row():
    assert context_window("house-model") is None
    assert cost_usd("house-model", {"prompt_tokens": 1000, "completion_tokens": 0}) is None
    override = PriceOverride.objects.create(
        model="house-model",
        input_usd_per_million=Decimal(2),
        output_usd_per_million=Decimal(4),
        context_window=32_000,
        effective_from=timezone.now() - timedelta(days=1),
    )
    later = PriceOverride.objects.create(
        model="house-model", context_window=64_000, effective_from=timezone.now() + timedelta(days=1)
    )
    assert context_window("house-model") == 32_000  # the later one is not in force yet
    assert cost_usd("house-model", {"prompt_tokens": 1000, "completion_tokens": 0}) == Decimal("0.002")
    assert cost_usd("house-model", {"prompt_tokens": 1000}, at=timezone.now() + timedelta(days=2)) == Decimal("0.002")
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=False):
        assert context_window("house-model") == 64_000
    later.delete()
    override.delete()
    assert context_window("house-model") is None
