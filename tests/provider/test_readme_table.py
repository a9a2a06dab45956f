"""The README's provider compatibility table names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _table_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("| behaviour | providers that do it | how we handle it | test |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_every_row_of_the_compatibility_table_names_a_real_test():
    sources = {path: path.read_text() for path in (ROOT / "tests").rglob("test_*.py")}
    rows = _table_rows()
    assert len(rows) >= 30
    for row in rows:
        names = re.findall(r"`(test_\w+)(?:\[([^\]]+)\])?`", row.rsplit("|", 2)[-2])
        assert names, f"no test named in: {row[:80]}"
        for name, param in names:
            files = [text for text in sources.values() if re.search(rf"^def {name}\(", text, re.MULTILINE)]
            assert files, f"README names {name}, which no test module defines"
            for part in param.split("-") if param else ():
                assert any(part in text for text in files), f"{name}[{param}]: no parameter {part!r}"
