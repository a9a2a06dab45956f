"""Private pages and exports are never stored by browsers or proxies."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/chat/", "/settings/keys/", "/accounts/password/change/"])
def test_it_marks_private_pages_no_store(alice_client, path):
    response = alice_client.get(path)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("path", ["/usage/", "/usage/export.csv"])
def test_it_marks_staff_pages_and_exports_no_store(client, staff, path):
    client.force_login(staff)
    response = client.get(path)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_it_marks_the_login_page_no_store(client):
    assert "no-store" in client.get("/accounts/login/")["Cache-Control"]
