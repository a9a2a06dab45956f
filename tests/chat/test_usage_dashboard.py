from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from chat.models import UsageRecord
from chat.usage import usage_write
from tests.conftest import user_create

pytestmark = pytest.mark.django_db


def _record(user, model="gpt-4o-mini", days_ago=0, usage=None, **fields) -> UsageRecord:
    """A call written the way the relay writes it: the row and its roll-up."""
    defaults = {"status_code": 200, "latency_ms": 120, "source": "web"}
    return usage_write(
        user_id=user.pk,
        model=model,
        usage=usage or {"prompt_tokens": 10, "completion_tokens": 5},
        created_at=timezone.now() - timedelta(days=days_ago),
        **{**defaults, **fields},
    )


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_it_is_for_staff_only(client, alice):
    client.force_login(alice)
    assert client.get("/usage/").status_code == 403
    assert client.get("/usage/export.csv").status_code == 403


def test_it_lists_calls_newest_first_with_totals(staff_client, alice, bob):
    _record(alice, days_ago=2, request_id="req_old")
    _record(bob, model="gpt-4o", request_id="req_new")
    page = staff_client.get("/usage/").content.decode()
    assert page.index("req_new") < page.index("req_old")
    assert 'data-usage-row data-user="alice" data-model="gpt-4o-mini"' in page
    assert 'data-total="requests">2<' in page and 'data-total="tokens">30<' in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("user=alice", {"req_a1", "req_a2"}),
        ("model=gpt-4o", {"req_b"}),
        ("status=error", {"req_a2"}),
        ("status=ok", {"req_a1", "req_b"}),
        ("since=" + (timezone.now() - timedelta(days=1)).date().isoformat(), {"req_a1", "req_a2"}),
    ],
)
def test_it_filters(staff_client, alice, bob, query, expected):
    _record(alice, request_id="req_a1")
    _record(alice, request_id="req_a2", status_code=429, error_type="rate_limit")
    _record(bob, model="gpt-4o", request_id="req_b", days_ago=3)
    page = staff_client.get(f"/usage/?{query}").content.decode()
    shown = {rid for rid in ("req_a1", "req_a2", "req_b") if rid in page}
    assert shown == expected


def test_it_explains_a_bad_date_range(staff_client):
    response = staff_client.get("/usage/?since=2026-11-20&until=2026-11-01")
    assert 'role="alert"' in response.content.decode()


def _request_ids(html: str) -> list[str]:
    return re.findall(r"<code>(req_\d+)</code>", html)


def _link(html: str, action: str) -> str | None:
    found = re.search(rf'href="\?([^"]*)" data-action="{action}"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_it_pages_by_keyset_through_calls_sharing_a_timestamp(staff_client, alice):
    moment = timezone.now()
    for n in range(120):  # three calls per instant: the id breaks the tie
        instant = moment - timedelta(seconds=n // 3)
        usage_write(user_id=alice.pk, model="m", source="web", request_id=f"req_{n:03}", created_at=instant)
    pages, html = [], staff_client.get("/usage/").content.decode()
    assert _link(html, "newer") is None and "120 calls" in html
    while True:
        pages.append(_request_ids(html))
        older = _link(html, "older")
        if older is None:
            break
        html = staff_client.get(f"/usage/?{older}").content.decode()
    assert [len(page) for page in pages] == [50, 50, 20]
    # Newest first; within one instant the later-written (higher id) first. Nothing twice, nothing skipped.
    assert [row for page in pages for row in page] == [f"req_{3 * g + k:03}" for g in range(40) for k in (2, 1, 0)]
    newer = _link(html, "newer")
    back = staff_client.get(f"/usage/?{newer}").content.decode()
    assert _request_ids(back) == pages[1] and _link(back, "newer") and _link(back, "older")
    assert _link(staff_client.get("/usage/?before=garbage_1").content.decode(), "newer") is None


async def _streamed(response) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()


@pytest.mark.django_db(transaction=True)
def test_it_exports_the_filtered_rows_as_csv(async_client, staff, alice, bob):
    _record(alice, request_id="req_a")
    _record(bob, request_id="req_b")
    async_client.force_login(staff)
    response = async_to_sync(async_client.get)("/usage/export.csv?user=bob")
    rows = list(csv.DictReader(io.StringIO(async_to_sync(_streamed)(response))))
    assert [row["request_id"] for row in rows] == ["req_b"]
    assert rows[0]["user"] == "bob" and rows[0]["total_tokens"] == "15"


def test_it_shows_usage_read_only_in_the_admin(client, alice):
    admin = user_create("root", is_staff=True, is_superuser=True)
    record = _record(alice, request_id="req_admin")
    client.force_login(admin)
    assert "req_admin" in client.get("/admin/chat/usagerecord/").content.decode()
    assert client.get(f"/admin/chat/usagerecord/{record.pk}/change/").status_code == 200
    assert client.get("/admin/chat/usagerecord/add/").status_code == 403


def test_it_shows_recent_credential_events_without_secrets(staff_client, alice, bob):
    from tests.conftest import ALICE_KEY, credential_create
    from tokens.models import CredentialEvent
    from tokens.services import event_record

    credential = credential_create(alice, ALICE_KEY, name="Alice work key")
    event_record(credential, "refresh_failed", detail="Token endpoint answered 503; retrying in 40 s")
    event_record(credential_create(bob, "sk-bob-key-0000000000000000000000000", name="Bob key"), "checked")
    page = staff_client.get("/usage/?user=alice").content.decode()
    assert page.count("<tr data-credential-event>") == CredentialEvent.objects.filter(user=alice).count() >= 1
    assert "Alice work key" in page and "retrying in 40 s" in page and "Bob key" not in page
    assert ALICE_KEY not in page
