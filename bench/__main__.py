"""`make bench`: run every bench/bench_*.py module's main(), write bench/results/<name>.json, print a table.

Run one with `python -m bench chat` (module bench_chat: the shared side-by-side kit, which also writes
bench/results/side-by-side.json and .md) or `python -m bench refresh`.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _modules(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [n for n in names if not selected or n.removeprefix("bench_") in selected]


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    RESULTS.mkdir(exist_ok=True)
    for name in _modules(sys.argv[1:]):
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
        except ImportError as exc:  # one broken benchmark must not stop the others
            print(f"not run: {exc}", flush=True)
            continue
        started = time.time()
        result = module.main()
        result["_meta"] = {
            "ran_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
        (RESULTS / f"{name.removeprefix('bench_')}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(module.table(result) if hasattr(module, "table") else json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
