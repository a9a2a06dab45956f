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


@pytest.mark.django_db
def test_a_nul_in_any_search_or_filter_is_never_a_500(client, alice, django_user_model):
    """PostgreSQL text cannot hold NUL: `?q=a%00b` was a DataError (500) on the chat's search, the people list and
    the admin's searches. Every search box and usage filter, and every admin change list, answers a page."""
    from django.contrib import admin

    from chat.usage import usage_write

    usage_write(user_id=alice.pk, model="gpt-4o-mini", source="web", usage={})
    root = django_user_model.objects.create_superuser("root", "root@example.com", "a-long-password-0123")
    client.force_login(alice)
    for url in ("/chat/", "/settings/usage/"):
        assert client.get(url, {"q": "a\x00b", "model": "\x00"}).status_code == 200, url
    client.force_login(root)
    for url in ("/usage/", "/usage/users/", f"/usage/users/{alice.pk}/"):
        assert client.get(url, {"q": "a\x00b", "user\x00": "1\x00", "model": "\x00"}).status_code == 200, url
    searchable = [model for model, options in admin.site._registry.items() if options.search_fields]
    assert searchable
    for model in searchable:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url, {"q": "a\x00b"}).status_code == 200, url
