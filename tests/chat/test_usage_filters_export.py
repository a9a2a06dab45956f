"""Filters that cannot break, and a CSV export that neutralises formulas."""

from __future__ import annotations

import csv
import io

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.dashboard import csv_safe
from chat.models import UsageRecord
from chat.usage import usage_write

pytestmark = pytest.mark.django_db

HOSTILE_QUERIES = [
    "since=9999-12-31",
    "until=0001-01-01",
    "since=1900-01-01&until=9999-12-31",
    "since=2026-13-45",
    "since=yesterday",
    "until=%00",
    "status=drop+table",
    "page=-1",
    "page=99999999999999999999",
    "page=abc",
    "user=" + "x" * 5000,
    "user=nobody-by-that-name",
    "model=%E2%80%AE",
    "since=2026-11-30&until=2026-11-01",
    "since[]=1&since=2",
    "before=99999999999999999999999_1",
    "after=-99999999999999999_-1",
    "before=abc",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_it_never_fails_on_a_filter(client, staff, alice, query):
    usage_write(user_id=alice.pk, model="gpt-4o-mini", source="web", usage={})
    for user, url in ((staff, "/usage/"), (alice, "/settings/usage/"), (staff, f"/usage/users/{alice.pk}/")):
        client.force_login(user)
        response = client.get(f"{url}?{query}")
        assert response.status_code == 200, (url, query)


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["2026-02-30", "9999-12-31", "0001-01-01", "-1", "1e309", "99999999999999999999_1", "1_1_1", "_", "%00"]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.dictionaries(
        st.sampled_from(["user", "model", "status", "since", "until", "page", "before", "after", "q"]), ANY_TEXT
    )
)
def test_no_filter_value_is_a_500_fuzzed(client, staff, alice, query):
    """Random values in every filter the usage pages read (hypothesis): always a page, never an error."""
    if not UsageRecord.objects.exists():
        usage_write(user_id=alice.pk, model="gpt-4o-mini", source="web", usage={})
    for user, url in ((staff, "/usage/"), (alice, "/settings/usage/"), (staff, f"/usage/users/{alice.pk}/")):
        client.force_login(user)
        assert client.get(url, query).status_code == 200, (url, query)
    assert client.get("/usage/users/", query).status_code == 200, query


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "＝1+1"])
def test_it_neutralises_formula_cells(cell):
    assert csv_safe(cell) == "'" + cell
    assert csv_safe("gpt-4o") == "gpt-4o"


async def _body(response) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()


@pytest.mark.django_db(transaction=True)
def test_it_exports_hostile_model_and_request_ids_as_text(async_client, staff, alice):
    usage_write(user_id=alice.pk, model='=HYPERLINK("http://x","y")', source="web", request_id="+cmd|' /C calc'!A0")
    async_client.force_login(staff)
    response = async_to_sync(async_client.get)("/usage/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    row = next(csv.DictReader(io.StringIO(async_to_sync(_body)(response))))
    assert row["model"] == '\'=HYPERLINK("http://x","y")' and row["request_id"].startswith("'+cmd")


@pytest.mark.django_db(transaction=True)
def test_a_person_exports_only_their_own_calls(async_client, alice, bob):
    usage_write(user_id=alice.pk, model="mine", source="web")
    usage_write(user_id=bob.pk, model="theirs", source="web")
    async_client.force_login(alice)
    body = async_to_sync(_body)(async_to_sync(async_client.get)("/settings/usage/export.csv"))
    assert "mine" in body and "theirs" not in body
