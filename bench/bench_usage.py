"""Usage benchmark (issue 10): the usage pages and the CSV export over 10,000,000 usage rows on PostgreSQL.

Data: ROWS usage rows (BENCH_USAGE_ROWS, default 10,000,000) over 500 people, 8 models and 180 days
in database BENCH_USAGE_DB (default byok_usage_bench) on 127.0.0.1, loaded once with one
generate_series INSERT per million rows in time order (as a log grows), then the roll-ups built
from them. The next run reuses them: it reloads only when the row count differs or
BENCH_USAGE_RELOAD=1, and rebuilds only the roll-ups when they do not add up to ROWS (a new
roll-up schema). So after the first load a run takes a few minutes.

Pages are served in-process through Django's test client (server time: middleware, view,
queries, template; no HTTP or browser), each load with a different random window or person, so
PostgreSQL's cache never sees the same query twice. Wall time and the web process's CPU time
(robust to other load on the machine) are both reported, with the load average:

- /usage/ for a 30-day range ending on a random day, 50 loads (target p95 ≤ 300 ms)
- /usage/users/<id>/ for a random person, 50 loads (p95 ≤ 200 ms)
- /settings/usage/ as a random person, 50 loads (p95 ≤ 150 ms)
- 10 loads each: a reader in Asia/Kolkata (another zone than the site's), the outcome and model
  filters, all 180 days, a page of calls deep in the past, the people list
- the CSV export of about 100,000 and 1,000,000 rows (≥ 100,000 rows/s; peak RSS flat)

Baseline in the same run: the 30-day totals computed straight from the raw rows. EXPLAIN
(ANALYZE, BUFFERS) of every query the pages run goes to bench/results/usage-explain.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/"
PG_DB = os.environ.get("BENCH_USAGE_DB", "byok_usage_bench")
ROWS = int(os.environ.get("BENCH_USAGE_ROWS", 10_000_000))
PEOPLE, DAYS, LOADS = 500, 180, 50
TARGETS_MS = {"usage_30_days": 300, "person": 200, "my_usage": 150}
EXPORT_TARGET = 100_000


def main() -> dict:
    import psycopg

    with psycopg.connect(PG_URL + "postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DB]).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {PG_DB}")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DATABASE_URL=PG_URL + PG_DB,
        LOG_LEVEL="WARNING",
        DEBUG="false",
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="false",
    )
    env.setdefault("SECRET_KEY", "bench-only")
    env.setdefault("ENCRYPTION_KEYS", "bench:" + "A" * 43 + "=")
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_usage"], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


LABELS = {
    "usage_30_days": "/usage/ (30-day range)",
    "person": "/usage/users/<id>/",
    "my_usage": "/settings/usage/",
    "usage_30_days_other_zone": "/usage/ 30 days, reader in Asia/Kolkata (quarter-hour roll-up)",
    "person_other_zone": "/usage/users/<id>/, reader in Asia/Kolkata (the person's rows)",
    "usage_status_error": "/usage/ 30 days, failed calls only",
    "usage_model": "/usage/ 30 days, one model",
    "usage_180_days": "/usage/ all 180 days",
    "usage_deep_page": "/usage/ a page of calls up to 170 days deep (keyset)",
    "people": "/usage/users/ (a page of 50 people)",
}


def table(result: dict) -> str:
    lines = [
        "| measure | loads | p50 | p95 | CPU p50 / p95 (web process) | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, label in LABELS.items():
        page, cpu = result["pages"][key], result["pages"][f"{key}_cpu"]
        target = TARGETS_MS.get(key)
        met = ("yes" if page["p95_ms"] <= target else "NO") if target else "—"
        lines.append(
            f"| {label} | {page['loads']} | {page['p50_ms']} ms | {page['p95_ms']} ms | "
            f"{cpu['p50_ms']} / {cpu['p95_ms']} ms | {f'≤ {target} ms' if target else '—'} | {met} |"
        )
    base = result["baseline_raw_30_day_totals_ms"]
    lines.append(
        f"| baseline: 30-day totals from raw rows | 3 | {base['p50_ms']} ms | {base['p95_ms']} ms | — | — | — |"
    )
    for export in result["exports"]:
        met = "yes" if export["rows_per_second"] >= EXPORT_TARGET else "NO"
        lines.append(
            f"| export {export['rows']:,} rows | 1 | {export['rows_per_second']:,} rows/s | "
            f"peak RSS {export['peak_rss_mib_before']} → {export['peak_rss_mib_after']} MiB | "
            f"{export['cpu_seconds']} s | ≥ {EXPORT_TARGET:,} rows/s | {met} |"
        )
    rollups = ", ".join(f"{name} {count:,}" for name, count in result["rollup_rows"].items())
    lines.append(f"\nRows: {result['rows']:,} usage rows; roll-up rows: {rollups}; {PEOPLE} people, {DAYS} days")
    start, end = result["load_average_at_start"], result["load_average_at_end"]
    lines.append(f"Load average (1, 5, 15 min) at start {start}, at end {end}")
    return "\n".join(lines)


# The child process: everything below runs against PG_DB.

MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini", "deepseek-chat", "local-llama"]
# Rows arrive in time order, as a log does (row g is stamped g/ROWS of the way through the 180 days ending at the
# load), so the table's physical order follows created_at like a real one; people and models are spread by hashing g.
LOAD_SQL = """
INSERT INTO chat_usagerecord (user_id, source, model, status_code, prompt_tokens, completion_tokens,
    reasoning_tokens, total_tokens, cost_usd, is_estimated, latency_ms, first_token_ms, request_id,
    response_id, error_type, outcome, created_at)
