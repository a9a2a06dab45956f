"""Chat streaming, side by side (issue 9): the shared bench kit against this working tree, in one run.

Runs the kit's run.sh (`../shared/bench-kit/` beside the repository, or BENCH_KIT) from the project
root: the fake upstream called directly (the baseline), LiteLLM in front of it when `.venv-litellm`
exists (the kit says "LiteLLM skipped" otherwise), and this app's web chat and its /v1 API (API_KEY_CMD, set
here unless given) in front of it, all
measured by one client in the same minutes, with the machine's other load measured and flagged.
The kit writes `bench/results/side-by-side.json` and `.md`; this module returns where they are and
the markdown tables.

Every variable the kit reads passes through (its README lists them), e.g.
    STEPS=10 SINGLE=10 python -m bench chat                         # about a minute: does it all work?
    APP_WORKERS=2 NAME=workers-2 python -m bench chat               # 2 uvicorn workers
    FAKE_PORT=8501 PROXY_PORT=8502 APP_PORT=8503 PG_DB=byok_kit_me REDIS_SERVER=redis://127.0.0.1:6383 ...

This replaced our own chat benchmark, which flattered the app: it held every stream at its fake
until all had connected and started the clock after that (so request set-up, the costly part under
load, was off the clock), counted CPU per chunk without the per-request CPU, reported lateness per
token instead of time to first token under load, paced its single-stream fake at 5 ms per token
(hiding the relay's own work inside the upstream's delay) and ran each app stream alongside a direct
one, slowing the baseline too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def kit_dir() -> Path:
    """The kit: BENCH_KIT, else `shared/bench-kit` beside the repository (where CI and fresh clones have it)."""
    return Path(os.environ.get("BENCH_KIT") or ROOT.parent / "shared" / "bench-kit").resolve()


def main() -> dict:
    kit = kit_dir()
    run = kit / "run.sh"
    if not run.is_file():
        print(f"  chat skipped: no bench kit at {kit} (set BENCH_KIT to its folder)", flush=True)
        return {"skipped": f"no bench kit at {kit}"}
    name = os.environ.get("NAME", "side-by-side")
    env = {**os.environ, "OUT_DIR": os.environ.get("OUT_DIR", str(RESULTS)), "NAME": name}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the kit sets the app's environment itself
    # The kit speaks plain HTTP on 127.0.0.1, as a TLS proxy would to the app; with DEBUG=false the app would
    # otherwise redirect every request to https.
    env.setdefault("SECURE_SSL_REDIRECT", "false")
    # The kit's optional byok-api target: /v1/chat/completions with a personal API key of the first bench user.
    env.setdefault("API_KEY_CMD", f"{ROOT / '.venv' / 'bin' / 'python'} manage.py api_key_create peer0000 --name bench")
    completed = subprocess.run(["bash", str(run)], cwd=ROOT, env=env, check=False)
    out = Path(env["OUT_DIR"])
    markdown = out / f"{name}.md"
    result = {
        "kit": str(kit),
        "exit_code": completed.returncode,
        "json": str(out / f"{name}.json"),
        "markdown": str(markdown),
    }
    if completed.returncode or not markdown.is_file():
        raise SystemExit(f"the bench kit failed (exit code {completed.returncode}); its output is above")
    result["tables"] = markdown.read_text()
    return result


def table(result: dict) -> str:
    if "skipped" in result:
        return f"chat benchmark skipped: {result['skipped']}"
    return f"(from {result['markdown']})\n\n{result['tables']}"
