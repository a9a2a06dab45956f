"""Staff pages about people, sign-up approval and deactivation; every /usage/ route is staff-only."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

from accounts.models import Approval, User
from chat.usage import usage_write
from tests.conftest import PASSWORD, user_create

pytestmark = pytest.mark.django_db


def _usage_routes(user_id: int) -> list[tuple[str, str]]:
    return [
        ("get", "/usage/"),
        ("get", "/usage/export.csv"),
        ("get", "/usage/users/"),
        ("post", "/usage/users/"),
        ("get", f"/usage/users/{user_id}/"),
        ("post", f"/usage/users/{user_id}/"),
        ("post", f"/usage/users/{user_id}/approve/"),
        ("post", f"/usage/users/{user_id}/reject/"),
        ("post", f"/usage/users/{user_id}/active/"),
    ]


def test_the_route_list_covers_every_usage_route(bob):
    """A route added to chat.usage_urls without joining _usage_routes would escape the two tests below."""
    from chat.usage_urls import urlpatterns

    covered = {url for _method, url in _usage_routes(bob.pk)}
    for pattern in urlpatterns:
        url = "/usage/" + str(pattern.pattern).replace("<int:pk>", str(bob.pk))
        assert url in covered, url


def test_it_forbids_every_usage_route_to_non_staff(client, alice, bob):
    client.force_login(alice)
    for method, url in _usage_routes(bob.pk):
        assert getattr(client, method)(url).status_code == 403, url
    bob.refresh_from_db()
    assert bob.is_active


def test_it_sends_anonymous_visitors_to_log_in(client, bob):
    for method, url in _usage_routes(bob.pk):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_it_answers_404_for_an_unknown_person(client, staff):
    client.force_login(staff)
    assert client.get("/usage/users/999999/").status_code == 404


def test_it_lists_people_with_this_months_spend(client, staff, alice):
    usage_write(user_id=alice.pk, model="gpt-4o-mini", source="web", usage={"prompt_tokens": 7, "completion_tokens": 3})
    client.force_login(staff)
    page = client.get("/usage/users/").content.decode()
    assert 'data-account="alice"' in page and ">10<" in page


def _signup(client, username: str):
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": f"{username}@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )


def test_approval_mode_keeps_a_new_account_waiting_until_staff_approve(
    client, settings, staff, django_capture_on_commit_callbacks
):
    settings.SIGNUP_MODE = "approval"
    with django_capture_on_commit_callbacks(execute=True):
        response = _signup(client, "carol")
    assert response["Location"] == reverse("accounts:pending")
    carol = User.objects.get(username="carol")
    assert carol.approval == Approval.PENDING
    to_staff = [m for m in mail.outbox if m.to == ["staff@example.com"]]
    assert len(to_staff) == 1 and "carol" in to_staff[0].subject
    for url in ("/chat/", "/settings/keys/", "/settings/usage/", "/usage/"):
        assert client.get(url)["Location"] == reverse("accounts:pending"), url
    assert "data-account-pending" in client.get("/accounts/pending/").content.decode()
    assert client.post("/chat/send/", {"message": "hi"}).status_code == 302

    staff_client = client.__class__()
    staff_client.force_login(staff)
    page = staff_client.get("/usage/users/").content.decode()
    assert 'data-action="approve"' in page and 'data-action="reject"' in page
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(f"/usage/users/{carol.pk}/approve/")
    carol.refresh_from_db()
    assert carol.approval == Approval.APPROVED
    assert mail.outbox[0].to == ["carol@example.com"] and "approved" in mail.outbox[0].subject
    assert client.get("/chat/").status_code == 200


def test_rejection_deactivates_and_tells_the_person(client, settings, staff, django_capture_on_commit_callbacks):
    settings.SIGNUP_MODE = "approval"
    _signup(client, "dave")
    dave = User.objects.get(username="dave")
    client.force_login(staff)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/usage/users/{dave.pk}/reject/")
    dave.refresh_from_db()
    assert (dave.approval, dave.is_active) == (Approval.REJECTED, False)
    assert mail.outbox[0].to == ["dave@example.com"]
    assert not client.__class__().login(username="dave", password=PASSWORD)


@pytest.mark.parametrize(("action", "subject"), [("approve", "你的 BYOK Chat 账号已通过审核"), ("reject", None)])
def test_approval_emails_speak_the_persons_language_not_the_staffs(
    client, settings, staff, action, subject, django_capture_on_commit_callbacks
):
    settings.SIGNUP_MODE = "approval"
    erin = user_create("erin", approval=Approval.PENDING, language="zh-hans")
    zh_staff = user_create("staff-zh", is_staff=True, language="zh-hans")
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/usage/users/{erin.pk}/{action}/", HTTP_ACCEPT_LANGUAGE="en")
    assert [m.to for m in mail.outbox] == [["erin@example.com"]]
    with translation.override("zh-hans"):
        expected = subject or gettext("Your BYOK Chat sign-up was not approved")
    assert mail.outbox[0].subject == expected != "Your BYOK Chat sign-up was not approved"
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        _signup(client.__class__(), "frank")
    with translation.override("zh-hans"):
        waiting_zh = gettext("%(name)s is waiting for approval on BYOK Chat") % {"name": "frank"}
    to_staff = {m.to[0]: m.subject for m in mail.outbox if m.to[0] != "frank@example.com"}  # not the address check
    assert to_staff == {"staff@example.com": "frank is waiting for approval on BYOK Chat", zh_staff.email: waiting_zh}
    assert "waiting" not in waiting_zh


@pytest.mark.parametrize(("mode", "open_"), [("closed", True), ("open", False)])
def test_closed_mode_and_signup_open_false_refuse_sign_up(client, settings, mode, open_):
    settings.SIGNUP_MODE, settings.SIGNUP_OPEN = mode, open_
    assert _signup(client, "erin").status_code == 403
    assert not User.objects.filter(username="erin").exists()


def test_open_mode_lets_people_straight_in(client, settings):
    settings.SIGNUP_MODE = "open"
    assert _signup(client, "frank")["Location"] == reverse("tokens:credential-list")


def test_deactivation_ends_a_live_session_at_once(client, staff):
    grace = user_create("grace")
    client.force_login(grace)
    assert client.get("/chat/").status_code == 200
    staff_client = client.__class__()
    staff_client.force_login(staff)
    staff_client.post(f"/usage/users/{grace.pk}/active/", {"active": "0"})
    response = client.get("/chat/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    staff_client.post(f"/usage/users/{grace.pk}/active/", {"active": "1"})
    grace.refresh_from_db()
    assert grace.is_active


def test_staff_cannot_deactivate_themselves(client, staff):
    client.force_login(staff)
    client.post(f"/usage/users/{staff.pk}/active/", {"active": "0"})
    staff.refresh_from_db()
    assert staff.is_active


def test_staff_who_are_not_superusers_cannot_deactivate_or_limit_a_superuser(client, staff):
    """Being staff shows the usage pages; it must not let one lock out, or starve, the site's administrator."""
    root = user_create("root", is_staff=True, is_superuser=True)
    client.force_login(staff)
    response = client.post(f"/usage/users/{root.pk}/active/", {"active": "0"})
    assert response.status_code == 403
    assert b"superuser" in response.content
    response = client.post(f"/usage/users/{root.pk}/", {"monthly_budget_usd": "0", "chat_rate_limit": "1"})
    assert response.status_code == 403
    root.refresh_from_db()
    assert root.is_active and root.monthly_budget_usd is None and root.chat_rate_limit is None
    assert client.get(f"/usage/users/{root.pk}/").status_code == 200  # still shown


def test_a_superuser_manages_other_superusers_and_staff_manage_other_accounts(client, staff):
    root, other_root = (user_create(name, is_staff=True, is_superuser=True) for name in ("root", "root2"))
    grace = user_create("grace")
    client.force_login(root)
    assert client.post(f"/usage/users/{other_root.pk}/active/", {"active": "0"}).status_code == 302
    client.force_login(staff)
    assert client.post(f"/usage/users/{grace.pk}/active/", {"active": "0"}).status_code == 302
    other_root.refresh_from_db(), grace.refresh_from_db()
    assert not other_root.is_active and not grace.is_active
