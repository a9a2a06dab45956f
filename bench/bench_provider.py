"""Provider boundary benchmark (issue 7): parse CPU before/after, and a web process under hostile upstreams.

(a) CPU per chunk and per reply of reading one 200-token stream, in this process over httpx.MockTransport:
    "before" = the reader on main before issue 7 (chat/upstream.py at a4f0193: bytes buffer re-split per read),
    "after" = tokens.provider.stream_chat (our incremental event splitter, orjson, capped, per-read deadlines), and
    "httpx-sse alone" = httpx-sse's EventSource.aiter_sse + json.loads with no caps or deadlines. Best of 5 rounds
    of 100 replies, process CPU time (robust under contention).
(b) ONE web process as production runs it (bench/stack.py: uvicorn with uvloop and httptools, DEBUG=false,
    PostgreSQL and Redis) whose provider is bench/hostile_upstream.py. /healthz latency is sampled every 20 ms with
    no load, then while 10 people chat in a loop for 10 s (each chat read to its end), in turn: replies of 5 MB with
    no line break ("line"), 13.6 MB replies ("huge"), and one byte every 50 ms for ever ("trickle"; the web process
    runs with UPSTREAM_FIRST_TOKEN_TIMEOUT = BENCH_PROVIDER_FIRST_TOKEN_S, 15 s, instead of 600 s, so the run ends,
    and with no per-person rate limit, which is not what is measured). After each run: how each of its replies was
    saved (one still `streaming` 60 s after its chat ended is a bug), the web process's CPU seconds and RSS. Then
    how long GET /chat/models/ takes against a /models that trickles one byte every 50 ms (CHECK_TIMEOUT is 10 s),
    and the final RSS. BENCH_PROVIDER_RUNS picks runs (default line,huge,trickle).

Its own PostgreSQL database (BENCH_PROVIDER_PG_DB, byok_bench_provider) and Redis databases 10 and 11 on
BENCH_REDIS_URL's server, so it can run beside the load benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

from bench import procstat
from bench.stack import Stack

TOKENS = 200
STREAMS = 100
CHATS = 10
SECONDS = 10
PREFIX = "hostile"
FIRST_TOKEN_S = os.environ.get("BENCH_PROVIDER_FIRST_TOKEN_S", "15")


def _sse_body(tokens: int) -> list[bytes]:
    """A 200-token reply as OpenAI streams it: one event per token, a finish event, a usage event and [DONE]."""
    head = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,'
    events = [head + b'"delta":{"content":"tok%d "},"finish_reason":null}]}\n\n' % i for i in range(tokens)]
    events.append(head + b'"delta":{},"finish_reason":"stop"}]}\n\n')
    events.append(b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":%d}}\n\n' % tokens)
    events.append(b"data: [DONE]\n\n")
    return events


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

    client._transports[asyncio.get_running_loop()] = {False: http._transport}  # the fake, under stream_chat
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


def _memory_mb(pid: int) -> dict[str, float]:
    """Peak (VmHWM) and current (VmRSS) resident memory of a process, MB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if line.startswith(("VmHWM", "VmRSS")))
    return {name: round(int(value.split()[0]) / 1024, 1) for name, value in fields.items()}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _pct(values: list[float], q: float) -> float | None:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else None


class _Sampler(threading.Thread):
    """GET /healthz every 20 ms until stopped; keep each latency in seconds (and count failures)."""

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

    def stats(self) -> dict:
        latencies = self.latencies
        return {
            "samples": len(latencies),
            "p50_ms": _ms(_pct(latencies, 50)),
            "p95_ms": _ms(_pct(latencies, 95)),
            "p99_ms": _ms(_pct(latencies, 99)),
            "max_ms": _ms(max(latencies) if latencies else None),
            "healthz_failures": self.failures,
        }


def _chat(http: httpx.Client, model: str, ends: list) -> None:
    """Send one message and read the streamed reply to its end; keep (bytes read, seconds, last event's data)."""
    form = {"message": "hi", "model": model, "csrfmiddlewaretoken": http.cookies["csrftoken"]}
    size, last, started = 0, "", time.perf_counter()
    try:
        with http.stream("POST", "/chat/send/", data=form, headers={"Accept": "text/event-stream"}) as answer:
            for line in answer.iter_lines():
                size += len(line) + 1
                if line.startswith("data:"):
                    last = line[5:].strip()[:300]
    except httpx.HTTPError as exc:
        last = f"client error: {exc!r}"[:300]
    ends.append((size, time.perf_counter() - started, last))


def _chats(http: httpx.Client, model: str, until: float, ends: list) -> None:
    while True:
        _chat(http, model, ends)
        if time.perf_counter() >= until:
            return


