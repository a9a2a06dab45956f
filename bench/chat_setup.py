"""Create benchmark users, each with an active API-key credential and a logged-in session.

Run in the web process's environment: python -m bench.chat_setup 50
Prints JSON: [{"sessionid": ..., "csrftoken": ...}, ...].

Sessions are made the way django.contrib.auth.login makes them, not by posting
the log-in form: that form is rate limited per address (LOGIN_RATE_LIMIT) and
hashes with Argon2, neither of which is what this benchmark measures.
"""

from __future__ import annotations

import json
import sys


def main(count: int) -> list[dict[str, str]]:
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils.crypto import get_random_string

    from accounts.models import User
    from tokens.models import Credential, Kind, Status
    from tokens.services import mask

    logins = []
    for index in range(count):
        user = User.objects.create_user(f"bench{index}", f"bench{index}@example.com", None)
        api_key = f"sk-bench-{index:04d}-{get_random_string(32)}"
        credential = Credential(
            user=user, name="Bench", kind=Kind.API_KEY, status=Status.ACTIVE, hint=mask(api_key), is_default=True
        )
        credential.api_key = api_key
        credential.save()
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        logins.append({"sessionid": session.session_key, "csrftoken": get_random_string(32)})
    return logins


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
