"""Provider boundary benchmark (issue 7): parse CPU before/after, and a web process under hostile upstreams.

(a) CPU per chunk and per reply of reading one 200-token stream, in this process over httpx.MockTransport:
    "before" = the reader on main before issue 7 (chat/upstream.py at a4f0193: bytes buffer re-split per read),
    "after" = tokens.provider.stream_chat (httpx-sse's line and event decoders fed from a capped byte loop,
    per-read deadlines), and "httpx-sse alone" = EventSource.aiter_sse + json.loads with no caps or deadlines.
(b) ONE uvicorn web process (as in bench_chat) whose provider is bench/hostile_upstream.py: /healthz latency
    sampled every 20 ms with no load, then while 10 chats read 5 MB without a line break ("line") and 10 read
    13.6 MB replies ("huge"); the web process's peak and final RSS; and how long GET /chat/models/ takes
    against a /models that trickles one byte every 50 ms (CHECK_TIMEOUT is 10 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time

import httpx

from bench import bench_chat
from bench.bench_chat import HOST, PYTHON, ROOT, Env, _memory_mb, _ms, _pct, _sse_body

TOKENS = 200
STREAMS = 100


# (a) CPU per chunk.


async def _before(http: httpx.AsyncClient, url: str) -> str:
    """The reader on main before issue 7 (chat/upstream.py `_read_events`, a4f0193), inlined."""
    text = []
    async with http.stream("POST", url, content=b"{}") as response:
        buffer = b""
        async for raw in response.aiter_raw():
            buffer += raw
            if b"\r" in buffer:
                buffer = buffer.replace(b"\r\n", b"\n")
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue
                    chunk = json.loads(data)
                    for choice in chunk.get("choices") or ():
                        text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


async def _after(http: httpx.AsyncClient, url: str) -> str:
    from tokens.provider import Bearer, Completion, client, stream_chat

    client._clients[asyncio.get_running_loop()] = {False: http}
    bearer = Bearer("", url.removesuffix("/chat/completions"), "sk-bench", guarded=False)
    completion = Completion(model="gpt-4o-mini")
    parts = [d.text async for d in stream_chat(bearer, model="gpt-4o-mini", messages=[], completion=completion)]
    return "".join(parts)


async def _library(http: httpx.AsyncClient, url: str) -> str:
    from httpx_sse import aconnect_sse

    text = []
    async with aconnect_sse(http, "POST", url, content=b"{}") as source:
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                break
            for choice in json.loads(event.data).get("choices") or ():
                text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


async def _parse_costs() -> dict:
    events = _sse_body(TOKENS)

    async def handler(request: httpx.Request) -> httpx.Response:
        async def body():
            for event in events:
                yield event

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    url = "http://fake.invalid/v1/chat/completions"
    result = {}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        for name, reader in (("before", _before), ("after", _after), ("httpx_sse_alone", _library)):
            await reader(http, url)  # warm up
            best = float("inf")
            for _ in range(5):
                cpu = time.process_time()
                for _ in range(STREAMS):
                    assert (await reader(http, url)).count("tok") == TOKENS
                best = min(best, time.process_time() - cpu)
            result[name] = {
                "us_per_chunk": round(best / (STREAMS * TOKENS) * 1e6, 1),
                "us_per_reply": round(best / STREAMS * 1e6),
            }
    return result


# (b) A web process under hostile upstreams.


class _Sampler(threading.Thread):
    """GET /healthz every 20 ms until stopped; keep each latency in seconds (or None on failure)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.latencies, self.failures, self.stop = url, [], 0, threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.wait(0.02):
                started = time.perf_counter()
                try:
                    ok = http.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - started)
                self.failures += not ok


def _chat(base: str, login: dict, model: str) -> int:
    cookies = {"sessionid": login["sessionid"], "csrftoken": login["csrftoken"]}
    data = {"message": "hi", "model": model, "csrfmiddlewaretoken": login["csrftoken"]}
    size = 0
    with httpx.Client(timeout=120, cookies=cookies) as http, http.stream("POST", f"{base}/chat/send/", data=data) as r:
        for chunk in r.iter_bytes():
            size += len(chunk)
    return size


