"""The relay floor, side by side with the fake upstream (issues 9 and 13: what CPU per reply is possible here).

`python -m bench floor` starts the bench kit's fake upstream (`../shared/bench-kit/fake_openai.py`, 200-token
replies, 20 ms per token) and `bench/floor_relay.py` in front of it, then runs the kit's client (`peer_bench.py`,
the same statistics and contention checks as the chat benchmark) against both: steps FLOOR_STEPS (100,250), no
single-stream phase. It writes bench/results/floor.json and .md. The floor relay parses nothing and records
nothing, so its CPU per reply is a lower bound for any relay in Python on this machine: the kit's `CPU ms per
reply` of BYOK Chat's `/v1` and web chat can be read against it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.bench_chat import kit_dir

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FAKE_PORT, FLOOR_PORT = 8531, 8532


def _wait_port(port: int, deadline_s: float = 15) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def main() -> dict:
    kit = kit_dir()
    if not (kit / "peer_bench.py").is_file():
        print(f"  floor skipped: no bench kit at {kit} (set BENCH_KIT to its folder)", flush=True)
        return {"skipped": f"no bench kit at {kit}"}
    reply = " ".join(f"tok{i:03d}" for i in range(1, 201))
    env = {**os.environ, "FAKE_REPLY": reply, "FAKE_TOKEN_DELAY_MS": "20", "FAKE_API_KEYS": "sk-test"}
    fake = subprocess.Popen([sys.executable, str(kit / "fake_openai.py"), str(FAKE_PORT)], env=env)
    floor = subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor_relay.py"), str(FLOOR_PORT), str(FAKE_PORT)])
    out, markdown = RESULTS / "floor.json", RESULTS / "floor.md"
    try:
        _wait_port(FAKE_PORT)
        _wait_port(FLOOR_PORT)
        subprocess.run(
            [
                sys.executable,
                str(kit / "peer_bench.py"),
                "--target",
                f"name=direct,kind=openai,url=http://127.0.0.1:{FAKE_PORT}/v1,key=sk-test,pid={fake.pid}",
                "--target",
                f"name=floor,kind=openai,url=http://127.0.0.1:{FLOOR_PORT}/v1,key=sk-test,pid={floor.pid}",
                "--single",
                "0",
                "--steps",
                os.environ.get("FLOOR_STEPS", "100,250"),
                "--ramp-s",
                "2",
                "--note",
                "floor: bench/floor_relay.py (no parsing, no records) in front of the kit's fake, 20 ms per token",
                "--out",
                str(out),
                "--md-out",
                str(markdown),
            ],
            check=True,
        )
    finally:
        for process in (floor, fake):
            process.terminate()
            process.wait(10)
    return {"json": str(out), "markdown": str(markdown), "tables": markdown.read_text()}


def table(result: dict) -> str:
    if "skipped" in result:
        return f"floor benchmark skipped: {result['skipped']}"
    return f"(from {result['markdown']})\n\n{result['tables']}"
