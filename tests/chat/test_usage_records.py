"""Every call leaves exactly one usage row, whatever the provider reports; prices are snapshots."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from chat.catalog import context_window, cost_usd
from chat.models import PriceOverride, UsageDaily, UsageRecord
from chat.usage import usage_counts, usage_write
from tests.conftest import ALICE_KEY, credential_create, user_create
from tests.streaming import send

pytestmark = pytest.mark.django_db

HOSTILE_USAGE = [
    None,
    "lots",
    [],
    {},
    {"prompt_tokens": -5, "completion_tokens": 3},
    {"prompt_tokens": "12", "completion_tokens": "3"},
    {"prompt_tokens": 1.5, "completion_tokens": float("nan")},
    {"prompt_tokens": True, "completion_tokens": None},
    {"prompt_tokens": 10**30, "completion_tokens": 10**30},
    {"prompt_tokens": 7},
    {"completion_tokens": 4, "total_tokens": -1},
    {"prompt_tokens": 3, "completion_tokens": 2, "completion_tokens_details": {"reasoning_tokens": 99}},
    {"prompt_tokens": 3, "completion_tokens": 2, "completion_tokens_details": "x", "prompt_tokens_details": [1]},
]


@pytest.mark.parametrize("usage", HOSTILE_USAGE)
def test_it_records_one_sane_row_whatever_usage_says(alice, usage):
    record = usage_write(user_id=alice.pk, model="gpt-4o-mini", source="web", usage=usage, estimate=lambda: (11, 6))
    record.refresh_from_db()
    assert UsageRecord.objects.count() == 1
    assert record.total_tokens == record.prompt_tokens + record.completion_tokens
    assert 0 <= record.reasoning_tokens <= record.completion_tokens
    assert 0 <= record.prompt_tokens <= 2**31 - 1
    daily = UsageDaily.objects.get()
    assert (daily.requests, daily.total_tokens) == (1, record.total_tokens)


def test_it_estimates_only_the_missing_half(alice):
    counts = usage_counts({"prompt_tokens": 7}, lambda: (100, 50))
    assert (counts["prompt_tokens"], counts["completion_tokens"], counts["is_estimated"]) == (7, 50, True)
    counts = usage_counts({"prompt_tokens": 7, "completion_tokens": 2}, lambda: (100, 50))
    assert (counts["total_tokens"], counts["is_estimated"]) == (9, False)


def test_it_keeps_every_call_when_a_provider_repeats_response_ids(alice):
    for _ in range(3):
        usage_write(user_id=alice.pk, model="m", source="api", usage={}, response_id="chatcmpl-same")
    assert UsageRecord.objects.filter(response_id="chatcmpl-same").count() == 3
    assert UsageDaily.objects.get().requests == 3


@pytest.mark.django_db(transaction=True)
def test_it_writes_one_row_per_web_chat(asgi_server, fake_openai, alice):
    from tests.streaming import logged_in_session

    credential_create(alice, ALICE_KEY)
    session = logged_in_session(asgi_server.url, "alice")
    fake_openai.reply("One.").reply("Two.", usage=False)
    first = send(session, asgi_server.url, "/chat/send/", "Hi")
    send(session, asgi_server.url, f"/chat/{first.start['conversation']}/send/", "Again")
    rows = list(UsageRecord.objects.order_by("id"))
    assert len(rows) == 2 and [r.is_estimated for r in rows] == [False, True]
    assert rows[0].source == "web" and rows[0].cost_usd is not None and rows[0].cost_usd > 0
    assert UsageDaily.objects.get().requests == 2


def test_it_prices_from_the_catalogue_and_says_no_price_for_unknown_models():
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    assert cost_usd("gpt-4o-mini", usage) == Decimal("0.750000")  # 0.15 in + 0.60 out per million
    assert cost_usd("gpt-4o-2024-08-06", usage) > 0  # dated variants match their family
    assert cost_usd("my-local-llama", usage) is None
    assert context_window("gpt-4o-mini") == 128_000 and context_window("my-local-llama") is None


def test_it_keeps_the_cost_snapshot_when_staff_edit_a_price(alice):
    old = usage_write(user_id=alice.pk, model="house-model", source="web", usage={"prompt_tokens": 1000})
    assert old.cost_usd is None
    override = PriceOverride.objects.create(
        model="house-model",
        input_usd_per_million=Decimal("2"),
        output_usd_per_million=Decimal("4"),
        effective_from=timezone.now() - timedelta(seconds=1),
    )
    priced = usage_write(
        user_id=alice.pk, model="house-model", source="web", usage={"prompt_tokens": 1000, "completion_tokens": 500}
    )
    assert priced.cost_usd == Decimal("0.004000")
    override.input_usd_per_million = Decimal("200")
    override.save()
    priced.refresh_from_db()
    old.refresh_from_db()
    assert priced.cost_usd == Decimal("0.004000") and old.cost_usd is None


def test_it_uses_the_price_in_force_when_the_call_was_made():
    now = timezone.now()
    for days, price in ((30, "1"), (10, "3")):
        PriceOverride.objects.create(
            model="gpt-4o-mini",
            input_usd_per_million=Decimal(price),
            output_usd_per_million=Decimal(0),
            effective_from=now - timedelta(days=days),
        )
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0}
    assert cost_usd("gpt-4o-mini", usage, now - timedelta(days=20)) == Decimal(1)
    assert cost_usd("gpt-4o-mini", usage, now) == Decimal(3)
    assert cost_usd("gpt-4o-mini", usage, now - timedelta(days=40)) == Decimal("0.15")  # catalogue before that


def test_staff_add_a_price_override_in_the_admin(client):
    root = user_create("root", is_staff=True, is_superuser=True)
    client.force_login(root)
    response = client.post(
        "/admin/chat/priceoverride/add/",
        {
            "model": "house-model",
            "input_usd_per_million": "1",
            "output_usd_per_million": "2",
            "effective_from_0": "2026-01-01",
            "effective_from_1": "00:00:00",
            "note": "negotiated",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert cost_usd("house-model", {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}) == Decimal(3)
    bad = client.post(
        "/admin/chat/priceoverride/add/",
        {"model": "x", "effective_from_0": "2026-01-01", "effective_from_1": "00:00:00"},
    )
    assert bad.status_code == 200 and "Give a price, a context window, or both." in bad.content.decode()
