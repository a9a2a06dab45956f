"""Chat streaming benchmark (issue 3): what one web process adds to a streamed reply, and how many it holds.

Three processes on 127.0.0.1: the asyncio fake upstream (bench/fake_upstream.py),
ONE uvicorn web process serving project.asgi:application on a throwaway
database, and this process driving load. Every number is measured against
calling the fake directly in the same run:

(a) added time-to-first-token and total time, one stream at a time, p50/p95 over
    200 requests (each app request is paired with a direct one started together);
(b) concurrent streams 100, 250, 500, 1000, 2000: errors, p95 added gap between
    token events, peak RSS, chunks/s and CPU µs per chunk of the web process;
(c) CPU per chunk of our httpx + SSE reader (tokens/provider/stream.py) against the
    openai SDK's streaming parse, in this process.

The load client is a bare asyncio.Protocol on uvloop: it timestamps each read
and counts "tokN" tokens with a regex, so at tens of thousands of chunks a second
the measuring side stays far cheaper than the side being measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOKENS = 200
TTFT_REQUESTS = int(os.environ.get("BENCH_CHAT_REQUESTS", 200))
TTFT_DELAY_MS = 5
STEP_DELAY_MS = 20
STEPS = tuple(int(n) for n in os.environ.get("BENCH_CHAT_STEPS", "100,250,500,1000,2000").split(","))
USERS = 50
PG_URL = "postgres://postgres@127.0.0.1:5432/"
PG_DB = "byok_bench"
REDIS_URL = "redis://127.0.0.1:6379/15"
DEADLINE_SECONDS = 540  # stop stepping up past this, so `python -m bench chat` stays near 10 minutes
TICK = os.sysconf("SC_CLK_TCK")

_TOKEN = re.compile(rb"tok\d")
_END = b"0\r\n\r\n"


# Measuring one stream.


@dataclass
class Stream:
    sent: float = 0.0
    status: int | None = None
    reads: list[tuple[float, int, int]] = field(default_factory=list)  # (time, tokens, events) per read
    done_at: float | None = None
    error: str = ""

    @property
    def tokens(self) -> int:
        return sum(r[1] for r in self.reads)

    @property
    def ttft(self) -> float | None:
        return self.reads[0][0] - self.sent if self.reads else None

    @property
    def total(self) -> float | None:
        return self.done_at - self.sent if self.done_at else None


class _Client(asyncio.Protocol):
    """Send one request; timestamp every read that carries tokens; stop at the end of the body."""

    def __init__(self, request: bytes, app: bool, stream: Stream, finished: asyncio.Future, expected: int) -> None:
        self.request, self.stream, self.finished, self.expected = request, stream, finished, expected
        self.done_marker = b"event: done" if app else b"data: [DONE]"
        self.event_marker = b'data: "' if app else b"data: {"
        self.head = b""
        self.tail = b""  # the last bytes of the previous read, so no marker is split unseen
        self.after_done: bytes | None = None
        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        stream = self.stream
        if stream.status is None:
            self.head += data
            head, sep, data = self.head.partition(b"\r\n\r\n")
            if not sep:
                return
            stream.status = int(head[9:12])
            if stream.status != 200:
                return self._finish(f"HTTP {stream.status}")
        if self.after_done is None:
            # A marker may straddle two reads; carry just too few bytes for a whole one to be counted twice.
            window = self.tail + data
            cut = window.find(self.done_marker)
            fresh = data if cut < 0 else data[: max(0, cut - len(self.tail))]
            tokens = len(_TOKEN.findall(self.tail[-3:] + fresh))
            if tokens:
                events = (self.tail[-6:] + fresh).count(self.event_marker) if self.app else tokens
                stream.reads.append((now, tokens, max(1, events)))
            if cut < 0:
                self.tail = window[-16:]
                return
            self.after_done = window[cut:]
        else:
            self.after_done += data
        if self.after_done.endswith(_END):
            stream.done_at = now
            if self.app and b'"state": "complete"' not in self.after_done:
                return self._finish("reply not complete: " + self.after_done[:200].decode(errors="replace"))
            self._finish("" if stream.tokens == self.expected else f"{stream.tokens} tokens")

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("connection lost")

    def _finish(self, error: str) -> None:
        if not self.finished.done():
            self.stream.error = error
            self.finished.set_result(None)
        self.transport.close()


async def _run_stream(port: int, request: bytes, app: bool, timeout: float, expected: int = TOKENS) -> Stream:
    loop = asyncio.get_running_loop()
    stream, finished = Stream(), loop.create_future()
    stream.sent = time.perf_counter()
    transport = None
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Client(request, app, stream, finished, expected), HOST, port), 10
        )
        await asyncio.wait_for(finished, timeout)
    except (OSError, TimeoutError) as exc:
        stream.error = stream.error or f"{type(exc).__name__}: {exc}"
    finally:
        if transport is not None:
            transport.close()
    return stream


def _direct_request(port: int, script: str) -> bytes:
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": script}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer sk-bench-direct\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _app_request(port: int, login: dict[str, str], script: str) -> bytes:
    body = urlencode({"message": script, "csrfmiddlewaretoken": login["csrftoken"]}).encode()
    head = (
        f"POST /chat/send/ HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Cookie: sessionid={login['sessionid']}; csrftoken={login['csrftoken']}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# Statistics and /proc readings.


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _gaps(streams: list[Stream]) -> tuple[list[float], list[float]]:
    """Return gaps between token events and between tokens; events or tokens in one read are 0 apart."""
    events, tokens = [], []
    for stream in streams:
        for (before, _, _), (at, tok, ev) in zip(stream.reads, stream.reads[1:], strict=False):
            events += [at - before] + [0.0] * (ev - 1)
            tokens += [at - before] + [0.0] * (tok - 1)
    return events, tokens


def _added_delay_per_token(streams: list[Stream], delay_s: float) -> list[float]:
    """Per stream: how much later than the fake's schedule its last token arrived, spread over its tokens.

    Gaps between reads say nothing once a saturated process delivers tokens in bursts;
    lateness against the schedule (one token every delay_s after the first) does.
    """
    added = []
    for stream in streams:
        if not stream.reads or stream.error or stream.tokens < 2:
            continue
        first, last = stream.reads[0][0], stream.reads[-1][0]
        added.append(max(0.0, (last - first) - (stream.tokens - 1) * delay_s) / (stream.tokens - 1))
    return added


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _busy_seconds() -> float:
    """CPU time every process on the machine has used (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def _memory_mb(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: round(int(status[key].split()[0]) / 1024, 1) for key in ("VmHWM", "VmRSS")}


# Processes: fake upstream, database, web.


class Env:
    """The three processes and what the load needs to reach them."""

    def __init__(self) -> None:
        self.fake: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.fake_port = self.web_port = 0
        self.logins: list[dict[str, str]] = []
        self.database = self.cache = ""
        self.tmp = tempfile.TemporaryDirectory(prefix="byok-bench-")

    def start_fake(self) -> None:
        self.fake = subprocess.Popen([PYTHON, "-m", "bench.fake_upstream"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.fake_port = int(self.fake.stdout.readline())

    def web_env(self) -> dict[str, str]:
        from tokens.keyring import generate_key

        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
        env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            DATABASE_URL=self.database_url,
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            ENCRYPTION_KEYS=generate_key("k1"),
            ALLOWED_HOSTS=HOST,
            OPENAI_BASE_URL=f"http://{HOST}:{self.fake_port}/v1",
            CHAT_RATE_LIMIT_PER_MINUTE="100000000",
            LOG_LEVEL="WARNING",
        )
        if self.cache == "redis":
            env["REDIS_URL"] = REDIS_URL
        return env

    def prepare_database(self) -> None:
        """PostgreSQL database byok_bench when reachable (row writes from 1,000 replies), else a temp SQLite file."""
        try:
            import psycopg

            with psycopg.connect(PG_URL + "postgres", autocommit=True, connect_timeout=3) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {PG_DB}")
            self.database_url, self.database = PG_URL + PG_DB, "postgresql"
        except Exception:
            self.database_url, self.database = f"sqlite:///{self.tmp.name}/bench.sqlite3", "sqlite"
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
            client.flushdb()  # database 15 is the benchmark's own
            self.cache = "redis"
        except Exception:
            self.cache = "database"
        env = self.web_env()
        self._env = env
        manage = [PYTHON, "manage.py"]
        subprocess.run([*manage, "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
        if self.cache == "database":
            subprocess.run([*manage, "createcachetable"], cwd=ROOT, env=env, check=True)
        out = subprocess.run(
            [PYTHON, "-m", "bench.chat_setup", str(USERS)], cwd=ROOT, env=env, check=True, capture_output=True
        )
        self.logins = json.loads(out.stdout)

    def start_web(self, app: str = "project.asgi:application") -> None:
        import socket

        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.web_port = probe.getsockname()[1]
        command = [PYTHON, "-m", "uvicorn", app, "--host", HOST, "--port", str(self.web_port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        command += ["--lifespan", "off", "--backlog", "4096"]
        self.web_log = Path(self.tmp.name) / f"web-{self.web_port}.log"
        with self.web_log.open("wb") as log:  # the app's error log would drown the progress lines
            self.web = subprocess.Popen(command, cwd=ROOT, env=self._env, stderr=log, stdout=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.web_port), timeout=1).close()
                return
            except OSError:
                if self.web.poll() is not None:
                    raise RuntimeError("uvicorn exited during start-up:\n" + self.web_log.read_text()[-3000:]) from None
                time.sleep(0.1)
        raise RuntimeError("uvicorn did not start listening within 30 s")

    def stop_web(self) -> list[str]:
        """Stop the web process; return the distinct error lines it logged."""
        self._terminate(self.web)
        lines = self.web_log.read_text(errors="replace").splitlines()
        errors = {line[:200] for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)}
        return sorted(errors)[:10]

    def stop(self) -> None:
        for process in (self.web, self.fake):
            self._terminate(process)
        self.tmp.cleanup()

    @staticmethod
    def _terminate(process: subprocess.Popen | None) -> None:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


async def _control(port: int, method: str, path: str) -> dict:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    body = await reader.readexactly(length)
    writer.close()
    return json.loads(body)


# (a) one stream at a time.


async def _one_stream(env: Env) -> dict:
    script = f"n={TOKENS} d={TTFT_DELAY_MS}"
    direct_request = _direct_request(env.fake_port, script)
    timeout = TOKENS * TTFT_DELAY_MS / 1000 + 30
    for index in range(10):  # warm up the app: imports, connections, caches
        await _run_stream(env.web_port, _app_request(env.web_port, env.logins[index % USERS], script), True, timeout)
    cpu, started, busy = _cpu_seconds(env.web.pid), time.perf_counter(), _busy_seconds()
    pairs = []
    for index in range(TTFT_REQUESTS):
        app_request = _app_request(env.web_port, env.logins[index % USERS], script)
        pairs.append(
            await asyncio.gather(
                _run_stream(env.fake_port, direct_request, False, timeout),
                _run_stream(env.web_port, app_request, True, timeout),
            )
        )
    cpu, wall, busy = _cpu_seconds(env.web.pid) - cpu, time.perf_counter() - started, _busy_seconds() - busy
    direct, app = [p[0] for p in pairs], [p[1] for p in pairs]
    errors = [s.error for s in direct + app if s.error]
    result: dict = {"requests": TTFT_REQUESTS, "token_delay_ms": TTFT_DELAY_MS, "errors": len(errors)}
    result["error_samples"] = errors[:5]
    for name, measure in (("ttft", "ttft"), ("total", "total")):
        d = [getattr(s, measure) for s in direct if not s.error]
        a = [getattr(s, measure) for s in app if not s.error]
        for q in (50, 95):
            result[f"{name}_p{q}_direct_ms"] = _ms(_pct(d, q))
            result[f"{name}_p{q}_app_ms"] = _ms(_pct(a, q))
            result[f"{name}_p{q}_added_ms"] = _ms(_pct(a, q) - _pct(d, q)) if a and d else None
    chunks = sum(s.tokens for s in app)
    result["web_cpu_us_per_chunk"] = round(cpu / max(1, chunks) * 1e6, 1)
    result["web_cpu_percent"] = round(cpu / wall * 100, 1)
    result["machine_busy_cores"] = round(busy / wall, 2)
    return result


async def _request_overhead(env: Env, count: int = 100) -> dict:
    """Web CPU per reply with a single token: session, prepare, finish, the SSE envelope."""
    cpu = _cpu_seconds(env.web.pid)
    streams = []
    for index in range(count):
        request = _app_request(env.web_port, env.logins[index % USERS], "n=1 d=0")
        streams.append(await _run_stream(env.web_port, request, True, 30, expected=1))
    cpu = _cpu_seconds(env.web.pid) - cpu
    return {
        "requests": count,
        "errors": sum(1 for s in streams if s.error),
        "web_cpu_ms_per_request": round(cpu / count * 1000, 2),
        "total_p50_ms": _ms(_pct([s.total for s in streams if s.total], 50)),
    }


# (b) many streams at once.


async def _many_streams(env: Env, n: int, app: bool) -> dict:
    group = f"{'app' if app else 'direct'}{n}-{secrets.token_hex(3)}"
    script = f"n={TOKENS} d={STEP_DELAY_MS} g={group}"
    port = env.web_port if app else env.fake_port
    timeout = 120 + TOKENS * STEP_DELAY_MS / 1000
    tasks = []
    ramp_started = time.perf_counter()
    web_cpu_ramp = _cpu_seconds(env.web.pid)
    for index in range(n):
        request = _app_request(port, env.logins[index % USERS], script) if app else _direct_request(port, script)
        tasks.append(asyncio.create_task(_run_stream(port, request, app, timeout)))
        if index % 100 == 99:
            await asyncio.sleep(0.02)  # let the accept queue drain
    # Hold every stream at the fake until all have arrived, so n really run at once.
    deadline = time.monotonic() + 90
    arrived = 0
    while time.monotonic() < deadline:
        arrived = (await _control(env.fake_port, "GET", f"/control/count?g={group}"))["arrived"]
        if arrived >= n or sum(t.done() for t in tasks) + arrived >= n:
            break
        await asyncio.sleep(0.05)
    ramp = time.perf_counter() - ramp_started
    web_cpu_ramp = _cpu_seconds(env.web.pid) - web_cpu_ramp
    fake_stats = await _control(env.fake_port, "GET", "/control/stats")
    web_cpu, client_cpu, fake_cpu = _cpu_seconds(env.web.pid), time.process_time(), fake_stats["cpu_seconds"]
    busy, load = _busy_seconds(), os.getloadavg()[0]
    started = time.perf_counter()
    await _control(env.fake_port, "POST", f"/control/release?g={group}")
    streams = await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    web_cpu = _cpu_seconds(env.web.pid) - web_cpu
    client_cpu = time.process_time() - client_cpu
    fake_cpu = (await _control(env.fake_port, "GET", "/control/stats"))["cpu_seconds"] - fake_cpu
    busy = _busy_seconds() - busy
    errors = [s.error for s in streams if s.error]
    events, tokens = _gaps(streams)
    chunks = sum(s.tokens for s in streams)
    reads = sum(len(s.reads) for s in streams)
    token_events = sum(r[2] for s in streams for r in s.reads)
    result = {
        "streams": n,
        "arrived_at_fake": arrived,
        "ramp_s": round(ramp, 2),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "stream_phase_s": round(wall, 2),
        "chunks": chunks,
        "chunks_per_s": round(chunks / wall),
        "token_events_per_read": round(token_events / max(1, reads), 2),
        "tokens_per_event": round(chunks / max(1, token_events), 2),
        "client_cpu_us_per_chunk": round(client_cpu / max(1, chunks) * 1e6, 1),
        "fake_cpu_us_per_chunk": round(fake_cpu / max(1, chunks) * 1e6, 1),
        # Other people's work on this 2-core machine (tests, browsers) during the stream phase, in cores.
        "other_processes_cores": round(max(0.0, busy - web_cpu - client_cpu - fake_cpu) / wall, 2),
        "loadavg_1m_at_start": round(load, 2),
    }
    for q in (50, 95, 99):
        result[f"event_gap_p{q}_ms"] = _ms(_pct(events, q))
        result[f"token_gap_p{q}_ms"] = _ms(_pct(tokens, q))
    result["event_gap_max_ms"] = _ms(max(events, default=None))
    late = _added_delay_per_token(streams, STEP_DELAY_MS / 1000)
    result["late_per_token_p50_ms"] = _ms(_pct(late, 50))
    result["late_per_token_p95_ms"] = _ms(_pct(late, 95))
    result["offered_chunks_per_s"] = round(n * 1000 / STEP_DELAY_MS)
    if app:
        result["ttft_p50_ms"] = _ms(_pct([s.ttft for s in streams if s.ttft], 50))
        result["web_cpu_us_per_chunk"] = round(web_cpu / max(1, chunks) * 1e6, 1)
        result["web_cpu_percent"] = round(web_cpu / wall * 100, 1)
        result["web_ramp_cpu_ms_per_request"] = round(web_cpu_ramp / n * 1000, 2)
        result["web_memory_mb"] = _memory_mb(env.web.pid)
    return result


async def _steps(env: Env, started: float) -> list[dict]:
    steps = []
    for n in STEPS:
        if time.monotonic() - started > DEADLINE_SECONDS:
            steps.append({"streams": n, "skipped": "time budget"})
            break
        direct = await _many_streams(env, n, app=False)
        await asyncio.sleep(1)
        app = await _many_streams(env, n, app=True)
        step = {"streams": n, "direct": direct, "app": app}
        for q in (50, 95, 99):
            for unit in ("event", "token"):
                key = f"{unit}_gap_p{q}_ms"
                step[f"added_{key}"] = round(app[key] - direct[key], 2)
        for q in (50, 95):
            key = f"late_per_token_p{q}_ms"
            step[f"added_{key}"] = round(max(0.0, app[key] - direct[key]), 2)
        steps.append(step)
        print(
            f"  {n} streams: errors {app['errors']}, p95 added delay per token "
            f"{step['added_late_per_token_p95_ms']} ms, p95 added event gap {step['added_event_gap_p95_ms']} ms, "
            f"{app['chunks_per_s']} chunks/s, web CPU {app['web_cpu_percent']}%",
            flush=True,
        )
        await asyncio.sleep(2)
        if app["errors"]:
            break
    return steps


# (c) the SDK's parse against ours.


def _sse_body(n: int) -> list[bytes]:
    """The fake's frames for one n-token reply, de-chunked: one SSE event per element."""
    from tests.fakes.openai import _ChunkEncoder, _Reply

    pieces = tuple(f"tok{i} " for i in range(n))
    body = {"model": "gpt-4o-mini", "stream_options": {"include_usage": True}}
    encoder = _ChunkEncoder(_Reply("".join(pieces), pieces, completion_tokens=n), body)
    raw = b"".join([*encoder.head(), encoder.tail()])
    events = []
    while raw:
        size, _, raw = raw.partition(b"\r\n")
        size = int(size, 16)
        if size:
            events.append(raw[:size])
        raw = raw[size + 2 :]
    return events


async def _parse_costs(env: Env) -> dict:
    import httpx
    import openai

    from tokens.provider import Bearer, Completion, client, stream_chat

    events = _sse_body(TOKENS)

    async def handler(request: httpx.Request) -> httpx.Response:
        async def body():
            for event in events:
                yield event

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    messages = [{"role": "user", "content": "n=200 d=0"}]

    async def ours(http: httpx.AsyncClient, base_url: str, streams: int) -> int:
        client._clients[asyncio.get_running_loop()] = {False: http}
        bearer = Bearer(credential_id="1", base_url=base_url, token="sk-bench", guarded=False)
        text = ""
        for _ in range(streams):
            completion = Completion(model="gpt-4o-mini")
            async for part in stream_chat(bearer, model="gpt-4o-mini", messages=messages, completion=completion):
                text += part.text
        return text.count("tok")

    async def sdk(http: httpx.AsyncClient, base_url: str, streams: int) -> int:
        client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, http_client=http, max_retries=0)
        text = ""
        for _ in range(streams):
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
        return text.count("tok")

    async def cost(run, http: httpx.AsyncClient, base_url: str, streams: int) -> float:
        await run(http, base_url, 3)  # warm up
        best = float("inf")
        for _ in range(3):
            cpu = time.process_time()
            tokens = await run(http, base_url, streams)
            assert tokens == streams * TOKENS, tokens
            best = min(best, (time.process_time() - cpu) / tokens * 1e6)
        return round(best, 1)

    result = {"openai_version": openai.__version__, "httpx_version": httpx.__version__}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        result["in_memory_ours_us_per_chunk"] = await cost(ours, mock, "http://fake.invalid/v1", 100)
        result["in_memory_sdk_us_per_chunk"] = await cost(sdk, mock, "http://fake.invalid/v1", 100)
    base_url = f"http://{HOST}:{env.fake_port}/v1"
    async with httpx.AsyncClient(timeout=30) as http:
        result["network_ours_us_per_chunk"] = await cost(ours, http, base_url, 40)
        result["network_sdk_us_per_chunk"] = await cost(sdk, http, base_url, 40)
    client._clients.pop(asyncio.get_running_loop(), None)
    ours_cpu, sdk_cpu = result["in_memory_ours_us_per_chunk"], result["in_memory_sdk_us_per_chunk"]
    result["winner"] = "httpx + SSE reader (tokens/provider/stream.py)" if ours_cpu < sdk_cpu else "openai SDK"
    result["sdk_over_ours"] = round(sdk_cpu / ours_cpu, 1)
    return result


# The fake's own ceiling.


async def _fake_ceiling(env: Env, n: int = 200) -> dict:
    """Direct streams with no pacing: how fast the fake (and this client) move chunks."""
    stats = await _control(env.fake_port, "GET", "/control/stats")
    fake_cpu, client_cpu, started = stats["cpu_seconds"], time.process_time(), time.perf_counter()
    streams = await asyncio.gather(
        *(_run_stream(env.fake_port, _direct_request(env.fake_port, f"n={TOKENS} d=0"), False, 60) for _ in range(n))
    )
    wall = time.perf_counter() - started
    stats = await _control(env.fake_port, "GET", "/control/stats")
    chunks = sum(s.tokens for s in streams)
    return {
        "streams": n,
        "errors": sum(1 for s in streams if s.error),
        "chunks_per_s": round(chunks / wall),
        "fake_cpu_us_per_chunk": round((stats["cpu_seconds"] - fake_cpu) / chunks * 1e6, 1),
        "client_cpu_us_per_chunk": round((time.process_time() - client_cpu) / chunks * 1e6, 1),
    }


def _held(steps: list[dict]) -> int:
    return max((s["streams"] for s in steps if "app" in s and s["app"]["errors"] == 0), default=0)


async def _run(env: Env) -> dict:
    started = time.monotonic()
    result: dict = {
        "setup": {
            "fake": "bench/fake_upstream.py (asyncio + uvloop, FakeOpenAI's wire format)",
            "web": "one uvicorn process (uvloop, httptools) serving project.asgi:application",
            "database": env.database,
            "cache": env.cache,
            "tokens_per_reply": TOKENS,
            "step_token_delay_ms": STEP_DELAY_MS,
        }
    }
    print("  fake ceiling", flush=True)
    result["fake_ceiling"] = await _fake_ceiling(env)
    print("  one stream at a time", flush=True)
    result["one_stream"] = await _one_stream(env)
    result["request_overhead"] = await _request_overhead(env)
    print("  concurrent streams", flush=True)
    result["concurrency"] = await _steps(env, started)
    result["max_streams_zero_errors"] = _held(result["concurrency"])
    result["web_memory_mb"] = _memory_mb(env.web.pid)
    result["web_errors_logged"] = env.stop_web()
    print("  parse cost: SDK against ours", flush=True)
    result["parse"] = await _parse_costs(env)
    return result


def main() -> dict:
    import django
    import uvloop

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    env = Env()
    try:
        env.start_fake()
        env.prepare_database()
        env.start_web()
        return uvloop.run(_run(env))
    finally:
        env.stop()


def table(result: dict) -> str:
    one, parse = result["one_stream"], result["parse"]
    rows = [
        "| measure | direct | through app | added | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, label, targets in (
        ("ttft", "time to first token", {50: "≤ 5 ms", 95: "≤ 15 ms"}),
        ("total", "total time", {}),
    ):
        for q in (50, 95):
            rows.append(
                f"| {label} p{q} (ms) | {one[f'{name}_p{q}_direct_ms']} | {one[f'{name}_p{q}_app_ms']} "
                f"| **{one[f'{name}_p{q}_added_ms']}** | {targets.get(q, '')} |"
            )
    rows += ["", "Concurrent streams, one web process:", "", *_step_rows(result["concurrency"])]
    rows += [
        "",
        "| parse path (CPU µs per chunk, in process) | in memory | over 127.0.0.1 |",
        "| --- | --- | --- |",
        f"| httpx + SSE reader (tokens/provider/stream.py) | {parse['in_memory_ours_us_per_chunk']} "
        f"| {parse['network_ours_us_per_chunk']} |",
        f"| openai {parse['openai_version']} SDK stream | {parse['in_memory_sdk_us_per_chunk']} "
        f"| {parse['network_sdk_us_per_chunk']} |",
        "",
        f"Most concurrent streams with zero errors: **{result['max_streams_zero_errors']}**. "
        f"Web CPU per reply (1 token): {result['request_overhead']['web_cpu_ms_per_request']} ms. "
        f"Fake ceiling: {result['fake_ceiling']['chunks_per_s']:,} chunks/s. "
        f"Database {result['setup']['database']}, cache {result['setup']['cache']}.",
    ]
    return "\n".join(rows)


def _step_rows(steps: list[dict]) -> list[str]:
    rows = [
        "| streams | errors | p95 added delay per token (ms) | p95 added gap between events (ms) "
        "| chunks/s delivered / offered | web CPU µs/chunk | web CPU % | peak RSS (MB) | other load (cores) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for step in steps:
        if "app" not in step:
            rows.append(f"| {step['streams']} | skipped ({step.get('skipped')}) | | | | | | | |")
            continue
        app = step["app"]
        rows.append(
            f"| {step['streams']} | {app['errors']} | **{step['added_late_per_token_p95_ms']}** "
            f"| {step['added_event_gap_p95_ms']} | {app['chunks_per_s']:,} / {app['offered_chunks_per_s']:,} "
            f"| {app['web_cpu_us_per_chunk']} | {app['web_cpu_percent']} "
            f"| {app['web_memory_mb']['VmHWM']} | {app['other_processes_cores']} |"
        )
    return rows
