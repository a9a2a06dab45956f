"""Monthly budgets: refusal before any upstream call, the remaining amount, and the 80 %/100 % e-mails once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.utils.formats import date_format

from chat.budgets import budget_check, budget_digest_send, budget_status
from chat.models import BudgetAlert, PriceOverride, TeamLimits
from chat.usage import usage_write
from tests.conftest import ALICE_KEY, credential_create, user_create
from tests.streaming import logged_in_session, send

pytestmark = pytest.mark.django_db

MID_MONTH = datetime(2026, 11, 14, 12, tzinfo=UTC)
RESET_DAY = date_format(date(2026, 12, 1), "DATE_FORMAT")


def _spend(user, tokens: int, model: str = "gpt-4o-mini") -> None:
    usage_write(user_id=user.pk, model=model, source="web", usage={"prompt_tokens": tokens, "completion_tokens": 0})


@pytest.fixture
def priced(db):
    """A model at $1 per thousand input tokens, so costs are easy to read."""
    PriceOverride.objects.create(
        model="dollar-model",
        input_usd_per_million=Decimal(1000),
        output_usd_per_million=Decimal(1000),
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )


@time_machine.travel(MID_MONTH, tick=False)
def test_it_refuses_at_the_token_budget_naming_it_and_the_reset_date(alice):
    alice.monthly_token_budget = 1000
    alice.save()
    _spend(alice, 999)
    assert budget_status(user=alice).remaining_tokens == 1
    _spend(alice, 1)
    with pytest.raises(Exception) as refusal:
        budget_check(user=alice)
    assert "1,000 tokens" in refusal.value.message and RESET_DAY in refusal.value.message
    assert refusal.value.as_openai_error()["error"]["code"] == "budget_exceeded"


@time_machine.travel(MID_MONTH, tick=False)
def test_it_uses_the_team_default_and_a_personal_budget_wins(alice, bob, priced):
    TeamLimits.objects.create(pk=1, monthly_budget_usd=Decimal("2.00"))
    bob.monthly_budget_usd = Decimal("50")
    bob.save()
    for user in (alice, bob):
        _spend(user, 2000, "dollar-model")  # $2
    with pytest.raises(Exception, match=r"monthly budget of \$2"):
        budget_check(user=alice)
    assert budget_check(user=bob).remaining_usd == Decimal("48.00")


@time_machine.travel(MID_MONTH, tick=False)
def test_it_counts_only_this_month(alice):
    alice.monthly_token_budget = 100
    alice.save()
    with time_machine.travel(datetime(2026, 10, 31, 23, tzinfo=UTC), tick=False):
        _spend(alice, 500)
    assert budget_status(user=alice).spent_tokens == 0
    budget_check(user=alice)


@time_machine.travel(MID_MONTH, tick=False)
def test_it_sends_the_80_and_100_percent_emails_once_each(
    alice, staff, celery_eager, django_capture_on_commit_callbacks
):
    def spend(tokens: int) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            _spend(alice, tokens)

    alice.monthly_token_budget = 100
    alice.save()
    spend(50)
    assert mail.outbox == []
    spend(30)  # 80 %
    spend(5)
    assert [m.subject for m in mail.outbox] == ["You have used 80% of your monthly BYOK Chat budget"]
    spend(20)  # 105 %
    spend(20)
    assert len(mail.outbox) == 2 and "reached your monthly" in mail.outbox[1].subject
    assert mail.outbox[1].to == ["alice@example.com"] and RESET_DAY in mail.outbox[1].body
    assert BudgetAlert.objects.filter(user=alice).count() == 2
    mail.outbox.clear()
    assert budget_digest_send() == 2
    assert [m.to for m in mail.outbox] == [["staff@example.com"]] and "alice: 100%" in mail.outbox[0].body
    assert budget_digest_send() == 0  # once


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_chat_over_budget_and_sends_nothing_upstream(asgi_server, fake_openai, alice):
    alice.monthly_token_budget = 10
    alice.save()
    credential_create(alice, ALICE_KEY)
    _spend(alice, 10)
    session = logged_in_session(asgi_server.url, "alice")
    events = send(session, asgi_server.url, "/chat/send/", "Hello?")
    assert events.status == 402
    assert "monthly token budget of 10 tokens" in events.body["error"] and "resets on" in events.body["error"]
    assert fake_openai.chat_requests == []


def test_my_usage_shows_what_is_left(client, alice):
    alice.monthly_token_budget = 1000
    alice.save()
    _spend(alice, 250)
    client.force_login(alice)
    page = client.get("/settings/usage/").content.decode()
    assert "data-budget-remaining>" in page and "750 tokens" in page


def test_staff_set_limits_on_the_person_page(client, staff, alice):
    client.force_login(staff)
    response = client.post(
        f"/usage/users/{alice.pk}/",
        {"monthly_budget_usd": "12.50", "monthly_token_budget": "", "chat_rate_limit": "5"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.monthly_budget_usd, alice.monthly_token_budget, alice.chat_rate_limit) == (Decimal("12.5"), None, 5)
    bad = client.post(f"/usage/users/{alice.pk}/", {"monthly_budget_usd": "lots"})
    assert bad.status_code == 400 and 'role="alert"' in bad.content.decode()


@pytest.mark.parametrize("path", ["person", "team"])
def test_it_refuses_a_negative_budget_and_keeps_what_was_typed(client, staff, alice, path):
    url = f"/usage/users/{alice.pk}/" if path == "person" else "/usage/users/"
    client.force_login(staff)
    response = client.post(url, {"monthly_budget_usd": "-5", "monthly_token_budget": "1000", "chat_rate_limit": ""})
    page = response.content.decode()
    assert response.status_code == 400 and 'role="alert"' in page
    assert "greater than or equal to 0" in page and 'value="-5"' in page and 'value="1000"' in page
    alice.refresh_from_db()
    assert alice.monthly_budget_usd is None and TeamLimits.current().monthly_budget_usd is None


def test_it_shows_budget_of_no_one_else(client, alice):
    bob = user_create("bob2")
    _spend(bob, 10)
    client.force_login(alice)
    assert "data-usage-row" not in client.get("/settings/usage/").content.decode()


@time_machine.travel(MID_MONTH, tick=False)
def test_each_budget_email_speaks_its_readers_language_once(
    alice, staff, celery_eager, django_capture_on_commit_callbacks
):
    """The person's alert in their language (not the site's), the digest in each staff member's."""
    alice.language, alice.monthly_token_budget = "zh-hans", 100
    alice.save()
    user_create("staff2", is_staff=True, language="zh-hans")
    with django_capture_on_commit_callbacks(execute=True):
        _spend(alice, 85)
    with django_capture_on_commit_callbacks(execute=True):
        _spend(alice, 1)  # still 80 %: no second e-mail
    assert [m.subject for m in mail.outbox] == ["你已使用本月 BYOK Chat 预算的 80%"]
    assert "2026年12月1日" in mail.outbox[0].body  # the reset date in Chinese format
    mail.outbox.clear()
    assert budget_digest_send() == 1
    subjects = {m.to[0]: m.subject for m in mail.outbox}
    assert subjects == {
        "staff@example.com": "BYOK Chat: 1 budget alert today",
        "staff2@example.com": "BYOK Chat：今天有 1 条预算提醒",
    }
