"""What one chat request costs the web process, one request at a time (issues 9 and 13: per-request CPU and TTFT).

`python -m bench request` starts the bench kit's fake upstream (1-token replies by default: REQUEST_TOKENS) and one
uvicorn process of the app as the kit runs it (DEBUG=false, PostgreSQL database REQUEST_PG_DB, Redis database 9,
users made by the kit's byok_setup.py), then sends REQUEST_N calls one after another to each of: the fake itself
(`direct`), `/v1/chat/completions` (streamed), the web chat's send and, as the baseline of any site request,
`site`: Stop on a finished reply (session, CSRF check, one row read, a small JSON answer). For each it reports the
time to the first content byte (p50 / p90, ms, the client's clock) and the app process's CPU per call (user +
system from /proc, whole process, every thread, divided by the calls). With one call at a time and a one-token
reply, that CPU is the fixed cost of a request: authentication, checks, the upstream call's set-up, the records
written after it; `site` is what any page or action of the site costs before it does its own work. The kit's
side-by-side run (`python -m bench chat`) measures the same paths under concurrency and 200-token replies; its
single-stream rows vary by a few ms between runs, these by a few tenths of a ms. Writes bench/results/request.json.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from pathlib import Path

import psycopg

from bench.bench_chat import kit_dir
from bench.bench_floor import _wait_port
from bench.procstat import process_cpu

ROOT = Path(__file__).resolve().parent.parent
FAKE_PORT, APP_PORT = 8541, 8542
PG_URL = "postgres://postgres@127.0.0.1:5432"


def _env() -> dict[str, str]:
    database = os.environ.get("REQUEST_PG_DB", "byok_bench_request")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DEBUG": "false",
        "SECRET_KEY": urlsafe_b64encode(os.urandom(40)).decode(),
        "ENCRYPTION_KEYS": "k1:" + urlsafe_b64encode(os.urandom(32)).decode(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": f"{PG_URL}/{database}",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/9",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{FAKE_PORT}/v1",
        "ALLOW_INSECURE_UPSTREAMS": "true",
        "CHAT_RATE_LIMIT_PER_MINUTE": "100000000",
        "LOG_LEVEL": "WARNING",
        "SECURE_SSL_REDIRECT": "false",
    }


def _prepare(kit: Path, env: dict[str, str], sessions: Path) -> str:
    """A fresh database with the kit's users and conversations; returns a personal API key of the first user."""
    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    python = [sys.executable]
    subprocess.run([*python, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    setup = [str(kit / "byok_setup.py"), "--app", ".", "--users", "5", "--conversations", "1000"]
    setup += ["--api-key", "sk-test", "--out", str(sessions)]
    subprocess.run([*python, *setup], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    made = subprocess.run(
        [*python, "manage.py", "api_key_create", "peer0000", "--name", "bench-request"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return made.stdout.strip().splitlines()[-1]


def _call(kind: str, key: str, slot: tuple[str, str, int]) -> float:
    """One call, read to its end; returns ms from the request to the first content byte."""
    chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    if kind == "site":  # Stop on a finished reply: authenticated, CSRF-checked, one row read, a small JSON answer
        session, csrf, message = slot
        connection = http.client.HTTPConnection("127.0.0.1", APP_PORT, timeout=30)
        headers = {"Cookie": f"sessionid={session}; csrftoken={csrf}", "X-CSRFToken": csrf}
        connection.request("POST", f"/chat/messages/{message}/stop/", "", headers)
    elif kind == "web":
        session, csrf, conversation = slot
        connection = http.client.HTTPConnection("127.0.0.1", APP_PORT, timeout=30)
        headers = {
            "Cookie": f"sessionid={session}; csrftoken={csrf}",
            "Accept": "text/event-stream",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        connection.request(
            "POST", f"/chat/{conversation}/send/", f"message=hi&model=gpt-4o-mini&csrfmiddlewaretoken={csrf}", headers
        )
    else:
        port, bearer = (FAKE_PORT, "sk-test") if kind == "direct" else (APP_PORT, key)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
        connection.request("POST", "/v1/chat/completions", chat, headers)
    started = time.perf_counter()
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"{kind}: HTTP {response.status}: {response.read()[:200]!r}")
    first = None
    while chunk := response.read1(65536):
        if first is None and (b'"content":"tok' in chunk or b'data: "' in chunk or b'"state"' in chunk):
            first = time.perf_counter()
    connection.close()
    if first is None:
        raise SystemExit(f"{kind}: no content in the answer")
    return (first - started) * 1000


def _replies(env: dict[str, str], slots: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """(session, CSRF token, id of a saved reply) for each conversation of `slots` that has one."""
    by_conversation = {conversation: (session, csrf) for session, csrf, conversation in slots}
    with psycopg.connect(env["DATABASE_URL"]) as database:
        rows = database.execute(
            "SELECT conversation_id, max(id) FROM chat_message WHERE role = 'assistant' AND state = 'complete' "
            "AND conversation_id = ANY(%s) GROUP BY conversation_id",
            [list(by_conversation)],
        ).fetchall()
    return [(*by_conversation[conversation], message) for conversation, message in rows]


def _settle(pid: int, deadline_s: float = 30) -> None:
    """Return once the process has used under 10 ms of CPU in 0.5 s, or after `deadline_s`."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        before = process_cpu(pid)
        time.sleep(0.5)
        if process_cpu(pid) - before < 0.01:
            return


def main() -> dict:
    kit = kit_dir()
    if not (kit / "fake_openai.py").is_file():
        print(f"  request skipped: no bench kit at {kit} (set BENCH_KIT to its folder)", flush=True)
        return {"skipped": f"no bench kit at {kit}"}
    calls, tokens = int(os.environ.get("REQUEST_N", "300")), int(os.environ.get("REQUEST_TOKENS", "1"))
    env, sessions = _env(), ROOT / "var" / "bench-request-sessions.json"
    sessions.parent.mkdir(exist_ok=True)
    key = _prepare(kit, env, sessions)
    slots = [
        (user["sessionid"], user["csrftoken"], conversation)
        for user in json.loads(sessions.read_text())["users"]
        for conversation in user["conversations"]
    ]
    fake_env = {**env, "FAKE_REPLY": " ".join(f"tok{i:03d}" for i in range(1, tokens + 1)), "FAKE_API_KEYS": "sk-test"}
    fake = subprocess.Popen([sys.executable, str(kit / "fake_openai.py"), str(FAKE_PORT)], env=fake_env)
    app_command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1"]
    app_command += ["--port", str(APP_PORT), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    app = subprocess.Popen([*app_command, "--log-level", "warning"], cwd=ROOT, env=env)
    rows, used = {}, 0
    try:
        _wait_port(FAKE_PORT)
        _wait_port(APP_PORT, 60)
        _settle(app.pid)  # the app loads tiktoken in a thread at start (seconds of CPU): not a request's cost
        for kind in ("direct", "api", "web", "site"):
            if kind == "site":  # the replies the web sends saved, one per conversation
                slots = _replies(env, slots)
            for _ in range(10):  # warm-up: caches, prepared statements, pooled connections
                _call(kind, key, slots[used % len(slots)])
                used += 1
            cpu, ttft = process_cpu(app.pid), []
            for _ in range(calls):
                ttft.append(_call(kind, key, slots[used % len(slots)]))
                used += 1
            cpu = process_cpu(app.pid) - cpu
            ttft.sort()
            rows[kind] = {
                "calls": calls,
                "ttft_p50_ms": round(statistics.median(ttft), 2),
                "ttft_p90_ms": round(ttft[int(calls * 0.9)], 2),
                "app_cpu_ms_per_call": round(cpu / calls * 1000, 2) if kind != "direct" else None,
            }
    finally:
        for process in (app, fake):
            process.terminate()
            process.wait(10)
    return {"tokens_per_reply": tokens, "rows": rows}


def table(result: dict) -> str:
    if "skipped" in result:
        return f"request benchmark skipped: {result['skipped']}"
    lines = [
        f"one call at a time, {result['tokens_per_reply']}-token replies",
        "| path | calls | TTFT p50 ms | TTFT p90 ms | app CPU ms per call |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, row in result["rows"].items():
        cpu = "–" if row["app_cpu_ms_per_call"] is None else row["app_cpu_ms_per_call"]
        lines.append(f"| {kind} | {row['calls']} | {row['ttft_p50_ms']} | {row['ttft_p90_ms']} | {cpu} |")
    return "\n".join(lines)
