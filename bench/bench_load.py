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

import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.bench_chat import kit_dir
from bench.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
KIT = kit_dir()  # BENCH_KIT, else ../shared/bench-kit
RESULTS = ROOT / "bench" / "results"
USERS = int(os.environ.get("BENCH_LOAD_USERS", 200))
SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", 180))
SPAWN_RATE = float(os.environ.get("BENCH_LOAD_SPAWN_RATE", 4))
WEB_WORKERS = int(os.environ.get("BENCH_LOAD_WEB_WORKERS", 2))
PG_DB = os.environ.get("BENCH_LOAD_PG_DB", "byok_bench_load")
PREFIX = "load"
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
    fake = {"FAKE_REPLY": " ".join(f"word{i}" for i in range(REPLY_WORDS)), "FAKE_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS)}
    upstream = [sys.executable, str(KIT / "fake_openai.py"), "{port}"]
    stack = Stack(
        PG_DB,
        upstream=upstream,
        people=USERS,
        prefix=PREFIX,
        model=MODEL,
        web_workers=WEB_WORKERS,
        celery=True,
        extra_env=fake,
    )
    print(f"logs: {stack.work}", flush=True)
    with stack:
        load_before = os.getloadavg()[0]
        cpu_before = stack.cpu_snapshot()
        started = time.monotonic()
        locust_cpu = _locust(stack)
        seconds = time.monotonic() - started
        cpu = _cpu_used(cpu_before, stack.cpu_snapshot(), seconds)
        cpu["Locust"] = round(locust_cpu / seconds, 2)
        cpu["other processes"] = round(max(0.0, cpu["other processes"] - cpu["Locust"]), 2)
        load_after = os.getloadavg()[0]
        stored = stack.step("replies", PREFIX)
        stats = _stats(stack.work / "locust.json", seconds)
        failures = _failures(stack.work / "locust_failures.csv")
    result = {
        "setup": {
            "users": USERS,
            "seconds": SECONDS,
            "spawn_rate_per_s": SPAWN_RATE,
            "web": f"uvicorn, {WEB_WORKERS} worker processes",
            "celery": "1 worker (prefork, concurrency 2) + beat",
            "database": f"PostgreSQL ({PG_DB} on 127.0.0.1)",
            "redis": f"{stack.redis_server} databases 8 (broker) and 9 (cache)",
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


def _locust(stack: Stack) -> float:
    """Run Locust to the end; return the CPU seconds it used."""
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless"]
    command += ["--host", stack.url, "--users", str(USERS), "--spawn-rate", str(SPAWN_RATE)]
    command += ["--run-time", f"{SECONDS}s", "--stop-timeout", str(STOP_TIMEOUT), "--csv", str(stack.work / "locust")]
    command += ["--json-file", str(stack.work / "locust"), "--only-summary", "--loglevel", "WARNING"]
    command += ["--exit-code-on-error", "0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**stack.env, "BENCH_LOAD_PASSWORD": stack.password, "BENCH_LOAD_USERNAME": PREFIX + "{n:04d}"}
    env["BENCH_LOAD_MODEL"] = MODEL
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=SECONDS + STOP_TIMEOUT + 120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


# Measuring.


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