SELECT u.id, CASE WHEN mod(g, 10) = 0 THEN 'api' ELSE 'web' END, m.name,
       CASE WHEN mod(g, 50) = 0 THEN 429 ELSE 200 END, p, c, c / 10, p + c,
       CASE WHEN m.name = 'local-llama' THEN NULL ELSE round((p * 0.15 + c * 0.6) / 1000000.0, 6) END,
       mod(g, 20) = 0, 200 + mod(g, 3000), 100 + mod(g, 900), 'req_' || g, 'chatcmpl-' || g,
       CASE WHEN mod(g, 50) = 0 THEN 'rate_limit' ELSE '' END,
       CASE WHEN mod(g, 50) = 0 THEN 'error' WHEN mod(g, 97) = 0 THEN 'stopped' ELSE 'complete' END,
       %s::timestamptz + g * (interval '{days} days' / {rows})
FROM generate_series(%s, %s) AS g
CROSS JOIN LATERAL (SELECT (ARRAY[{models}])[1 + mod(g * 7 + g / 13, 8)] AS name) AS m
CROSS JOIN LATERAL (SELECT 50 + mod(g * 31, 4000) AS p, 10 + mod(g * 17, 1500) AS c) AS t
JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM accounts_user WHERE username ~ '^bench[0-9]{{3}}$') AS u
  ON u.n = mod(g * 2654435761, {people})
