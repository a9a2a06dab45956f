"""CPU seconds of processes and of the whole machine, from /proc (Linux), for the benchmarks' CPU accounting."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far; 0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (parent, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, ValueError, IndexError):
                continue
    return found


def tree(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    """`root` and every process descended from it."""
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        found.update(children)
        frontier += children
    return found


def postgres_backends(database: str, table: dict[int, tuple[int, str]]) -> set[int]:
    """PostgreSQL backends serving `database` (their process titles name it)."""
    return {pid for pid, (_, line) in table.items() if line.startswith("postgres:") and f" {database} " in line}


def machine_busy() -> float:
    """CPU seconds every core has spent busy (not idle, not waiting on I/O) since boot."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK
