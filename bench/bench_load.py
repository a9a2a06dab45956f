"""Load test (issue 12 item 5): `python -m bench load` runs bench/locustfile.py against production-style processes.

Sets up, on loopback only: a fresh PostgreSQL database (BENCH_LOAD_PG_DB, default byok_bench_load, dropped and
created), two Redis databases (8 for the broker, 9 for the cache, flushed) on BENCH_REDIS_URL's server (default
127.0.0.1:6379), the shared bench kit's fake OpenAI upstream (../shared/bench-kit/fake_openai.py: a 60-word reply,
one word every 20 ms), and the app as production runs it: DEBUG=false, SECURE_SSL_REDIRECT=false (a TLS proxy in
front; the client sends what it forwards), fresh SECRET_KEY and ENCRYPTION_KEYS, uvicorn with BENCH_LOAD_WEB_WORKERS
(2) worker processes, one Celery worker (concurrency 2) and Celery beat. Accounts: one per simulated person, each
with an API-key credential for the fake (no base URL: OPENAI_BASE_URL points at the fake).

Then Locust, headless, with BENCH_LOAD_USERS (200) people arriving at BENCH_LOAD_SPAWN_RATE (4) a second, for
BENCH_LOAD_SECONDS (180); people in the middle of a reply when time is up finish it (up to 60 s more). Afterwards
it waits for every reply to be saved and counts messages in the database against Locust's sends, reports
per-endpoint throughput and p50/p95/p99, errors, CPU per process group and the machine's load, stops everything
and drops the database. Results: bench/results/load.json (via `python -m bench`) and bench/results/load.md.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT.parent / "shared" / "bench-kit"
RESULTS = ROOT / "bench" / "results"
USERS = int(os.environ.get("BENCH_LOAD_USERS", 200))
SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", 180))
SPAWN_RATE = float(os.environ.get("BENCH_LOAD_SPAWN_RATE", 4))
WEB_WORKERS = int(os.environ.get("BENCH_LOAD_WEB_WORKERS", 2))
PG_URL = "postgres://postgres@127.0.0.1:5432/"
PG_DB = os.environ.get("BENCH_LOAD_PG_DB", "byok_bench_load")
REDIS_SERVER = "redis://" + urlsplit(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")).netloc
USERNAME = "load{n:04d}"
MODEL = "gpt-4o-mini"
REPLY_WORDS = 60
TOKEN_DELAY_MS = 20
STOP_TIMEOUT = 60
# Bounds, so a typo cannot turn the bench into a flood.
MAX_USERS, MAX_SECONDS = 1000, 900


def main() -> dict:
    if not (0 < USERS <= MAX_USERS and 0 < SECONDS <= MAX_SECONDS):
        raise SystemExit(f"BENCH_LOAD_USERS must be 1..{MAX_USERS} and BENCH_LOAD_SECONDS 1..{MAX_SECONDS}")
    if not (KIT / "fake_openai.py").exists():
        raise SystemExit(f"the bench kit's fake upstream is missing: {KIT / 'fake_openai.py'}")
    work = Path(tempfile.mkdtemp(prefix="byok-bench-load-"))  # kept: the processes' logs are there
    print(f"logs: {work}", flush=True)
    with contextlib.ExitStack() as running:
        env = _environment(work)
        _stores_fresh()
        running.callback(_database_drop)
        password = json.loads(_manage(env, "setup"))["password"]
        processes = _processes_start(env, work, running)
        _wait_healthy(env["BENCH_LOAD_URL"])
        load_before = os.getloadavg()[0]
        cpu_before = _cpu_snapshot(processes)
        started = time.monotonic()
        locust_cpu = _locust(env, work, password)
        seconds = time.monotonic() - started
        cpu = _cpu_used(cpu_before, _cpu_snapshot(processes), seconds)
        cpu["Locust"] = round(locust_cpu / seconds, 2)
        cpu["other processes"] = round(max(0.0, cpu["other processes"] - cpu["Locust"]), 2)
        load_after = os.getloadavg()[0]
        stored = json.loads(_manage(env, "check"))
        stats = _stats(work / "locust.json", seconds)
        failures = _failures(work / "locust_failures.csv")
    result = {
        "setup": {
            "users": USERS,
            "seconds": SECONDS,
            "spawn_rate_per_s": SPAWN_RATE,
            "web": f"uvicorn, {WEB_WORKERS} worker processes",
            "celery": "1 worker (prefork, concurrency 2) + beat",
            "database": f"PostgreSQL ({PG_DB} on 127.0.0.1)",
            "redis": f"{REDIS_SERVER} databases 8 (broker) and 9 (cache)",
            "reply": f"{REPLY_WORDS} words, {TOKEN_DELAY_MS} ms per word (kit fake_openai.py)",
        },
        "endpoints": stats,
        "failures": failures,
        "stored": stored,
        "cpu": cpu,
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    result["every_message_stored"] = _every_message_stored(stats, stored)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.md").write_text(table(result) + "\n")
    return result


def table(result: dict) -> str:
    setup, stored = result["setup"], result["stored"]
    lines = [
        f"{setup['users']} people for {setup['seconds']} s (arriving {setup['spawn_rate_per_s']}/s); web: "
        f"{setup['web']}; {setup['celery']}; {setup['database']}; Redis {setup['redis']}; reply {setup['reply']}; "
        f"{result['cpus']} cores, load average {result['load_average'][0]} before / {result['load_average'][1]} after.",
        "",
        "| endpoint | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["endpoints"]:
        lines.append(
            f"| {row['name']} | {row['requests']:,} | {row['failures']} | {row['rps']} | {row['p50']} | "
            f"{row['p95']} | {row['p99']} | {row['max']} |"
        )
    sends = next((r for r in result["endpoints"] if r["name"] == "chat send: whole reply"), None)
    lines += [
        "",
        f"Messages: Locust sent {sends['requests'] if sends else 0:,} ({sends['failures'] if sends else 0} failed); "
        f"the database holds {stored['user_messages']:,} user messages and assistant replies by state "
        f"{stored['assistant_states']}; every message sent was stored: "
        f"{'yes' if result['every_message_stored'] else 'NO'}.",
        "",
        "CPU seconds per second (cores) during the run: "
        + ", ".join(f"{name} {cores}" for name, cores in result["cpu"].items())
        + ".",
    ]
    for failure in result["failures"]:
        lines.append(f"- failure: {failure['occurrences']} × {failure['name']}: {failure['error']}")
    return "\n".join(lines)


def _every_message_stored(stats: list[dict], stored: dict) -> bool:
    """Every send Locust made is a user message in the database, and every successful one a complete reply."""
    sends = next((r for r in stats if r["name"] == "chat send: whole reply"), {"requests": 0, "failures": 0})
    complete = stored["assistant_states"].get("complete", 0)
    return stored["user_messages"] == sends["requests"] and complete >= sends["requests"] - sends["failures"]


# Set-up and tear-down.


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(work: Path) -> dict[str, str]:
    fake_port, web_port = _free_port(), _free_port()
    drop = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "OPENAI_BASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DEBUG="false",
        SECURE_SSL_REDIRECT="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ENCRYPTION_KEYS="k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
        DATABASE_URL=PG_URL + PG_DB,
        REDIS_URL=f"{REDIS_SERVER}/9",
        CELERY_BROKER_URL=f"{REDIS_SERVER}/8",
        OPENAI_BASE_URL=f"http://127.0.0.1:{fake_port}/v1",
        DEFAULT_MODEL=MODEL,
        ALLOWED_HOSTS="127.0.0.1",
        FORWARDED_ALLOW_IPS="127.0.0.1",
        VAR_DIR=str(work / "var"),
        LOG_LEVEL="WARNING",
        BENCH_LOAD_URL=f"http://127.0.0.1:{web_port}",
        BENCH_LOAD_FAKE_PORT=str(fake_port),
        BENCH_LOAD_USERNAME=USERNAME,
        BENCH_LOAD_MODEL=MODEL,
        FAKE_REPLY=" ".join(f"word{i}" for i in range(REPLY_WORDS)),
        FAKE_TOKEN_DELAY_MS=str(TOKEN_DELAY_MS),
    )
    return env


def _stores_fresh() -> None:
    import psycopg
    import redis

    with psycopg.connect(PG_URL + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DB}")
    for db in (8, 9):
        redis.Redis.from_url(f"{REDIS_SERVER}/{db}").flushdb()


def _database_drop() -> None:
    import psycopg

    with psycopg.connect(PG_URL + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def _manage(env: dict[str, str], step: str) -> str:
    """Run a step of this module in a child with the app's environment (so Django never mixes with the bench)."""
    command = [sys.executable, "-m", "bench.bench_load", step]
    out = subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def _processes_start(env: dict[str, str], work: Path, running: contextlib.ExitStack) -> dict[str, int]:
    """Start the fake upstream, web, Celery worker and beat, each in its own process group; return their pids."""
    python, port = sys.executable, env["BENCH_LOAD_URL"].rsplit(":", 1)[1]
    commands = {
        "fake upstream": [python, str(KIT / "fake_openai.py"), env["BENCH_LOAD_FAKE_PORT"]],
        "web": [
            *(python, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", port),
            *("--workers", str(WEB_WORKERS), "--no-access-log"),
            *("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"),
        ],
        "celery worker": [
            *(python, "-m", "celery", "-A", "project", "worker", "--loglevel", "WARNING"),
            *("--concurrency", "2", "--without-gossip", "--without-mingle"),
        ],
        "celery beat": [python, "-m", "celery", "-A", "project", "beat", "--loglevel", "WARNING"],
    }
    pids = {}
    for name, command in commands.items():
        log = open(work / f"{name.replace(' ', '-')}.log", "w")  # noqa: SIM115 (closed with the stack)
        running.callback(log.close)
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        running.callback(_stop, process)
        pids[name] = process.pid
    return pids


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_healthy(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the web processes did not answer {url}/healthz within 90 s")


def _locust(env: dict[str, str], work: Path, password: str) -> float:
    """Run Locust to the end; return the CPU seconds it used."""
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless"]
    command += ["--host", env["BENCH_LOAD_URL"], "--users", str(USERS), "--spawn-rate", str(SPAWN_RATE)]
    command += ["--run-time", f"{SECONDS}s", "--stop-timeout", str(STOP_TIMEOUT), "--csv", str(work / "locust")]
    command += ["--json-file", str(work / "locust"), "--only-summary", "--loglevel", "WARNING"]
    command += ["--exit-code-on-error", "0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**env, "BENCH_LOAD_PASSWORD": password}
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=SECONDS + STOP_TIMEOUT + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


# Measuring.


def _cpu_snapshot(pids: dict[str, int]) -> dict:
    table = procstat.processes()
    groups = {name: procstat.tree(pid, table) for name, pid in pids.items()}
    groups["PostgreSQL"] = procstat.postgres_backends(PG_DB, table)
    cpu = {name: {pid: procstat.process_cpu(pid) for pid in members} for name, members in groups.items()}
    return {"groups": cpu, "busy": procstat.machine_busy()}


def _cpu_used(before: dict, after: dict, seconds: float) -> dict:
    """Cores each group used on average over the run (CPU seconds / wall seconds), and everything else."""
    used = {}
    for name, pids in after["groups"].items():
        earlier = before["groups"].get(name, {})
        used[name] = sum(cpu - earlier.get(pid, 0.0) for pid, cpu in pids.items())
    used["other processes"] = max(0.0, after["busy"] - before["busy"] - sum(used.values()))
    return {name: round(cpu / seconds, 2) for name, cpu in used.items()}


def _stats(path: Path, seconds: float) -> list[dict]:
    """Per-endpoint rows from Locust's final statistics (JSON), percentiles from its response-time histogram,
    as Locust computes them; the "Aggregated" row last."""
    entries = json.loads(path.read_text())
    total = {"name": "Aggregated", "num_requests": 0, "num_failures": 0, "max_response_time": 0, "response_times": {}}
    for entry in entries:
        total["num_requests"] += entry["num_requests"]
        total["num_failures"] += entry["num_failures"]
        total["max_response_time"] = max(total["max_response_time"], entry["max_response_time"] or 0)
        for ms, count in entry["response_times"].items():
            total["response_times"][ms] = total["response_times"].get(ms, 0) + count
    rows = []
    for entry in [*sorted(entries, key=lambda e: e["name"]), total]:
        histogram = sorted((float(ms), count) for ms, count in entry["response_times"].items())
        rows.append(
            {
                "name": entry["name"],
                "requests": entry["num_requests"],
                "failures": entry["num_failures"],
                "rps": round(entry["num_requests"] / seconds, 2),
                **{f"p{q}": _percentile(histogram, q / 100) for q in (50, 95, 99)},
                "max": round(entry["max_response_time"] or 0),
            }
        )
    return rows


def _percentile(histogram: list[tuple[float, int]], fraction: float) -> int | None:
    """The response time (ms) below which `fraction` of the requests fall; None without requests."""
    count = sum(n for _ms, n in histogram)
    if not count:
        return None
    seen = 0
    for ms, n in histogram:
        seen += n
        if seen >= fraction * count:
            return round(ms)
    return round(histogram[-1][0])


def _failures(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [
            {"name": row["Name"], "error": row["Error"][:300], "occurrences": int(row["Occurrences"])}
            for row in csv.DictReader(f)
        ]


# Steps run inside a child with the app's environment (`python -m bench.bench_load setup|check`).


def _setup() -> dict:
    """Migrate, collect static files, create the people (one password hash for all) and their credentials."""
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from accounts.models import User
    from tokens.models import Credential, Kind, Status
    from tokens.services import mask

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    password = secrets.token_urlsafe(16)
    hashed = make_password(password)  # hashing 200 times would only slow the set-up; sign-in still checks it
    names = [USERNAME.format(n=n) for n in range(USERS)]
    User.objects.bulk_create([User(username=name, email=f"{name}@example.com", password=hashed) for name in names])
    for user in User.objects.filter(username__in=names):
        credential = Credential(user=user, name="Fake upstream", kind=Kind.API_KEY, status=Status.ACTIVE)
        credential.hint, credential.is_default = mask("sk-test"), True
        credential.api_key = "sk-test"
        credential.save()
    return {"password": password}


def _check() -> dict:
    """Wait until no reply is still streaming (at most 60 s), then count the people's messages by role and state."""
    import django

    django.setup()
    from django.db.models import Count

    from chat.models import Message, Role, State

    people = Message.objects.filter(conversation__user__username__startswith=USERNAME.split("{")[0])
    deadline = time.monotonic() + 60
    while people.filter(state=State.STREAMING).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    states = people.filter(role=Role.ASSISTANT).values("state").annotate(n=Count("pk"))
    return {
        "user_messages": people.filter(role=Role.USER).count(),
        "assistant_states": {row["state"]: row["n"] for row in states.order_by("state")},
    }


if __name__ == "__main__":
    print(json.dumps({"setup": _setup, "check": _check}[sys.argv[1]]()), flush=True)