def _stats(latencies: list[float]) -> dict:
    return {
        "samples": len(latencies),
        "p50_ms": _ms(_pct(latencies, 50)),
        "p95_ms": _ms(_pct(latencies, 95)),
        "p99_ms": _ms(_pct(latencies, 99)),
        "max_ms": _ms(max(latencies) if latencies else None),
    }


class _Env(Env):
    def web_env(self) -> dict[str, str]:
        return {**super().web_env(), "SECURE_SSL_REDIRECT": "false"}  # plain http on 127.0.0.1


def _chats(base: str, login: dict, model: str, until: float, sizes: list[int]) -> None:
    while time.perf_counter() < until:
        sizes.append(_chat(base, login, model))


def _hostile_run(env: Env, base: str, model: str, streams: int = 10, seconds: float = 10) -> dict:
    """`streams` chats in a loop for `seconds` against the hostile upstream, /healthz sampled all along."""
    sampler = _Sampler(f"{base}/healthz")
    sampler.start()
    until, sizes = time.perf_counter() + seconds, []
    threads = [
        threading.Thread(target=_chats, args=(base, env.logins[i % len(env.logins)], model, until, sizes), daemon=True)
        for i in range(streams)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    return {
        "streams": streams,
        "chats": len(sizes),
        "seconds": round(seconds, 1),
        **_stats(sampler.latencies),
        "healthz_failures": sampler.failures,
        "rss_mb": _memory_mb(env.web.pid),
    }


def main() -> dict:
    import django

    os.environ.setdefault("DEBUG", "true")  # this process only parses; the web process gets its own settings
    django.setup()
    result = {"parse": asyncio.run(_parse_costs())}
    # Its own database and Redis, so it can run beside the chat benchmark (BENCH_REDIS_URL: a Redis db it may flush).
    bench_chat.PG_DB = os.environ.get("BENCH_PROVIDER_PG_DB", "byok_bench_provider")
    bench_chat.REDIS_URL = os.environ.get("BENCH_REDIS_URL", bench_chat.REDIS_URL)
    env = _Env()
    hostile = subprocess.Popen([PYTHON, "-m", "bench.hostile_upstream"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        env.fake_port = int(hostile.stdout.readline())
        env.prepare_database()
        env.start_web()
        base = f"http://{HOST}:{env.web_port}"
        idle = _Sampler(f"{base}/healthz")
        idle.start()
        time.sleep(3)
        idle.stop.set()
        idle.join()
        result["healthz_idle"] = {**_stats(idle.latencies), "rss_mb": _memory_mb(env.web.pid)}
        result["hostile_line_5mb"] = _hostile_run(env, base, "line")
        result["hostile_reply_13_6mb"] = _hostile_run(env, base, "huge")
        cookies = {"sessionid": env.logins[0]["sessionid"]}
        started = time.perf_counter()
        with httpx.Client(timeout=120, cookies=cookies) as http:
            answer = http.get(f"{base}/chat/models/")
        said = answer.json().get("error", "") if answer.status_code == 200 else answer.text[:120]
        result["trickled_models"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "status": answer.status_code,
            "error": said[:160],
        }
        result["rss_mb_after"] = _memory_mb(env.web.pid)
        result["web_errors"] = env.stop_web()
        result["database"] = env.database
    finally:
        env.stop()
        hostile.terminate()
    return result


def table(result: dict) -> str:
    parse = result["parse"]
    rows = ["| reader | CPU µs per chunk | CPU µs per 200-chunk reply |", "| --- | --- | --- |"]
    rows += [f"| {name} | {v['us_per_chunk']} | {v['us_per_reply']} |" for name, v in parse.items()]
    rows += [
        "",
        "| run | /healthz samples | p50 ms | p95 ms | p99 ms | max ms | failures | web RSS peak / now MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in ("healthz_idle", "hostile_line_5mb", "hostile_reply_13_6mb"):
        run = result[key]
        rss = run["rss_mb"]
        rows.append(
            f"| {key} | {run['samples']} | {run['p50_ms']} | {run['p95_ms']} | {run.get('p99_ms')} | {run['max_ms']} "
            f"| {run.get('healthz_failures', 0)} "
            f"| {rss['VmHWM']} / {rss['VmRSS']} |"
        )
    rows.append(
        f"\ntrickled /models answered in {result['trickled_models']['seconds']} s: {result['trickled_models']['error']}"
    )
    return "\n".join(rows)
