"""The app as production runs it, on loopback, for the benchmarks that need real processes (load, provider).

`Stack` sets up a fresh PostgreSQL database (dropped and created; dropped again at the end), two flushed Redis
databases (broker and cache) on one Redis server, a fake upstream command, and the app with DEBUG=false,
SECURE_SSL_REDIRECT=false (a TLS proxy in front), fresh SECRET_KEY and ENCRYPTION_KEYS, uvicorn (uvloop and
httptools, its defaults when installed) with `web_workers` worker processes and optionally one Celery worker and
beat. People `<prefix>0000`... get one password and an API-key credential with no base URL, so their chats go to
OPENAI_BASE_URL, the fake. Each process runs in its own process group, logging into `work/<name>.log`.

`python -m bench.stack setup|replies` are the steps that run in a child with the app's environment, so Django
never mixes with the benchmark's own process.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack(contextlib.ExitStack):
    """Use as `with Stack(...) as stack:`; `stack.url` is the web address, `stack.pids` each process group's leader.

    upstream: the fake upstream's command line; `{port}` in it is replaced by the port it must listen on.
    redis_dbs: (broker, cache) database numbers on BENCH_REDIS_URL's server (default 127.0.0.1:6379); flushed.
    """

    def __init__(
        self,
        name: str,
        *,
        upstream: list[str],
        people: int,
        prefix: str,
        model: str,
        web_workers: int = 1,
        celery: bool = False,
        redis_dbs: tuple[int, int] = (8, 9),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.database = name
        self.redis_server = "redis://" + urlsplit(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")).netloc
        self.redis_dbs, self.people, self.prefix = redis_dbs, people, prefix
        self.upstream_port, web_port = free_port(), free_port()
        self.upstream = [part.replace("{port}", str(self.upstream_port)) for part in upstream]
        self.web_workers, self.celery = web_workers, celery
        self.url = f"http://127.0.0.1:{web_port}"
        self.work = Path(tempfile.mkdtemp(prefix=f"byok-{name}-"))  # kept: the processes' logs are there
        drop = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "OPENAI_BASE_URL")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            DEBUG="false",
            SECURE_SSL_REDIRECT="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            ENCRYPTION_KEYS="k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
            DATABASE_URL=PG_URL + name,
            REDIS_URL=f"{self.redis_server}/{redis_dbs[1]}",
            CELERY_BROKER_URL=f"{self.redis_server}/{redis_dbs[0]}",
            OPENAI_BASE_URL=f"http://127.0.0.1:{self.upstream_port}/v1",
            DEFAULT_MODEL=model,
            ALLOWED_HOSTS="127.0.0.1",
            FORWARDED_ALLOW_IPS="127.0.0.1",
            VAR_DIR=str(self.work / "var"),
            LOG_LEVEL="WARNING",
            **(extra_env or {}),
        )
        self.pids: dict[str, int] = {}
        self.password = ""

    def __enter__(self) -> Stack:
        super().__enter__()
        try:
            self._stores_fresh()
            self.callback(self._database_drop)
            self.password = self.step("setup", str(self.people), self.prefix)["password"]
            self._processes_start()
            self._wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def step(self, name: str, *args: str) -> dict:
        """Run a step of this module in a child with the app's environment; its JSON answer."""
        command = [sys.executable, "-m", "bench.stack", name, *args]
        out = subprocess.run(command, cwd=ROOT, env=self.env, check=True, stdout=subprocess.PIPE, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def cpu_snapshot(self) -> dict:
        """CPU seconds per process of each group (and PostgreSQL's backends for this database), and the machine's."""
        table = procstat.processes()
        groups = {name: procstat.tree(pid, table) for name, pid in self.pids.items()}
        groups["PostgreSQL"] = procstat.postgres_backends(self.database, table)
        cpu = {name: {pid: procstat.process_cpu(pid) for pid in members} for name, members in groups.items()}
        return {"groups": cpu, "busy": procstat.machine_busy()}

    def sign_in(self, username: str, address: str) -> httpx.Client:
        """An httpx client signed in as `username` through the log-in form, as a browser at `address` (an IP
        address, so per-address rate limits see different people) behind the TLS proxy."""
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": address}
        headers["Origin"] = "https://" + urlsplit(self.url).netloc
        http = httpx.Client(base_url=self.url, headers=headers, timeout=120)

        def cookies_back(response: httpx.Response) -> None:
            # The jar keeps Secure cookies but sends them over https only; send them over the plain loopback hop.
            http.headers["Cookie"] = "; ".join(f"{c.name}={c.value}" for c in http.cookies.jar)

        http.event_hooks["response"] = [cookies_back]
        http.get("/accounts/login/")
        form = {"username": username, "password": self.password, "csrfmiddlewaretoken": http.cookies["csrftoken"]}
        answer = http.post("/accounts/login/", data=form)
        if answer.status_code != 302 or "/accounts/" in answer.headers.get("location", "/accounts/"):
            raise RuntimeError(f"sign-in as {username} refused: HTTP {answer.status_code}")
        return http

    # Set-up and tear-down.

    def _stores_fresh(self) -> None:
        import psycopg
        import redis

        with psycopg.connect(PG_URL + "postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {self.database}")
        for db in self.redis_dbs:
            redis.Redis.from_url(f"{self.redis_server}/{db}").flushdb()

    def _database_drop(self) -> None:
        import psycopg

        with psycopg.connect(PG_URL + "postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def _processes_start(self) -> None:
        python, port = sys.executable, self.url.rsplit(":", 1)[1]
        commands = {
            "fake upstream": self.upstream,
            "web": [
                *(python, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", port),
                *("--workers", str(self.web_workers), "--no-access-log"),
                *("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"),
            ],
        }
        if self.celery:
            commands["celery worker"] = [
                *(python, "-m", "celery", "-A", "project", "worker", "--loglevel", "WARNING"),
                *("--concurrency", "2", "--without-gossip", "--without-mingle"),
            ]
            commands["celery beat"] = [python, "-m", "celery", "-A", "project", "beat", "--loglevel", "WARNING"]
        for name, command in commands.items():
            log = open(self.work / f"{name.replace(' ', '-')}.log", "w")  # noqa: SIM115 (closed with the stack)
            self.callback(log.close)
            process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.callback(_stop, process)
            self.pids[name] = process.pid

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the web processes did not answer {self.url}/healthz within 90 s")


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# Steps run inside a child with the app's environment (`python -m bench.stack setup|replies ...`).


def _setup(people: str, prefix: str) -> dict:
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
    hashed = make_password(password)  # hashing hundreds of times would only slow the set-up; sign-in still checks it
    names = [f"{prefix}{n:04d}" for n in range(int(people))]
    User.objects.bulk_create([User(username=name, email=f"{name}@example.com", password=hashed) for name in names])
    for user in User.objects.filter(username__in=names):
        credential = Credential(user=user, name="Fake upstream", kind=Kind.API_KEY, status=Status.ACTIVE)
        credential.hint, credential.is_default = mask("sk-test"), True
        credential.api_key = "sk-test"
        credential.save()
    return {"password": password}


def _replies(prefix: str, wait: str = "60") -> dict:
    """Wait until no reply of the people is still streaming (at most `wait` seconds), then count their messages by
    role and state, and say how long the wait took."""
    import django

    django.setup()
    from django.db.models import Count

    from chat.models import Message, Role, State

    people = Message.objects.filter(conversation__user__username__startswith=prefix)
    started = time.monotonic()
    while people.filter(state=State.STREAMING).exists() and time.monotonic() < started + float(wait):
        time.sleep(0.5)
    states = people.filter(role=Role.ASSISTANT).values("state").annotate(n=Count("pk"))
    return {
        "user_messages": people.filter(role=Role.USER).count(),
        "assistant_states": {row["state"]: row["n"] for row in states.order_by("state")},
        "waited_s": round(time.monotonic() - started, 1),
    }


if __name__ == "__main__":
    print(json.dumps({"setup": _setup, "replies": _replies}[sys.argv[1]](*sys.argv[2:])), flush=True)
