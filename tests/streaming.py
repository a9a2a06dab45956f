"""Talk to the ASGI live server like the chat page does: log in, post a message, read the events."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import requests

from tests.conftest import PASSWORD


@dataclass
class Events:
    status: int
    start: dict = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    done: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)
    reasoning: list[str] = field(default_factory=list)
    last_id: str = ""
    keepalives: int = 0

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def logged_in_session(server_url: str, username: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{server_url}/accounts/login/", timeout=10)
    response = session.post(
        f"{server_url}/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{server_url}/accounts/login/"},
        timeout=10,
    )
    assert response.url.endswith("/chat/"), response.url
    return session


def parse_events(lines, *, stop_after_tokens: int | None = None) -> Events:
    """Read server-sent events; with stop_after_tokens, return once that many text events arrived."""
    events = Events(status=200)
    name, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line.startswith("id: "):
            events.last_id = line[4:]
        elif line == ": keep-alive":
            events.keepalives += 1
        elif line == "" and data:
            payload = json.loads(data)
            if name == "message":
                events.tokens.append(payload)
            elif name == "reasoning":
                events.reasoning.append(payload)
            else:
                setattr(events, name, payload)
            name, data = "message", ""
            if stop_after_tokens is not None and len(events.tokens) >= stop_after_tokens:
                break
    return events


def follow_stream(session: requests.Session, server_url: str, message_id: int, last_event_id: str = ""):
    """Open a reply's events from another tab, from Last-Event-ID (or the start); return the response unread."""
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    response = session.get(f"{server_url}/chat/messages/{message_id}/events/", headers=headers, stream=True, timeout=30)
    assert response.status_code == 200, response.status_code
    assert response.headers["content-type"].startswith("text/event-stream")
    return response


def follow(session: requests.Session, server_url: str, message_id: int, last_event_id: str = "") -> Events:
    """Follow a reply's events from another tab, from Last-Event-ID (or the start) to its end."""
    response = follow_stream(session, server_url, message_id, last_event_id)
    return parse_events(response.iter_lines(decode_unicode=True))


def stop(session: requests.Session, server_url: str, message_id: int) -> requests.Response:
    return session.post(
        f"{server_url}/chat/messages/{message_id}/stop/",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{server_url}/chat/"},
        timeout=30,
    )


def open_stream(session: requests.Session, server_url: str, path: str, message: str, **fields) -> requests.Response:
    """Post a chat message and return the response unread, for tests that read or drop the stream themselves."""
    return session.post(
        f"{server_url}{path}",
        data={"message": message, "csrfmiddlewaretoken": session.cookies["csrftoken"], **fields},
        headers={"Accept": "text/event-stream", "Referer": f"{server_url}/chat/"},
        stream=True,
        timeout=30,
    )


def send(session: requests.Session, server_url: str, path: str, message: str, **fields) -> Events:
    response = open_stream(session, server_url, path, message, **fields)
    if response.headers.get("content-type", "").startswith("application/json"):
        return Events(status=response.status_code, body=response.json())
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.iter_lines(decode_unicode=True))
    events.status = response.status_code
    return events


def wait_for(probe, what: str, timeout: float = 20.0):
    """Poll a fact (a server answering, a saved row) until it holds; return its value."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.05)
    return value