"""


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def _load(connection) -> None:
    """Load ROWS raw usage rows (replacing any), the way a restore would: indexes and foreign keys built after."""
    from datetime import timedelta

    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from accounts.models import User

    password = make_password(None)
    User.objects.bulk_create(
        [User(username=f"bench{n:03}", email=f"bench{n:03}@example.com", password=password) for n in range(PEOPLE)],
        ignore_conflicts=True,
    )
    User.objects.get_or_create(username="bench-staff", defaults={"is_staff": True, "password": password})
    sql = LOAD_SQL.format(models=", ".join(f"'{m}'" for m in MODELS), people=PEOPLE, days=DAYS, rows=ROWS)
    start_at = timezone.now() - timedelta(days=DAYS)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE chat_usagerecord, chat_usagedaily")
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chat_usagerecord' "
            "AND indexname NOT LIKE '%%pkey'"
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'chat_usagerecord'::regclass AND contype = 'f'"
        )
        foreign_keys = cursor.fetchall()
        for name, _definition in foreign_keys:
            cursor.execute(f'ALTER TABLE chat_usagerecord DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for start in range(0, ROWS, 1_000_000):
            cursor.execute(sql, [start_at, start, min(start + 1_000_000, ROWS) - 1])
            print(f"loaded {min(start + 1_000_000, ROWS):,} rows", file=sys.stderr, flush=True)
        for _name, definition in indexes:
            cursor.execute(definition)
        for name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE chat_usagerecord ADD CONSTRAINT "{name}" {definition}')
        print("indexes and foreign keys rebuilt", file=sys.stderr, flush=True)
        cursor.execute("VACUUM ANALYZE chat_usagerecord")


def _timed(client, url: str, cpu: list | None = None) -> float:
    """Wall milliseconds to serve url; the process's CPU milliseconds (Python only, not PostgreSQL) go to cpu."""
    import time

    started, cpu_started = time.perf_counter(), time.process_time()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    if cpu is not None:
        cpu.append((time.process_time() - cpu_started) * 1000)
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


def _export(since: str, until: str) -> dict:
    """Stream the CSV of a range; rows/s, and the process's peak RSS before and after (flat = no growth).

    RSS high-water (getrusage) rather than tracemalloc: tracing every allocation would slow the
    per-row loop several times and flatter nothing.
    """
    import resource
    import time

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from accounts.models import User

    client = AsyncClient()
    client.force_login(User.objects.get(username="bench-staff"))

    async def run() -> tuple[int, int]:
        response = await client.get(f"/usage/export.csv?since={since}&until={until}")
        lines, largest = 0, 0
        async for chunk in response.streaming_content:
            lines += chunk.count(b"\n")
            largest = max(largest, len(chunk))
        return lines - 1, largest

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu_started = time.perf_counter(), time.process_time()
    rows, largest = async_to_sync(run)()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "rows_per_second": int(rows / seconds),
        "peak_rss_mib_before": round(before / 1024, 1),
        "peak_rss_mib_after": round(after / 1024, 1),
        "largest_chunk_kib": round(largest / 1024, 1),
    }


def _window_for(rows_wanted: int) -> tuple[str, str]:
    """A date range ending today holding about rows_wanted rows, from the roll-up."""
    from chat.models import UsageDailyUser

    total, days = 0, list(UsageDailyUser.objects.grouped("day"))
    days.sort(key=lambda row: row["day"], reverse=True)
    for row in days:
        total += row["requests"]
        if total >= rows_wanted:
            return row["day"].isoformat(), days[0]["day"].isoformat()
    return days[-1]["day"].isoformat(), days[0]["day"].isoformat()


