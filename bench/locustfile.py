"""Locust load test (issue 12 item 5): people sign in, chat with streamed replies, browse history, load usage.

Started by `python -m bench load` (bench/bench_load.py), which sets up the processes, the accounts and the fake
upstream, and passes these through the environment:
    BENCH_LOAD_USERNAME   account names, "<prefix>{n:04d}" for n in 0..users-1, one per simulated person
    BENCH_LOAD_PASSWORD   the accounts' password
    BENCH_LOAD_MODEL      model id sent with each message
The host must be a loopback address: this file refuses to load anything else.

The client plays a browser behind the TLS proxy that production has in front (SECURE_SSL_REDIRECT=false there):
it sends the `X-Forwarded-Proto: https` and `X-Forwarded-For` the proxy would (the web processes trust them from
127.0.0.1 only), each person from an address of their own in 198.18.0.0/15 (RFC 2544's benchmarking range), so
per-address limits apply as in production; an `Origin` on every POST; and it keeps the `Secure` session and CSRF
cookies although its own hop is plain HTTP on loopback.

Each chat message is one POST answered by server-sent events; three rows in the statistics come from it:
"chat send: headers" (time to the response headers), "chat send: first text" (time to the first text event) and
"chat send: whole reply" (until the `done` event; a failure unless its state is "complete").
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit

from locust import FastHttpUser, events, task
from locust.exception import StopUser

USERNAME = os.environ.get("BENCH_LOAD_USERNAME", "load{n:04d}")
PASSWORD = os.environ.get("BENCH_LOAD_PASSWORD", "")
MODEL = os.environ.get("BENCH_LOAD_MODEL", "gpt-4o-mini")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PROMPTS = [
    "Summarise the plot of Hamlet in three sentences.",
    "把这句话翻译成英文：今天的会议改到下午三点。",
    "Write a haiku about a server rack.",
    "What is the difference between a process and a thread?",
    "Give me a short checklist for a code review.",
]
_accounts = itertools.count()


@events.init.add_listener
def _only_loopback(environment, **_kwargs) -> None:
    host = urlsplit(environment.host or "").hostname
    if host not in LOOPBACK:
        raise SystemExit(f"bench/locustfile.py runs against loopback only, not {environment.host!r}")


class _BehindTLSProxy(DefaultCookiePolicy):
    """Send Secure cookies over the plain loopback hop, as the TLS proxy in front of production would."""

    def return_ok_secure(self, cookie, request) -> bool:
        return True


class Person(FastHttpUser):
    """One person: signs in once, then chats (most often), reads a past conversation, looks at the chat list or
    at their usage, with a pause to read between actions."""

    def wait_time(self) -> float:
        return random.uniform(3, 9)

    def on_start(self) -> None:
        account = next(_accounts)
        self.client.cookiejar.set_policy(_BehindTLSProxy())
        address = f"198.18.{account // 256}.{account % 256}"
        self.proxy_headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": address}
        self.post_headers = {**self.proxy_headers, "Origin": self.https_origin()}
        self.conversations: list[int] = []
        self.sign_in(USERNAME.format(n=account))

    def https_origin(self) -> str:
        return "https://" + urlsplit(self.host).netloc

    def csrf_token(self) -> str:
        return next((c.value for c in self.client.cookiejar if c.name == "csrftoken"), "")

    def sign_in(self, username: str) -> None:
        self.client.get("/accounts/login/", headers=self.proxy_headers, name="sign in: form")
        form = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": self.csrf_token()}
        with self.client.post(
            "/accounts/login/",
            data=form,
            headers=self.post_headers,
            allow_redirects=False,
            catch_response=True,
            name="sign in: post",
        ) as response:
            if response.status_code != 302 or "/accounts/" in response.headers.get("Location", "/accounts/"):
                response.failure(f"sign-in refused: {_status(response)}")
                raise StopUser
            response.success()

    @task(4)
    def chat(self) -> None:
        """Send a message (a new conversation a third of the time) and read the streamed reply to its end."""
        new = not self.conversations or random.random() < 1 / 3
        url = "/chat/send/" if new else f"/chat/{random.choice(self.conversations)}/send/"
        form = {"message": random.choice(PROMPTS), "model": MODEL, "csrfmiddlewaretoken": self.csrf_token()}
        headers = {**self.post_headers, "Accept": "text/event-stream"}
        started = time.perf_counter()
        first_text, error, size = None, None, 0
        with self.client.post(
            url, data=form, headers=headers, stream=True, catch_response=True, name="chat send: headers"
        ) as response:
            if response.status_code != 200:
                error = _status(response)
                response.failure(error)
            else:
                response.success()
                first_text, error, size = self.read_reply(response, started, new)
        if first_text is not None:
            self.record("chat send: first text", first_text - started)
        self.record("chat send: whole reply", time.perf_counter() - started, size, error)

    def read_reply(self, response, started: float, new: bool) -> tuple[float | None, str | None, int]:
        """Read server-sent events until `done`; return (time of the first text, error or None, bytes read)."""
        first_text, state, error, size, frame = None, None, None, 0, []
        # Line by line as they arrive (iter_content's read(n) would wait for n bytes).
        while line := response._response.readline(b"\n"):
            size += len(line)
            line = line.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                frame.append(line)
                continue
            name, data = _event(frame)
            frame = []
            if name == "start" and new:
                self.conversations.append(json.loads(data)["conversation"])
            elif name == "message" and data and first_text is None:
                first_text = time.perf_counter()
            elif name == "done":
                done = json.loads(data)
                state = done.get("state")
                if state != "complete":
                    error = f"reply {state}: {done.get('error', '')}"[:200]
        if state is None and error is None:
            error = "stream ended without a done event"
        return first_text, error, size

    def record(self, name: str, seconds: float, size: int = 0, error: str | None = None) -> None:
        self.environment.events.request.fire(
            request_type="SSE",
            name=name,
            response_time=seconds * 1000,
            response_length=size,
            exception=RuntimeError(error) if error else None,
            context={},
        )

    @task(2)
    def read_conversation(self) -> None:
        if self.conversations:
            self.page(f"/chat/{random.choice(self.conversations)}/", "history: a conversation")

    @task(1)
    def chat_list(self) -> None:
        self.page("/chat/", "history: chat page")

    @task(1)
    def usage(self) -> None:
        self.page("/settings/usage/", "usage: own page")

    def page(self, url: str, name: str) -> None:
        """GET a page; anything but 200 (a redirect to log-in included) is a failure."""
        with self.client.get(
            url, headers=self.proxy_headers, allow_redirects=False, catch_response=True, name=name
        ) as response:
            if response.status_code != 200:
                response.failure(_status(response))


def _status(response) -> str:
    """ "HTTP 503", or the connection error when there was no answer (Locust's status 0)."""
    return f"HTTP {response.status_code}" if response.status_code else f"no answer: {response.error!r}"[:200]


def _event(lines: list[str]) -> tuple[str, str]:
    """(event name, data) of one server-sent event; comments (keep-alives) give ("message", "")."""
    name, data = "message", []
    for line in lines:
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return name, "\n".join(data)
