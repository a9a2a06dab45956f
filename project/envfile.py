"""Fill in .env for `make run`: fresh SECRET_KEY and ENCRYPTION_KEYS where missing or empty, DEBUG=true on a new file.

Whatever the file already holds is kept; an empty `NAME=` line (as in a copied .env.example) counts as missing
and is filled in place.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from tokens.keyring import generate_key

GENERATED: dict[str, Callable[[], str]] = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "ENCRYPTION_KEYS": lambda: generate_key("k1"),
}


def _value(line: str) -> tuple[str, str] | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None
    name, _, value = stripped.removeprefix("export ").partition("=")
    return name.strip(), value.strip().strip("'\"").strip()


def ensure_env_file(path: Path) -> list[str]:
    """Return the names written. The file ends up 0600 (it holds the master keys)."""
    is_new = not path.exists()
    lines = [] if is_new else path.read_text().splitlines()
    present = {pair[0]: pair[1] for pair in map(_value, lines) if pair}
    written = []
    for name, make in GENERATED.items():
        if present.get(name):
            continue
        line = f"{name}={make()}"
        empty_at = [i for i, text in enumerate(lines) if (_value(text) or ("",))[0] == name]
        if empty_at:
            lines[empty_at[0]] = line
        else:
            lines.append(line)
        written.append(name)
    if is_new:
        # Development settings for a fresh clone; production sets DEBUG=false (the default when unset).
        lines[:0] = ["# Written by `make run`; keep this file private and out of git.", "DEBUG=true"]
        written.insert(0, "DEBUG")
    if written:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    path.chmod(0o600)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    for name in ensure_env_file(target):
        print(f"Wrote {name} into {target}")