def _explain_pages(connection, urls: dict[str, tuple]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of every SELECT each page really runs (captured while serving it once)."""
    from django.test.utils import CaptureQueriesContext

    parts = []
    for title, (client, url) in urls.items():
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        parts.append(f"## {title}: GET {url} ({len(queries.captured_queries)} queries)")
        for query in queries.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT") or "django_session" in sql:
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            parts.append(f"```sql\n{sql};\n```\n```\n{plan}\n```")
    return "\n\n".join(parts) + "\n"


def _statements_beside_the_pages(today) -> dict[str, tuple[str, list]]:
    """The export's rows, a retention batch and a budget check: raw SQL with params, as Django sends them."""
    from datetime import timedelta

    from django.utils import timezone

    from chat.budgets import month_of
    from chat.models import UsageDailyUser, UsageRecord
    from chat.tasks import PRUNE_BATCH

    export = UsageRecord.objects.in_range(today - timedelta(days=6), today).order_by("-created_at", "-id")
    export = export.values_list("created_at", "user__username", "model", "cost_usd", "request_id")
    prune = UsageRecord.objects.older_than(timezone.now() - timedelta(days=170)).order_by().values_list("id")
    first, resets_at = month_of()
    person = UsageRecord.objects.order_by("-id").values_list("user_id", flat=True).first()
    budget = UsageDailyUser.objects.filter(user_id=person, day__gte=first, day__lt=resets_at.date())
    return {
        "export of 7 days (the COPY's inner SELECT)": export.query.sql_with_params(),
        "a retention batch (ids older than the cutoff)": prune[:PRUNE_BATCH].query.sql_with_params(),
        "a budget check before a chat": budget.order_by()
        .values("user_id")
        .annotate(**budget._sums())
        .query.sql_with_params(),
    }


def _explain_sql(connection, statements: dict[str, tuple[str, list]]) -> str:
    parts = []
    for title, (sql, params) in statements.items():
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        parts.append(f"## {title}\n```sql\n{sql % tuple(repr(p) for p in params)};\n```\n```\n{plan}\n```")
    return "\n\n" + "\n\n".join(parts) + "\n"


def _sample(pages: dict, name: str, client, url: str) -> None:
    pages.setdefault(name, []).append(_timed(client, url, pages.setdefault(f"{name}_cpu", [])))


def _run() -> dict:
    import random
    import time
    from datetime import timedelta

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from accounts.models import User
    from chat.dashboard import _cursor as call_cursor
    from chat.models import UsageDaily, UsageDailyModel, UsageDailyUser, UsageQuarterHour, UsageRecord
    from chat.usage import rollup_rebuild

    load_at_start = os.getloadavg()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)  # DEBUG is off, as in production
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM chat_usagerecord")
        raw_rows = cursor.fetchone()[0]
    if os.environ.get("BENCH_USAGE_RELOAD") or raw_rows != ROWS:
        _load(connection)
    if UsageQuarterHour.objects.totals()["requests"] != ROWS:  # new data or a new roll-up schema: rebuild once
        started = time.perf_counter()
        rollup_rebuild()
        print(f"roll-ups rebuilt in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        with connection.cursor() as cursor:
            for table in ("chat_usagedaily", "chat_usagequarterhour", "chat_usagedailyuser"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    rng = random.Random(7)
    staff = Client()
    staff.force_login(User.objects.get(username="bench-staff"))
    abroad = User.objects.update_or_create(
        username="bench-staff-kolkata", defaults={"is_staff": True, "timezone": "Asia/Kolkata"}
    )[0]
    staff_abroad = Client()
    staff_abroad.force_login(abroad)
    people = sorted(User.objects.filter(username__regex=r"^bench[0-9]{3}$").values_list("pk", flat=True))
    models = sorted(UsageQuarterHour.objects.values_list("model", flat=True).distinct())
    today = timezone.localdate()
    pages: dict[str, list[float]] = {}
    # One client per role: each new test Client builds the middleware stack again (servestatic scans the static
    # files then), which no real request pays.
    person = Client()
    _timed(staff, "/usage/")  # warm-up: imports, template compilation
    for _ in range(LOADS):
        until = today - timedelta(days=rng.randrange(0, 150))
        since = until - timedelta(days=29)
        _sample(pages, "usage_30_days", staff, f"/usage/?since={since}&until={until}")
        _sample(pages, "person", staff, f"/usage/users/{rng.choice(people)}/")
        person.force_login(User.objects.get(pk=rng.choice(people)))  # outside the timed load
        _sample(pages, "my_usage", person, "/settings/usage/")
    # Other shapes, fewer loads: a filter on outcome or model, a whole 180 days, deep pages, the people list.
    for _ in range(LOADS // 5):
        until = today - timedelta(days=rng.randrange(0, 150))
        since = until - timedelta(days=29)
        _sample(pages, "usage_30_days_other_zone", staff_abroad, f"/usage/?since={since}&until={until}")
        _sample(pages, "person_other_zone", staff_abroad, f"/usage/users/{rng.choice(people)}/")
        _sample(pages, "usage_status_error", staff, f"/usage/?since={since}&until={until}&status=error")
        _sample(pages, "usage_model", staff, f"/usage/?since={since}&until={until}&model={rng.choice(models)}")
        _sample(pages, "usage_180_days", staff, f"/usage/?since={today - timedelta(days=179)}&until={today}")
        deep = UsageRecord.objects.filter(created_at__lt=timezone.now() - timedelta(days=rng.randrange(1, 170)))
        cursor_row = deep.order_by("-created_at", "-id").first()
        position = f"since={today - timedelta(days=179)}&before={call_cursor(cursor_row)}"
        _sample(pages, "usage_deep_page", staff, f"/usage/?{position}")
        _sample(pages, "people", staff, f"/usage/users/?page={rng.randrange(1, 11)}")
    baseline = []
    for _ in range(3):
        until = today - timedelta(days=rng.randrange(0, 150))
        started = time.perf_counter()
        UsageRecord.objects.in_range(until - timedelta(days=29), until).order_by().totals()
        baseline.append((time.perf_counter() - started) * 1000)
    exports = [_export(*_window_for(100_000)), _export(*_window_for(1_000_000))]
    person_client = Client()
    person_client.force_login(User.objects.get(pk=people[0]))
    explain = _explain_pages(
        connection,
        {
            "/usage/ 30 days": (staff, f"/usage/?since={today - timedelta(days=29)}&until={today}"),
            "/usage/ 30 days, failed calls": (staff, f"/usage/?since={today - timedelta(days=29)}&status=error"),
            "/usage/ 30 days, one model": (staff, f"/usage/?since={today - timedelta(days=29)}&model=gpt-4o"),
            "a person's page": (staff, f"/usage/users/{people[0]}/"),
            "my usage": (person_client, "/settings/usage/"),
            "people": (staff, "/usage/users/?page=3"),
            "/usage/ 30 days, reader in Asia/Kolkata": (staff_abroad, f"/usage/?since={today - timedelta(days=29)}"),
            "a person's page, reader in Asia/Kolkata": (staff_abroad, f"/usage/users/{people[0]}/"),
        },
    )
    explain += _explain_sql(connection, _statements_beside_the_pages(today))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "usage-explain.md").write_text(explain)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('chat_usagerecord')), "
            "pg_size_pretty(pg_total_relation_size('chat_usagedaily')), "
            "pg_size_pretty(pg_total_relation_size('chat_usagedailymodel')), "
            "pg_size_pretty(pg_total_relation_size('chat_usagequarterhour')), "
            "pg_size_pretty(pg_total_relation_size('chat_usagedailyuser'))"
        )
        sizes = cursor.fetchone()
    return {
        "rows": UsageQuarterHour.objects.totals()["requests"],
        "rollup_rows": {
            "usage_daily": UsageDaily.objects.count(),
            "usage_daily_model": UsageDailyModel.objects.count(),
            "usage_quarter_hour": UsageQuarterHour.objects.count(),
            "usage_daily_user": UsageDailyUser.objects.count(),
        },
        "table_sizes": dict(zip(("usage", "daily", "daily_model", "quarter_hour", "daily_user"), sizes, strict=True)),
        "pages": {key: _percentiles(samples) | {"loads": len(samples)} for key, samples in pages.items()},
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "baseline_raw_30_day_totals_ms": _percentiles(baseline),
        "exports": exports,
        "loads": LOADS,
        "database": f"PostgreSQL ({PG_DB} on 127.0.0.1)",
        "how": "in-process Django test client (server time, no HTTP), random window/person each load",
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }


if __name__ == "__main__":
    print(json.dumps(_run(), default=str))
