"""Refresh benchmark (issue 9 item 4): 10,000 OAuth2 credentials all inside the refresh margin.

`python -m bench refresh` measures the time from beat's `refresh_due_credentials` message to the moment
every credential holds a new access token, with ONE Celery worker node (prefork pool, concurrency 2 on this
2-core machine) on PostgreSQL (database byok_bench_refresh on 127.0.0.1, dropped and created; BENCH_REFRESH_DB=sqlite
for a temp SQLite file) with Redis as broker, against the local RFC 6749 token server running in a process of its
own (so its CPU is counted apart). Half the credentials use the client-credentials grant, each with a client id of
its own, half the refresh-token grant with rotation, each with its own refresh token: the token server counts grants
per client id and uses per refresh token, and the run checks that every credential was refreshed exactly once.

Then, in this process, database queries per credential are counted with
`connection.execute_wrapper`: beat's fan-out once, and each batch task run
eagerly, for 100 and for 1,000 due credentials, to show the count is constant.

BENCH_REFRESH_CREDENTIALS (10,000) changes the size, BENCH_REFRESH_LATENCY_MS (0) makes the token server wait
that long before each answer, as a remote identity provider would, BENCH_REFRESH_POOL and BENCH_REFRESH_CONCURRENCY
the worker's pool for experiments; BENCH_REDIS_URL the broker (default Redis database 13 on 127.0.0.1:6379, the kombu
filesystem broker when no Redis answers), BENCH_REFRESH_PG_DB the PostgreSQL database it drops and creates.
The measuring runs in a child process (`python -m bench.bench_refresh`) so its
DATABASE_URL and broker never mix with another benchmark's Django setup.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = int(os.environ.get("BENCH_REFRESH_CREDENTIALS", 10_000))
TARGET_SECONDS = 30
PG_URL = "postgres://postgres@127.0.0.1:5432/"
PG_DB = os.environ.get("BENCH_REFRESH_PG_DB", "byok_bench_refresh")
REDIS_BROKER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
POOL = os.environ.get("BENCH_REFRESH_POOL", "prefork")
CONCURRENCY = int(os.environ.get("BENCH_REFRESH_CONCURRENCY", 2))
DEADLINE_SECONDS = 600
# The token server's answer time: a real identity provider takes tens to hundreds of ms; the local one about 1 ms.
LATENCY_MS = float(os.environ.get("BENCH_REFRESH_LATENCY_MS", 0))


def main() -> dict:
    use_pg = os.environ.get("BENCH_REFRESH_DB", "postgres") == "postgres"
    with tempfile.TemporaryDirectory(prefix="byok-bench-refresh-") as tmp:
        database_url = _postgres_fresh() if use_pg else f"sqlite:///{tmp}/bench.sqlite3"
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
        env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=_broker_url(),
            UPSTREAM_ALLOWLIST="127.0.0.1",
            LOG_LEVEL="WARNING",
            DEBUG="false",  # as in production: fresh secrets, no debug bookkeeping
            SECRET_KEY=secrets.token_urlsafe(50),
            ENCRYPTION_KEYS="k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
        )
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_refresh"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["database"] = f"PostgreSQL ({PG_DB} on 127.0.0.1)" if use_pg else "SQLite (temp file, WAL)"
    return result


def table(result: dict) -> str:
    queries = result["queries_per_credential"]
    cpu, server = result["cpu"], result["token_server"]
    rows = [
        ("credentials (all inside the refresh margin)", f"{result['credentials']:,}"),
        ("grants", "half client credentials (a client id each), half refresh token with rotation"),
        ("token server's added answer time", f"{result.get('token_server_latency_ms', 0):g} ms"),
        ("database", result["database"]),
        ("broker", result["broker"]),
        ("worker", result["worker"]),
        ("beat message → all refreshed", f"{result['seconds_to_refresh_all']} s (target ≤ {TARGET_SECONDS} s)"),
        ("refreshes per second", f"{result['refreshes_per_second']}"),
        ("progress (refreshed after 10/20/30 s)", " / ".join(f"{n:,}" for n in result["progress"])),
        (
            "token requests / refreshed exactly once / double refreshes / missed",
            f"{server['requests']:,} / {server['exactly_once']:,} / {result['double_refreshes']} / {server['missed']}",
        ),
        ("TCP connections the token server accepted (keep-alive)", f"{server['connections']}"),
        ("fan-out queries (100 / 1,000 due)", f"{result['fanout_queries'][0]} / {result['fanout_queries'][1]}"),
        (
            "queries per refreshed credential (100 / 1,000 due)",
            f"{queries['100']['per_credential']} / {queries['1000']['per_credential']} "
            f"(batches of {queries['1000']['per_batch_min']}–{queries['1000']['per_batch_max']} queries)",
        ),
        (
            "CPU ms per refresh: worker node / token server / PostgreSQL / bench's poller",
            f"{cpu['worker_ms_per_refresh']} / {cpu['token_server_ms_per_refresh']} "
            f"/ {cpu['database_ms_per_refresh']} / {cpu['bench_ms_per_refresh']}",
        ),
        ("other processes on the machine meanwhile", f"{cpu['other_processes_cores']} cores"),
        ("load average (1 min) before / after", f"{result['load_average'][0]} / {result['load_average'][1]}"),
        ("that CPU spread over every core (model, not measured)", f"{cpu['seconds_on_free_cores']} s"),
        ("target met", "yes" if result["target_met"] else "no"),
    ]
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _postgres_fresh() -> str:
    import psycopg

    with psycopg.connect(PG_URL + "postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DB}")
    return PG_URL + PG_DB


def _broker_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_BROKER, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return "filesystem://"
    return REDIS_BROKER


# The token server: its own process (`python -m bench.bench_refresh token-server N`), so its CPU is its own.

REFRESH_CLIENT = ("bench-app", "bench-secret-0000000000000000")


def _client_id(index: int) -> str:
    """Credential `index`'s client id: client-credentials ones each have their own, so grants count per credential."""
    return REFRESH_CLIENT[0] if index % 2 else f"bench-cc-{index}"


