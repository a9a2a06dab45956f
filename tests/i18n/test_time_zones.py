"""Every time in the reader's own zone: saved on /settings/profile/, guessed from the browser, used by
pages, filters, the CSV export and emails. Moments sit just across a day boundary between UTC and Shanghai."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.core import mail
from django.template import Context, Template
from django.utils import timezone, translation

from accounts.models import User
from chat.models import Conversation, UsageRecord
from chat.usage import usage_write
from tests.conftest import ALICE_KEY, credential_create, user_create
from tokens.lifecycle import credential_notify_owner
from tokens.models import Status

pytestmark = pytest.mark.django_db

# 2026-11-30 20:30 UTC is already 2026-12-01 04:30 in Shanghai (UTC+8).
EVENING_UTC = datetime(2026, 11, 30, 20, 30, tzinfo=UTC)
NEXT_MORNING_UTC = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, same local day


def render(template: str, **context) -> str:
    return Template("{% load timetags %}" + template).render(Context(context))


def test_timetag_shows_the_moment_in_the_active_zone_with_the_exact_instant():
    with timezone.override("Asia/Shanghai"), translation.override("zh-hans"):
        html = render("{{ moment|timetag }}", moment=EVENING_UTC)
    assert html.startswith('<time datetime="2026-12-01T04:30:00+08:00" title="2026年12月1日 04:30 (Asia/Shanghai)">')
    assert html.endswith(">2026年12月1日 04:30</time>")
    with timezone.override("UTC"), translation.override("en"):
        assert render("{{ moment|timetag }}", moment=EVENING_UTC).endswith(">30 Nov 2026, 20:30</time>")
        assert render("{{ moment|timetag:'log' }}", moment=EVENING_UTC).endswith(">2026-11-30 20:30:00</time>")
        assert render("{{ moment|timetag|default:'never' }}", moment=None) == "never"


def test_a_new_user_gets_the_browsers_zone_on_the_first_visit(client, alice):
    assert alice.timezone == ""
    client.force_login(alice)
    client.cookies["tz"] = "Asia/Shanghai"
    client.get("/chat/")
    alice.refresh_from_db()
    assert alice.timezone == "Asia/Shanghai"
    client.cookies["tz"] = "Europe/Paris"  # the guess never overrides a zone already saved
    client.get("/chat/")
    alice.refresh_from_db()
    assert alice.timezone == "Asia/Shanghai"


@pytest.mark.parametrize("cookie", ["Mars/Olympus_Mons", "../../etc/passwd", "", "UTC\x00"])
def test_a_bogus_browser_zone_is_ignored(client, alice, cookie):
    client.force_login(alice)
    client.cookies["tz"] = cookie
    assert client.get("/chat/").status_code == 200
    alice.refresh_from_db()
    assert alice.timezone == ""


def test_the_profile_page_offers_the_browsers_guess_and_saves_an_iana_zone(client, alice):
    client.force_login(alice)
    client.cookies["tz"] = "America/Sao_Paulo"
    User.objects.filter(pk=alice.pk).update(timezone="")
    page = client.get("/settings/profile/").content.decode()
    assert re.search(r'<option value="America/Sao_Paulo" selected>', page)
    response = client.post("/settings/profile/", {"timezone": "Asia/Shanghai", "language": "zh-hans"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.timezone, alice.language) == ("Asia/Shanghai", "zh-hans")


@pytest.mark.parametrize("zone", ["Not/AZone", "", "+08:00", "Asia/Shanghai; DROP TABLE"])
def test_the_profile_page_refuses_a_zone_that_is_not_an_iana_name(client, alice, zone):
    client.force_login(alice)
    response = client.post("/settings/profile/", {"timezone": zone, "language": "en"})
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    alice.refresh_from_db()
    assert alice.timezone != zone or zone == ""


def test_the_first_visit_remembers_the_browsers_language_for_emails(client, alice):
    client.force_login(alice)
    client.get("/chat/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    alice.refresh_from_db()
    assert alice.language == "zh-hans"


def test_the_saved_language_follows_the_user_to_a_new_browser(client, alice):
    client.force_login(alice)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/chat/"})
    alice.refresh_from_db()
    assert alice.language == "zh-hans"
    client.cookies.clear()
    client.force_login(alice)  # another browser: English Accept-Language, no cookie
    response = client.get("/chat/", HTTP_ACCEPT_LANGUAGE="en-US")
    assert '<html lang="zh-hans">' in response.content.decode()
    assert response.cookies["django_language"].value == "zh-hans"


def test_the_sidebar_groups_conversations_by_the_readers_own_day(client, alice):
    with time_machine.travel(EVENING_UTC, tick=False):
        Conversation.objects.create(user=alice, title="晚上的对话")
    client.force_login(alice)
    with time_machine.travel(NEXT_MORNING_UTC, tick=False):
        User.objects.filter(pk=alice.pk).update(timezone="UTC", language="en")
        assert ">Yesterday</h2>" in client.get("/chat/").content.decode()
        User.objects.filter(pk=alice.pk).update(timezone="Asia/Shanghai", language="zh-hans")
        assert ">今天</h2>" in client.get("/chat/").content.decode()


@pytest.fixture
def evening_call(alice) -> UsageRecord:
    return usage_write(  # the one writer of usage rows: the row and its daily roll-up
        user_id=alice.pk,
        model="gpt-4o-mini",
        source="web",
        usage={"prompt_tokens": 10, "completion_tokens": 5},
        latency_ms=100,
        request_id="req_evening",
        created_at=EVENING_UTC,
    )


@pytest.mark.parametrize(
    ("zone", "day", "shown"),
    [
        ("UTC", "2026-11-30", True),
        ("UTC", "2026-12-01", False),
        ("Asia/Shanghai", "2026-11-30", False),
        ("Asia/Shanghai", "2026-12-01", True),
    ],
)
def test_usage_date_filters_use_the_readers_day(client, staff, evening_call, zone, day, shown):
    User.objects.filter(pk=staff.pk).update(timezone=zone)
    client.force_login(staff)
    with time_machine.travel(NEXT_MORNING_UTC, tick=False):
        page = client.get(f"/usage/?since={day}&until={day}").content.decode()
    assert ("req_evening" in page) is shown


def test_the_usage_table_and_chart_show_the_readers_time_and_day(client, staff, evening_call):
    User.objects.filter(pk=staff.pk).update(timezone="Asia/Shanghai")
    client.force_login(staff)
    with time_machine.travel(NEXT_MORNING_UTC, tick=False):
        page = client.get("/usage/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<time datetime="2026-12-01T04:30:00+08:00"' in page and ">2026-12-01 04:30:00</time>" in page
    assert "1 Dec 2026: 15 tokens, 1 requests, 0 errors" in page  # the chart's bar for the local day


async def _streamed(response) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()


@pytest.mark.django_db(transaction=True)
def test_the_csv_export_has_a_local_time_column_beside_the_utc_one(async_client, staff, evening_call):
    User.objects.filter(pk=staff.pk).update(timezone="Asia/Shanghai")
    async_client.force_login(staff)
    response = async_to_sync(async_client.get)("/usage/export.csv")  # streamed: an async iterator under ASGI
    rows = list(csv.DictReader(io.StringIO(async_to_sync(_streamed)(response))))
    assert datetime.fromisoformat(rows[0]["time"]) == datetime.fromisoformat("2026-11-30T20:30:00+00:00")
    assert rows[0]["local_time"] == "2026-12-01 04:30:00 Asia/Shanghai"


def test_a_credential_email_is_in_the_owners_language_and_zone(settings):
    owner = user_create("li", language="zh-hans", timezone="Asia/Shanghai")
    credential = credential_create(
        owner, ALICE_KEY, status=Status.INVALID, status_detail="服务商拒绝了这个凭据（401）。"
    )
    with time_machine.travel(EVENING_UTC, tick=False), translation.override("en"):
        assert credential_notify_owner(credential=credential)
    message = mail.outbox[-1]
    assert message.subject == "你的 BYOK Chat 凭据“OpenAI”需要处理"
    assert "li，你好：" in message.body and "当前状态：无效" in message.body
    html = message.alternatives[0][0]
    assert "2026年12月1日 04:30" in message.body and 'datetime="2026-12-01T04:30:00+08:00"' in html


def test_expiry_on_a_date_means_midnight_in_the_owners_zone(client, alice):
    User.objects.filter(pk=alice.pk).update(timezone="Asia/Shanghai")
    credential = credential_create(alice, ALICE_KEY)
    client.force_login(alice)
    with time_machine.travel(EVENING_UTC, tick=False):  # already 1 Dec in Shanghai: 1 Dec is no longer "after today"
        refused = client.post(f"/settings/keys/{credential.pk}/expiry/", {"expiry": "date", "expires_on": "2026-12-01"})
        assert refused.status_code == 400
        client.post(f"/settings/keys/{credential.pk}/expiry/", {"expiry": "date", "expires_on": "2026-12-02"})
    credential.refresh_from_db()
    assert credential.expires_at == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # 00:00 on 2 Dec in Shanghai
    assert date(2026, 12, 2) == timezone.localtime(credential.expires_at, timezone.get_fixed_timezone(480)).date()