def _hostile_run(stack: Stack, run: int, model: str) -> dict:
    """CHATS people chat in a loop for SECONDS (each chat read to its end) against the hostile upstream's `model`,
    /healthz sampled all along; then how their replies were saved."""
    people = range(run * CHATS, (run + 1) * CHATS)
    clients = [stack.sign_in(f"{PREFIX}{n:04d}", f"198.18.0.{n + 1}") for n in people]
    sampler, ends = _Sampler(f"{stack.url}/healthz"), []
    web = stack.pids["web"]
    cpu = procstat.process_cpu(web)
    sampler.start()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=_chats, args=(http, model, started + SECONDS, ends), daemon=True) for http in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    for http in clients:
        http.close()
    return {
        "chats": len(ends),
        "seconds": round(seconds, 1),
        "chat_seconds_max": round(max(s for _, s, _ in ends), 1) if ends else None,
        **sampler.stats(),
        "web_cpu_s": round(procstat.process_cpu(web) - cpu, 2),
        "rss_mb": _memory_mb(web),
        "browser_bytes_max": max((size for size, _, _ in ends), default=0),
        "last_events": sorted({last for _, _, last in ends}),
        "replies": stack.step("replies", f"{PREFIX}{run:03d}"),  # the run's people: hostile0000..0009 is run 0
    }


def main() -> dict:
    os.environ.setdefault("DEBUG", "true")  # this process only parses; the web processes get their own settings
    import django

    django.setup()
    load = [round(v, 2) for v in os.getloadavg()]
    result: dict = {"load_average_before": load, "parse": asyncio.run(_parse_costs())}
    runs = os.environ.get("BENCH_PROVIDER_RUNS", "line,huge,trickle").split(",")
    upstream = [sys.executable, "-m", "bench.hostile_upstream", "{port}"]
    stack = Stack(
        os.environ.get("BENCH_PROVIDER_PG_DB", "byok_bench_provider"),
        upstream=upstream,
        people=len(runs) * CHATS,
        prefix=PREFIX,
        model="line",
        redis_dbs=(10, 11),
        # Ten people start a chat every second or so: above the per-person rate limit, which is not what is measured.
        extra_env={"UPSTREAM_FIRST_TOKEN_TIMEOUT": FIRST_TOKEN_S, "CHAT_RATE_LIMIT_PER_MINUTE": "10000"},
    )
    print(f"logs: {stack.work}", flush=True)
    with stack:
        web = stack.pids["web"]
        idle = _Sampler(f"{stack.url}/healthz")
        idle.start()
        time.sleep(3)
        idle.stop.set()
        idle.join()
        result["healthz_idle"] = {**idle.stats(), "rss_mb": _memory_mb(web)}
        for run, model in enumerate(runs):
            key = f"hostile_{model}" + (f"_{run}" if runs.count(model) > 1 else "")
            result[key] = _hostile_run(stack, run, model)
            print(json.dumps({key: result[key]}), flush=True)
        http = stack.sign_in(f"{PREFIX}0000", "198.18.0.1")
        started = time.perf_counter()
        answer = http.get("/chat/models/")
        http.close()
        said = answer.json().get("error", "") if answer.status_code == 200 else answer.text[:120]
        result["trickled_models"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "status": answer.status_code,
            "error": said[:160],
        }
        result["rss_mb_after"] = _memory_mb(web)
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    result["setup"] = "1 uvicorn process (uvloop, httptools), DEBUG=false, PostgreSQL + Redis"
    return result


def table(result: dict) -> str:
    rows = ["| reader | CPU µs per chunk | CPU µs per 200-chunk reply |", "| --- | --- | --- |"]
    rows += [f"| {name} | {v['us_per_chunk']} | {v['us_per_reply']} |" for name, v in result["parse"].items()]
    rows += [
        "",
        "| run | /healthz samples | p50 ms | p95 ms | p99 ms | max ms | failures | web CPU s | web RSS peak / now MB "
        "| replies saved as | longest chat s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, run in result.items():
        if not key.startswith(("healthz_idle", "hostile_")):
            continue
        rss, states = run["rss_mb"], run.get("replies", {}).get("assistant_states", {})
        saved = ", ".join(f"{n} {state}" for state, n in states.items()) or "–"
        rows.append(
            f"| {key} | {run['samples']} | {run['p50_ms']} | {run['p95_ms']} | {run['p99_ms']} | {run['max_ms']} "
            f"| {run['healthz_failures']} | {run.get('web_cpu_s', '–')} | {rss['VmHWM']} / {rss['VmRSS']} "
            f"| {saved} | {run.get('chat_seconds_max', '–')} |"
        )
    models = result["trickled_models"]
    rows.append(f"\ntrickled /models answered in {models['seconds']} s (HTTP {models['status']}): {models['error']}")
    rows.append(
        f"web RSS at the end: {result['rss_mb_after']['VmRSS']} MB (peak {result['rss_mb_after']['VmHWM']} MB); "
        f"load average {result['load_average_before'][0]} before, {result['load_average_after'][0]} after"
    )
    return "\n".join(rows)
