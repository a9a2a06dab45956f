"""The session-wide secret scan (tests/secret_scan.py) learns secrets and would catch a leak."""

from __future__ import annotations

import logging

from tests.conftest import ALICE_KEY, PASSWORD, credential_create
from tests.secret_scan import SCAN


def test_it_learns_a_saved_credentials_key_and_catches_it_anywhere(alice, client, caplog):
    credential_create(alice, ALICE_KEY)
    assert SCAN.secrets.get(ALICE_KEY) == "credential api_key"
    before = len(SCAN.leaks)

    SCAN.check(f"some page … {ALICE_KEY} …", "a planted page")
    logging.getLogger("planted").warning("an unredacted key sk-%s", "x")  # redacted shape: not a leak
    caught = SCAN.leaks[before:]
    del SCAN.leaks[before:]  # planted on purpose; the session must not fail for it

    assert caught == [f"credential api_key …{ALICE_KEY[-4:]} in a planted page (test {SCAN.test})"]


def test_it_learns_a_new_personal_api_key_from_the_page_that_shows_it_once(alice, client):
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})  # creating a key wants a fresh one
    page = client.post("/settings/api-keys/", {"name": "laptop", "expiry": "never"}).content.decode()
    learned = [s for s, kind in SCAN.secrets.items() if kind.startswith("personal") and s in page]
    assert learned, "the new key shown in [data-new-api-key] was not learned"