def _serve_tokens(count: int) -> None:
    """Run the token server for `count` credentials: print its URL and the refresh tokens (index -> token) as one JSON
    line, then answer each "stats" line on stdin with the counts per credential; stop at end of input."""
    from tests.fakes.oauth import FakeTokenServer

    class CountingTokenServer(FakeTokenServer):
        """The fake, also counting client-credentials grants per client id."""

        def __init__(self) -> None:
            super().__init__(expires_in=3600)
            self.client_grants: Counter = Counter()

        def handle(self, http, request) -> None:
            if LATENCY_MS:
                time.sleep(LATENCY_MS / 1000)  # this request's thread waits, as on a remote server; no CPU
            super().handle(http, request)

        def _issue(self, grant, refresh_token):
            if refresh_token is None:  # the bench rotates every refresh token: None is a client-credentials grant
                self.client_grants[grant.client_id] += 1
            return super()._issue(grant, refresh_token)

    with CountingTokenServer() as server:
        server.add_client(*REFRESH_CLIENT)
        refresh_tokens = {}
        for index in range(count):
            if index % 2:
                refresh_tokens[index] = server.issue_refresh_token(REFRESH_CLIENT[0])
            else:
                server.add_client(_client_id(index), REFRESH_CLIENT[1])
        print(json.dumps({"token_url": server.token_url, "refresh_tokens": refresh_tokens}), flush=True)
        for _line in sys.stdin:
            with server._lock:
                uses = [server.refresh_token_uses.get(token, 0) for token in refresh_tokens.values()]
                uses += [server.client_grants[_client_id(i)] for i in range(count) if i % 2 == 0]
                stats = {"requests": len(server._requests), "connections": server.connections_accepted}
            stats |= {
                "exactly_once": uses.count(1),
                "double_refreshes": sum(n - 1 for n in uses if n > 1),
                "missed": uses.count(0),
            }
            print(json.dumps(stats), flush=True)


class TokenServerProcess:
    """The token server's process, seen from the bench: its URL, refresh tokens, pid and counts."""

    def __init__(self, count: int) -> None:
        command = [sys.executable, "-m", "bench.bench_refresh", "token-server", str(count)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started = json.loads(self.process.stdout.readline())
        self.token_url = started["token_url"]
        self.refresh_tokens = {int(index): token for index, token in started["refresh_tokens"].items()}

    def stats(self) -> dict:
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


# The child process: everything below runs with the throwaway database configured.


def _run() -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    from project.celery import app

    call_command("migrate", verbosity=0)
    token_server = TokenServerProcess(CREDENTIALS)
    try:
        ids = _credentials_create(token_server, CREDENTIALS)
        app.control.purge()
        worker = _worker_start(app)
        load_before = os.getloadavg()[0]
        try:
            before = _cpu_snapshot(worker.pid, token_server.process.pid)
            timing = _refresh_all(len(ids))
            after = _cpu_snapshot(worker.pid, token_server.process.pid)
            cpu = _cpu_used(before, after, timing["seconds"], len(ids))
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        load_after = os.getloadavg()[0]
        served = token_server.stats()
        fanout, per_refresh = {}, {}
        for due in (100, 1000):
            fanout[due], per_refresh[str(due)] = _count_queries(app, ids[:due])
    finally:
        token_server.close()
    seconds = timing["seconds"]
    once = served["exactly_once"] == len(ids) and served["double_refreshes"] == 0 and served["missed"] == 0
    return {
        "credentials": len(ids),
        "broker": "Redis" if settings_broker().startswith("redis") else "kombu filesystem",
        "worker": f"1 Celery node, {POOL} pool, concurrency {CONCURRENCY}, batches of "
        f"{settings_value('REFRESH_BATCH_SIZE')}, {settings_value('REFRESH_THREADS')} token requests at once",
        "token_server_latency_ms": LATENCY_MS,
        "seconds_to_refresh_all": round(seconds, 1),
        "refreshes_per_second": round(len(ids) / seconds),
        "progress": timing["progress"],
        "token_server": served,
        "double_refreshes": served["double_refreshes"],
        "fanout_queries": [fanout[100], fanout[1000]],
        "queries_per_credential": per_refresh,
        "target_met": seconds <= TARGET_SECONDS and once,
        "cpu": cpu,
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }


def settings_value(name: str):
    from django.conf import settings

    return getattr(settings, name)


def settings_broker() -> str:
    from django.conf import settings

    return settings.CELERY_BROKER_URL


def _credentials_create(token_server: TokenServerProcess, count: int) -> list:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import User
    from tokens.models import Credential, Kind, Status

    user = User.objects.create_user("bench", "bench@example.com", secrets.token_urlsafe(16))
    soon = timezone.now() + timedelta(seconds=60)  # inside the 300 s margin
    rows = []
    for i in range(count):
        rotating = i % 2 == 1
        credential = Credential(
            user=user,
            name=f"bench {i}",
            kind=Kind.REFRESH_TOKEN if rotating else Kind.CLIENT_CREDENTIALS,
            status=Status.ACTIVE,
            token_url=token_server.token_url,
            client_id=_client_id(i),
            client_auth="client_secret_post" if i % 4 < 2 else "client_secret_basic",
            access_token_expires_at=soon,
        )
        credential.client_secret = REFRESH_CLIENT[1]
        credential.access_token = f"at_old_{i}"
        if rotating:
            credential.refresh_token = token_server.refresh_tokens[i]
        rows.append(credential)
    Credential.objects.bulk_create(rows, batch_size=500)
    return [row.pk for row in rows]


def _worker_start(app) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel=WARNING"]
    command += [f"--pool={POOL}", f"--concurrency={CONCURRENCY}", "--without-gossip", "--without-mingle"]
    command += ["--without-heartbeat"]
    worker = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the Celery worker did not start")
    return worker


def _cpu_snapshot(worker_pid: int, token_server_pid: int) -> dict:
    """CPU seconds so far: the worker node (all its processes), the token server, this process (polling), the
    PostgreSQL backends of the benchmark's database, and the whole machine (/proc/stat)."""
    from django.conf import settings

    table = procstat.processes()
    backends = procstat.postgres_backends(settings.DATABASES["default"]["NAME"], table)
    return {
        "worker": {pid: procstat.process_cpu(pid) for pid in procstat.tree(worker_pid, table)},
        "token_server": {token_server_pid: procstat.process_cpu(token_server_pid)},
        "bench": {0: time.process_time()},
        "database": {pid: procstat.process_cpu(pid) for pid in backends},
        "busy": procstat.machine_busy(),
    }


def _cpu_used(before: dict, after: dict, seconds: float, count: int) -> dict:
    """CPU per refresh of each side and the cores other processes on the machine used meanwhile."""

    def spent(key: str) -> float:
        return sum(cpu - before[key].get(pid, 0.0) for pid, cpu in after[key].items())

    sides = {key: spent(key) for key in ("worker", "token_server", "database", "bench")}
    ours = sum(sides.values())
    busy = after["busy"] - before["busy"]
    return {
        **{f"{key}_ms_per_refresh": round(cpu / count * 1000, 2) for key, cpu in sides.items()},
        "other_processes_cores": round(max(0.0, busy - ours) / seconds, 2),
        # What the same work would take if it had every core to itself; a model, not a measurement.
        "seconds_on_free_cores": round(ours / (os.cpu_count() or 1), 1),
    }


def _refresh_all(count: int) -> dict:
    """Send beat's message, then watch the database until every credential has a new token."""
    from tokens.models import Credential
    from tokens.tasks import refresh_due_credentials

    tick = threading.Event()
    progress: list[int] = []
    started = time.monotonic()
    refresh_due_credentials.delay()
    while True:
        done = Credential.objects.filter(last_refreshed_at__isnull=False).count()
        elapsed = time.monotonic() - started
        while len(progress) < 3 and elapsed >= 10 * (len(progress) + 1):
            progress.append(done)
        if done >= count:
            break
        if elapsed > DEADLINE_SECONDS:
            raise RuntimeError(f"only {done} of {count} refreshed after {DEADLINE_SECONDS} s")
        tick.wait(0.2)
    seconds = time.monotonic() - started
    progress += [count] * (3 - len(progress))
    return {"seconds": seconds, "progress": progress}


def _count_queries(app, ids: list) -> tuple[int, dict]:
    """Make `ids` due again, run beat's fan-out with tasks executed eagerly; count queries per phase.

    Returns the fan-out's own queries and, over the batch tasks, queries per refreshed credential.
    """
    from celery.signals import task_postrun, task_prerun
    from django.db import connection
    from django.utils import timezone

    from tokens.models import Credential
    from tokens.tasks import refresh_due_credentials

    Credential.objects.filter(pk__in=ids).update(access_token_expires_at=timezone.now())
    counts: Counter = Counter()
    phase = {"name": "fanout"}

    def count(execute, sql, params, many, context):
        counts[phase["name"]] += 1
        return execute(sql, params, many, context)

    def before(task_id=None, task=None, **kwargs):
        if task.name.endswith("refresh_credentials"):
            phase["name"] = task_id

    def after(task_id=None, task=None, **kwargs):
        phase["name"] = "fanout"

    task_prerun.connect(before, weak=False)
    task_postrun.connect(after, weak=False)
    app.conf.task_always_eager = True
    try:
        with connection.execute_wrapper(count):
            due = refresh_due_credentials()
    finally:
        app.conf.task_always_eager = False
        task_prerun.disconnect(before)
        task_postrun.disconnect(after)
    per_batch = [n for name, n in counts.items() if name != "fanout"]
    refreshed = Credential.objects.filter(pk__in=ids, access_token_expires_at__gt=timezone.now()).count()
    assert due == len(ids) == refreshed, (due, len(ids), refreshed)
    summary = {
        "batches": len(per_batch),
        "per_batch_min": min(per_batch),
        "per_batch_max": max(per_batch),
        "per_credential": round(sum(per_batch) / len(ids), 2),
    }
    return counts["fanout"], summary


if __name__ == "__main__":
    if sys.argv[1:2] == ["token-server"]:
        _serve_tokens(int(sys.argv[2]))
    else:
        print(json.dumps(_run()), flush=True)
